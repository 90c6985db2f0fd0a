"""The `runner` command: parse, call, and turn errors into clear messages and exit codes."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import click
import tomli_w
from loguru import logger
from rich.console import Console
from rich.table import Table

from runner import logs
from runner.settings import CONFIG_ENV, DEFAULT_CONFIG_PATH, ConfigError, LoadedSettings, load_settings, redacted

EXIT_FAILED = 1
EXIT_CONFIG = 2

console = Console()


class Context:
    def __init__(self, config: Path | None, log_level: str | None):
        self.config = config
        self.log_level = log_level
        self._loaded: LoadedSettings | None = None

    def load(self) -> LoadedSettings:
        if self._loaded is None:
            try:
                self._loaded = load_settings(self.config)
            except ConfigError as error:
                fail_config(error)
            logs.setup(self.log_level or self._loaded.settings.log.level)
        return self._loaded

    @property
    def settings(self):
        return self.load().settings


def fail_config(error: ConfigError):
    click.echo(f"configuration has {len(error.problems)} error(s):", err=True)
    for problem in error.problems:
        click.echo(f"  - {problem}", err=True)
    sys.exit(EXIT_CONFIG)


def fail(message: str, code: int = EXIT_FAILED):
    logger.error(message)
    sys.exit(code)


pass_context = click.make_pass_decorator(Context)


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=f"""\b
Configuration: --config PATH, else ${CONFIG_ENV}, else {DEFAULT_CONFIG_PATH}
(if that file is absent, the built-in defaults apply). Any setting can be overridden
from the environment: RUNNER_<SECTION>__<FIELD>, e.g. RUNNER_JOBS__TIMEOUT=2h.
\b
Exit codes: 0 success, 1 a job failed, 2 the configuration or the command line is wrong.""",
)
@click.option("--config", "-c", type=click.Path(path_type=Path, dir_okay=False),
              help=f"TOML configuration file (default: ${CONFIG_ENV} or {DEFAULT_CONFIG_PATH}).")
@click.option("--log-level", type=click.Choice(["TRACE", "DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
              help="Override log.level for this invocation.")
@click.version_option(package_name="offsite-backup-runner")
@click.pass_context
def cli(ctx: click.Context, config: Path | None, log_level: str | None):
    """Offsite backups of Vault, PostgreSQL and MinIO with restic, each job run in an
    ephemeral, hardened Podman container."""
    logs.setup(log_level.upper() if log_level else "INFO")
    ctx.obj = Context(config, log_level.upper() if log_level else None)


@cli.group()
def config():
    """Validate and display the configuration."""


@config.command("check")
@click.argument("path", required=False, type=click.Path(path_type=Path, dir_okay=False))
@pass_context
def config_check(context: Context, path: Path | None):
    """Validate the configuration (PATH, or the one --config/RUNNER_CONFIG selects).

    Every mistake is reported at once, each naming the setting and the file or environment
    variable it came from. Exit code 2 when anything is wrong."""
    if path is not None:
        context.config = path
    loaded = context.load()
    where = loaded.path or "built-in defaults (no configuration file)"
    click.echo(f"configuration OK: {where}")


@config.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of TOML.")
@pass_context
def config_show(context: Context, as_json: bool):
    """Print the effective configuration (defaults, file and environment merged), with
    secret-looking values masked."""
    loaded = context.load()
    data = redacted(loaded.settings.model_dump(mode="json"))
    click.echo(f"# effective configuration from {loaded.path or 'built-in defaults'} and RUNNER_* environment")
    click.echo(json.dumps(data, indent=2) if as_json else tomli_w.dumps(data))


@cli.group()
def images():
    """Build the project's container images."""


@images.command("build")
@click.argument("names", nargs=-1, type=click.Choice(["tools", "runner"]))
@click.option("--force", is_flag=True, help="Rebuild even when the inputs are unchanged.")
@pass_context
def images_build(context: Context, names: tuple[str, ...], force: bool):
    """Build the tools and runner images (or only NAMES).

    An image whose inputs (Containerfile, base image, runner source) are unchanged is skipped.
    When the base image can be neither found nor pulled, it is built from the Debian mirror with
    debootstrap, so an air-gapped host with a Debian mirror can build everything."""
    from runner.images import ImageBuildError, build

    try:
        report = build(context.settings, names or None, force)
    except ImageBuildError as error:
        fail(str(error))
    for name, state in report.items():
        click.echo(f"{name}: {state}")


@cli.group()
def jobs():
    """Inspect and clean up job containers."""


def _engine(context: Context):
    from runner.engine import Engine, EngineUnavailable

    engine = Engine(context.settings)
    try:
        engine.ping()
    except EngineUnavailable as error:
        fail(str(error))
    return engine


@jobs.command("list")
@pass_context
def jobs_list(context: Context):
    """List the job containers that exist now (a finished job leaves none)."""
    from runner.engine import JOB_LABEL

    table = Table("container", "job", "state", "created")
    for container in _engine(context).job_containers():
        table.add_row(container.name, container.labels.get(JOB_LABEL, "?"),
                      container.attrs.get("State", "?"), str(container.attrs.get("Created", "?")))
    console.print(table)


@jobs.command("gc")
@click.option("--all", "everything", is_flag=True,
              help="Also remove job containers that are still running within their time limit.")
@click.option("--dry-run", is_flag=True, help="Only list what would be removed.")
@pass_context
def jobs_gc(context: Context, everything: bool, dry_run: bool):
    """Remove job containers left behind by a crashed run: stopped or never-started ones,
    and running ones past their time limit."""
    engine = _engine(context)
    leftovers = engine.leftovers(include_running=everything)
    for container in leftovers:
        click.echo(f"{'would remove' if dry_run else 'removing'} {container.name}")
        if not dry_run:
            engine.remove(container)
    click.echo(f"{len(leftovers)} leftover job container(s)")


@cli.command()
@click.option("--path", type=click.Path(path_type=Path, exists=True, file_okay=False, resolve_path=True),
              help="Back up this directory instead of a generated sample (it must be readable by jobs.user).")
@pass_context
def selftest(context: Context, path: Path | None):
    """Check that this host can run backups: a job container backs up a sample directory into
    a local restic repository (under paths.state_dir/selftest), another restores it, the restored
    files are compared with the originals, and the repository's snapshots are listed."""
    from runner.engine import JobError
    from runner.selftest import Selftest, SelftestFailed

    engine = _engine(context)
    try:
        report = Selftest(context.settings, engine).run(path)
    except (SelftestFailed, JobError) as error:
        fail(f"selftest failed: {error}")
    table = Table("snapshot", "time", "host", "paths", "tags", title=f"snapshots in {report.repository}")
    for snapshot in report.snapshots:
        table.add_row(snapshot.get("short_id", ""), snapshot.get("time", "")[:19], snapshot.get("hostname", ""),
                      " ".join(snapshot.get("paths", [])), " ".join(snapshot.get("tags", [])))
    console.print(table)
    click.echo(f"selftest passed: snapshot {report.snapshot_id[:8]} ({report.files} files, {report.bytes} bytes) "
               "restored byte-identical")


def _terminate(signum, frame):
    # systemd stops a unit with SIGTERM: unwind so `finally` blocks remove job containers.
    raise KeyboardInterrupt


def main():
    signal.signal(signal.SIGTERM, _terminate)
    try:
        cli(prog_name="runner")
    except KeyboardInterrupt:
        logger.warning("interrupted")
        sys.exit(130)
