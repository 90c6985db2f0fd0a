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

def console() -> Console:
    # made per use, so that COLUMNS and the output stream in effect now are respected
    return Console()


class Context:
    def __init__(self, config: Path | None, log_level: str | None, log_format: str | None = None):
        self.config = config
        self.log_level = log_level
        self.log_format = log_format
        self._loaded: LoadedSettings | None = None

    def load(self) -> LoadedSettings:
        if self._loaded is None:
            try:
                self._loaded = load_settings(self.config)
            except ConfigError as error:
                fail_config(error)
            logs.setup(self.log_level or self._loaded.settings.log.level,
                       self.log_format or self._loaded.settings.log.format)
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
Exit codes: 0 success, 1 a job failed, 2 the configuration or the command line is wrong,
75 nothing failed but a destination was deferred by its upload quota.""",
)
@click.option("--config", "-c", type=click.Path(path_type=Path, dir_okay=False),
              help=f"TOML configuration file (default: ${CONFIG_ENV} or {DEFAULT_CONFIG_PATH}).")
@click.option("--log-level", type=click.Choice(["TRACE", "DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
              help="Override log.level for this invocation.")
@click.option("--log-format", type=click.Choice(["text", "json"]), help="Override log.format: 'json' for machines.")
@click.version_option(package_name="offsite-backup-runner")
@click.pass_context
def cli(ctx: click.Context, config: Path | None, log_level: str | None, log_format: str | None):
    """Offsite backups of Vault, PostgreSQL and MinIO with restic, each job run in an
    ephemeral, hardened Podman container."""
    logs.setup(log_level.upper() if log_level else "INFO", log_format or "text")
    ctx.obj = Context(config, log_level.upper() if log_level else None, log_format)


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
    data = redacted(loaded.settings.model_dump(mode="json", exclude_none=True))
    click.echo(f"# effective configuration from {loaded.path or 'built-in defaults'} and RUNNER_* environment")
    click.echo("# (settings left empty to take a derived default are omitted)")
    click.echo(json.dumps(data, indent=2) if as_json else tomli_w.dumps(data))


@config.command("reference")
@click.option("--output", "-o", type=click.Path(path_type=Path, dir_okay=False),
              help="Write to this file (docs/configuration.md) instead of standard output.")
def config_reference(output: Path | None):
    """Print the configuration reference (Markdown) generated from the settings schema."""
    from runner.reference import render

    text = render()
    if output:
        output.write_text(text)
        click.echo(f"wrote {output}")
    else:
        click.echo(text, nl=False)


@cli.group()
def images():
    """Build the project's container images."""


@images.command("build")
@click.argument("names", nargs=-1)
@click.option("--force", is_flag=True, help="Rebuild even when the inputs are unchanged.")
@pass_context
def images_build(context: Context, names: tuple[str, ...], force: bool):
    """Build the tools, runner and openbao images, or the NAMES given: those, the stand-ins for
    the integration suite and the demo (testbed-nas, ...), or `all`.

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
    console().print(table)


@jobs.command("gc")
@click.option("--all", "everything", is_flag=True,
              help="Also remove job containers that are still running within their time limit.")
@click.option("--dry-run", is_flag=True, help="Only list what would be removed.")
@pass_context
def jobs_gc(context: Context, everything: bool, dry_run: bool):
    """Remove job containers left behind by a crashed run: stopped or never-started ones,
    and running ones past their time limit; then the restore tests' networks no container uses."""
    engine = _engine(context)
    leftovers = engine.leftovers(include_running=everything)
    for container in leftovers:
        click.echo(f"{'would remove' if dry_run else 'removing'} {container.name}")
        if not dry_run:
            engine.remove(container)
    click.echo(f"{len(leftovers)} leftover job container(s)")
    if not dry_run:
        for name in engine.remove_unused_networks():
            click.echo(f"removed unused network {name}")


def _selection(context: Context, destination_names: tuple[str, ...], source_names: tuple[str, ...]):
    from runner import destinations, sources

    try:
        chosen = destinations.configured(context.settings, destination_names)
        names = sources.enabled(context.settings, source_names)
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    if not names:
        raise click.UsageError("no source is enabled in the configuration (see [sources] in examples/runner.toml)")
    return chosen, names


def _record(settings, runs) -> None:
    """Put (kind, result) pairs in the run history, as soon as they are known."""
    from runner.reporting import record

    record(settings, runs)


def _finish(settings, runs, as_json: bool) -> None:
    """Alerts, metrics, dashboard and ping for the recorded runs; then the report and exit code."""
    from runner.reporting import report

    report(settings, runs)
    _report([result for _, result in runs], as_json)


def _report(results, as_json: bool) -> None:
    from runner.results import exit_code

    if as_json:
        click.echo(json.dumps([_as_dict(result) for result in results], indent=2, default=str))
        sys.exit(exit_code(results))
    table = Table("source", "destination", "result", "details")
    for result in results:
        style = "green" if result.status.value == "ok" else "yellow" if not result.status.is_failure else "red"
        table.add_row(result.source, result.destination, f"[{style}]{result.status.value}[/]", result.message)
    console().print(table)
    sys.exit(exit_code(results))


def _as_dict(record) -> dict:
    import dataclasses

    data = dataclasses.asdict(record)
    if "status" in data:
        data["status"] = record.status.value
    return data


json_option = click.option("--json", "as_json", is_flag=True, help="Print the results as JSON (for scripts).")
destination_option = click.option(
    "--destination", "-d", "destination_names", multiple=True,
    help="Only this destination (repeatable). Default: every enabled destination.")
source_option = click.option(
    "--source", "-s", "source_names", multiple=True,
    help="Only this source (repeatable). Default: every enabled source.")


@cli.group()
def repo():
    """Create and inspect the restic repositories (one per source per destination)."""


@repo.command("init")
@destination_option
@source_option
@json_option
@pass_context
def repo_init(context: Context, destination_names, source_names, as_json):
    """Initialize the repositories that do not exist yet (repository format 2, compressed).

    Idempotent: existing repositories are left as they are. Backups never create repositories;
    this command is the only one that does. Each repository's password is read from its password
    file (restic.password_file), so it must exist first."""
    from runner import repositories

    chosen, names = _selection(context, destination_names, source_names)
    _report(repositories.init(_engine(context), chosen, names), as_json)


@repo.command("list")
@destination_option
@source_option
@json_option
@pass_context
def repo_list(context: Context, destination_names, source_names, as_json):
    """Show each repository: whether it is reachable and initialized, its snapshot count and size.

    Takes no restic lock and writes nothing."""
    from runner import repositories

    chosen, names = _selection(context, destination_names, source_names)
    states = repositories.describe(_engine(context), chosen, names)
    code = 0 if all(s.state == "ok" for s in states) else EXIT_FAILED
    if as_json:
        click.echo(json.dumps([_as_dict(s) for s in states], indent=2))
        sys.exit(code)
    table = Table("destination", "source", "location", "state", "snapshots", "stored", "uncompressed")
    for s in states:
        table.add_row(s.destination, s.source, s.location, s.state, _number(s.snapshots),
                      _size(s.stored_bytes), _size(s.uncompressed_bytes))
    console().print(table)
    sys.exit(code)


@cli.command()
@pass_context
def quota(context: Context):
    """Show each destination's upload quota and what the ledger counts as uploaded today (UTC)."""
    from runner import destinations
    from runner.quota import ledger

    uploads = ledger(context.settings.paths.state_dir)
    table = Table("destination", "daily quota", "uploaded today", "remaining")
    for destination in destinations.configured(context.settings):
        used = uploads.uploaded_today(destination.name)
        limit = destination.quota
        table.add_row(destination.name, _size(limit) if limit else "none", _size(used),
                      _size(max(0, limit - used)) if limit else "-")
    console().print(table)


@cli.group("exec")
def exec_():
    """Run the scheduled jobs (what the systemd timers start)."""


@exec_.command("backup")
@click.argument("source_names", nargs=-1, metavar="[SOURCE]...")
@destination_option
@json_option
@pass_context
def exec_backup(context: Context, source_names, destination_names, as_json):
    """Back up SOURCEs: vault, postgres, minio, files, or all (the default: every enabled
    source, in restore priority order). One source failing does not stop the next.

    A destination that fails its preflight (unreachable NAS, missing key) is skipped and reported;
    the others still run. A destination whose daily upload quota would be passed is deferred.
    Exit code 1 if anything failed, 75 if nothing failed but something was deferred."""
    from runner.backup import back_up

    if "all" in source_names:
        source_names = ()
    chosen, names = _selection(context, destination_names, source_names)
    engine = _engine(context)
    runs = []
    for source in names:
        outcome = [("backup", result) for result in back_up(context.settings, engine, source, chosen)]
        _record(context.settings, outcome)
        runs += outcome
    _finish(context.settings, runs, as_json)


def _maintain(context: Context, source_names, destination_names, as_json, prune: bool, subset: str | None):
    from runner.maintenance import maintain, rotating_subset

    chosen, names = _selection(context, destination_names, source_names)
    engine = _engine(context)
    subset = rotating_subset(context.settings) if subset is None else subset
    runs = []
    for destination in chosen:
        for source in names:
            outcome = maintain(context.settings, engine, destination, source, prune=prune, subset=subset)
            _record(context.settings, outcome.runs)
            runs += outcome.runs
    _finish(context.settings, runs, as_json)


@exec_.command("check")
@click.argument("source_names", nargs=-1, metavar="[SOURCE]...")
@destination_option
@click.option("--subset", help="Part of the data to read: '2/8', '10%', 'all', or 'none' for the structure only. "
                               "Default: this week's 1/retention.check_weeks part, a different one each week.")
@json_option
@pass_context
def exec_check(context: Context, source_names, destination_names, subset, as_json):
    """Verify repositories with `restic check`, reading a part of their data.

    A repository whose check fails is reported with the status 'check failed' (exit code 1), and
    `exec prune` forgets and prunes nothing in it until a check passes again."""
    if "all" in source_names:
        source_names = ()
    _maintain(context, source_names, destination_names, as_json, prune=False,
              subset=None if subset is None else ("" if subset == "none" else subset))


@exec_.command("prune")
@click.argument("source_names", nargs=-1, metavar="[SOURCE]...")
@destination_option
@json_option
@pass_context
def exec_prune(context: Context, source_names, destination_names, as_json):
    """Apply the retention policy: check each repository first, then forget and prune.

    Keeps the most recent snapshot of each of the last retention.keep_daily days, keep_monthly
    months and keep_yearly years (restic's definition). Forgets nothing where the check fails or
    fewer than retention.minimum_snapshots snapshots exist. Every forgotten snapshot is logged and
    recorded in the history, with the repository's size, compression and deduplication after."""
    if "all" in source_names:
        source_names = ()
    _maintain(context, source_names, destination_names, as_json, prune=True, subset=None)


@cli.command()
@json_option
@pass_context
def status(context: Context, as_json: bool):
    """Show, per source and destination, the last successful backup and its age against the RPO,
    the last outcome, size and its change, the repository size and the last restore test.

    Also raises the alert for any source past its RPO (once). Exit code 1 when anything is past
    its RPO, last failed, or failed its last restore test: usable as a health check."""
    from runner.reporting import report
    from runner.status import overview

    history = report(context.settings, [])
    states = overview(context.settings, history)
    code = 0 if states and all(state.healthy for state in states) else EXIT_FAILED
    if as_json:
        click.echo(json.dumps([state.as_dict() for state in states], indent=2))
        sys.exit(code)
    table = Table("source", "destination", "health", "last success", "RPO", "last outcome", "last size", "change",
                  "repository", "snapshots", "last restore test")
    for state in states:
        table.add_row(
            state.source, state.destination, "[green]ok[/]" if state.healthy else "[red]attention[/]",
            f"{state.age_hours} h ago" if state.age_hours is not None else "never",
            "within" if state.within_rpo else "[red]past[/]", state.last_outcome or "-", _size(state.last_size),
            f"{state.size_change:+.0%}" if state.size_change is not None else "-", _size(state.repository_bytes),
            _number(state.snapshots),
            f"{state.last_restore_test} {state.last_restore_test_at:%Y-%m-%d}" if state.last_restore_test_at else "-")
    console().print(table)
    sys.exit(code)


@cli.command()
@click.option("--output", "-o", required=True, type=click.Path(path_type=Path, dir_okay=False),
              help="HTML file to write (self-contained: no external assets).")
@pass_context
def dashboard(context: Context, output: Path):
    """Write the status dashboard: status per source and destination, charts of backup size,
    duration, deduplication and restore-test duration over time, and the latest alerts.
    (monitoring.dashboard_file rewrites it after every run.)"""
    from runner import dashboard as pages
    from runner.history import open_history

    pages.write(context.settings, open_history(context.settings.paths.state_dir), output)
    click.echo(f"wrote {output}")


@cli.group()
def vault():
    """Prepare Vault for the backups and configure the Vault Agent that renders their secrets."""


@vault.command("bootstrap")
@click.option("--token-file", type=click.File("r"),
              help="File holding an administrator token ('-' for standard input). Without it, the token "
                   "is asked for at a prompt. Never pass a token on the command line.")
@pass_context
def vault_bootstrap(context: Context, token_file):
    """Create in Vault what the backups need, with an administrator token used once.

    Creates what is missing and leaves the rest alone (safe to re-run): the KV version 2 engine
    and the AppRole auth method if absent, the least-privilege policy (read the backup secrets,
    read sys/storage/raft/snapshot, nothing else), the AppRole, its role-id and secret-id files
    (secrets.approle_dir), and a generated password for every repository that has none yet (an
    existing password is never overwritten). Lists the secrets you still have to put in Vault."""
    from runner.bootstrap import BootstrapError, bootstrap

    token = (token_file.read() if token_file else click.prompt("Vault administrator token", hide_input=True)).strip()
    if not token:
        raise click.UsageError("the administrator token is empty")
    try:
        report = bootstrap(context.settings, token)
    except BootstrapError as error:
        fail(str(error))
    for line in report.created:
        click.echo(f"created:   {line}")
    for line in report.unchanged:
        click.echo(f"unchanged: {line}")
    for line in report.missing:
        click.echo(f"missing:   {line}")
    if report.missing:
        click.echo(f"Put the missing values with `vault kv put {context.settings.secrets.kv_mount}/"
                   f"{context.settings.secrets.kv_prefix}/<path> key=value ...` (or `key=@file`).")


@vault.command("agent-config")
@click.option("--output", "-o", type=click.Path(path_type=Path, dir_okay=False),
              help="Write to this file instead of standard output.")
@pass_context
def vault_agent_config(context: Context, output: Path | None):
    """Print the Vault Agent configuration (HCL) for this configuration: AppRole auto-auth,
    its token as the snapshot token, and one template per secret file, mode 0400."""
    from runner.secretmap import agent_config
    from runner.workspace import write_atomically

    loaded = context.load()
    text = agent_config(loaded.settings, str(loaded.path or "the built-in defaults"))
    if output:
        write_atomically(output, text, mode=0o644)
        click.echo(f"wrote {output}")
    else:
        click.echo(text, nl=False)


@vault.command("policy")
@pass_context
def vault_policy(context: Context):
    """Print the least-privilege policy that `vault bootstrap` writes."""
    from runner.secretmap import policy

    click.echo(policy(context.settings), nl=False)


@cli.command("recovery-kit")
@click.option("--output", "-o", type=click.Path(path_type=Path, dir_okay=False),
              help="Write the kit to this file (mode 0400).")
@click.option("--stdout", "to_stdout", is_flag=True, help="Print the kit instead (for a printer or an encrypted pipe).")
@click.option("--force", is_flag=True, help="Replace an existing kit file.")
@pass_context
def recovery_kit(context: Context, output: Path | None, to_stdout: bool, force: bool):
    """Write what a person needs to restore when Vault is gone: every repository's location and
    password, the NAS host key fingerprints, the Drive's rclone remote (without its key) and the
    restore order. Keep it offline; see docs/recovery-kit.md."""
    from runner.recovery import RecoveryKitError, build
    from runner.workspace import write_atomically

    if bool(output) == to_stdout:
        raise click.UsageError("give either --output FILE or --stdout")
    if output and output.exists() and not force:
        raise click.UsageError(f"{output} exists; use --force to replace it")
    try:
        text = build(context.settings)
    except RecoveryKitError as error:
        fail(str(error))
    if to_stdout:
        click.echo(text, nl=False)
        return
    write_atomically(output, text, mode=0o400)
    click.echo(f"wrote {output} (mode 0400). Keep it offline; do not leave it on this server.")


@exec_.command("restore-test")
@click.argument("source_names", nargs=-1, metavar="[SOURCE]...")
@click.option("--destination", "-d", "destination_name",
              help="Destination to restore from (default: restore_tests.destination, else the first enabled).")
@json_option
@pass_context
def exec_restore_test(context: Context, source_names, destination_name, as_json):
    """Restore the latest snapshot of vault, postgres, minio (or all) into throwaway containers on an
    isolated network and compare it with what was recorded at backup time.

    PostgreSQL: the dump is loaded into a throwaway server (restore_tests.postgres_image) and every
    table's row count and checksum compared with the backup's manifest. Vault: the snapshot's sums
    are verified and it is restored into a throwaway server; with restore_tests.vault_unseal_keys_file
    it is unsealed and a canary secret read back. MinIO: every object's size and checksum is compared
    with the manifest. The duration of each phase goes to the history (RTO planning). A difference is
    reported as 'restore mismatch' (exit code 1)."""
    from runner import recover, restoretests

    if "all" in source_names:
        source_names = ()
    unknown = set(source_names) - set(restoretests.TESTS)
    if unknown:
        raise click.UsageError(f"no restore test for {', '.join(sorted(unknown))} (there are: {', '.join(restoretests.TESTS)})")
    from runner.sources import enabled

    names = [name for name in enabled(context.settings, source_names) if name in restoretests.TESTS]
    try:
        destination = recover.destination_for(context.settings, destination_name or context.settings.restore_tests.destination)
    except recover.RestoreError as error:
        raise click.UsageError(str(error)) from None
    engine = _engine(context)
    runs = []
    for name in names:
        runs.append(("restore-test", restoretests.run(context.settings, engine, name, destination)))
        _record(context.settings, runs[-1:])
    _finish(context.settings, runs, as_json)


@cli.group()
def restore():
    """Recover after a disaster, in this order: vault, then postgres, then minio."""


snapshot_option = click.option("--snapshot", default="latest", show_default=True,
                               help="Snapshot id (or its first characters) to restore.")
restore_destination_option = click.option("--destination", "-d", "destination_name",
                                          help="Destination to restore from (default: the first enabled).")
force_option = click.option("--force", is_flag=True, help="Overwrite a target that is not empty.")


def _restore(context: Context, action) -> None:
    from runner.recover import RestoreError

    try:
        click.echo(action())
    except RestoreError as error:
        fail(f"restore failed: {error}")


@restore.command("vault")
@click.option("--output", "-o", required=True, type=click.Path(path_type=Path, dir_okay=False),
              help="File to write the raft snapshot to.")
@snapshot_option
@restore_destination_option
@force_option
@pass_context
def restore_vault_command(context: Context, output, snapshot, destination_name, force):
    """Write a Vault raft snapshot to a file, its sums verified, ready for
    `vault operator raft snapshot restore -force FILE`."""
    from runner import recover

    _restore(context, lambda: recover.restore_vault(
        context.settings, _engine(context), recover.destination_for(context.settings, destination_name),
        snapshot, output, force))


@restore.command("postgres")
@click.option("--container", help="Podman container running the PostgreSQL to restore into.")
@click.option("--host", help="Or: host name or address of the server ...")
@click.option("--network", help="... and the Podman network it is reached on.")
@click.option("--port", default=5432, show_default=True, type=int)
@click.option("--user", help="Superuser to load as (default: sources.postgres.user).")
@click.option("--pgpass", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="pgpass file with that user's password (default: the configured one, if it exists).")
@snapshot_option
@restore_destination_option
@force_option
@pass_context
def restore_postgres_command(context: Context, container, host, network, port, user, pgpass, snapshot,
                             destination_name, force):
    """Load a pg_dumpall snapshot into a running PostgreSQL, stopping at the first error.
    Refuses a server that already holds databases or tables unless --force."""
    from runner import recover
    from runner.sources import postgres

    settings = context.settings
    configured_pgpass = postgres.pgpass_file(settings)
    _restore(context, lambda: recover.restore_postgres(
        settings, _engine(context), recover.destination_for(settings, destination_name), snapshot,
        container=container, host=host, port=port, network=network, user=user or settings.sources.postgres.user,
        pgpass=pgpass or (configured_pgpass if configured_pgpass.exists() else None), force=force))


@restore.command("minio")
@click.option("--to-dir", "target", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="Directory to restore the objects (objects/<bucket>/<key>) and their manifest into.")
@click.option("--endpoint", help="Also upload every object to this S3 endpoint (a new MinIO), with its content "
                                 "type and metadata.")
@click.option("--credentials-file", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="Access keys for --endpoint (AWS shared-credentials format; default: sources.minio's).")
@click.option("--network", help="Podman network to reach --endpoint on (default: sources.minio.network).")
@snapshot_option
@restore_destination_option
@force_option
@pass_context
def restore_minio_command(context: Context, target, endpoint, credentials_file, network, snapshot, destination_name,
                          force):
    """Restore the MinIO mirror: every object, and the manifest of their content types and metadata;
    with --endpoint, upload them back into an S3 server too."""
    from runner import recover

    _restore(context, lambda: recover.restore_minio(
        context.settings, _engine(context), recover.destination_for(context.settings, destination_name),
        snapshot, target, force, endpoint, credentials_file, network))


@cli.group()
def notify():
    """Alerts raised from outside a job command (systemd's OnFailure= units)."""


@notify.command("unit-failed")
@click.argument("unit")
@click.option("--within", default=6 * 3600, show_default=True, type=int,
              help="Seconds: if the runner recorded runs this recently, it reported them itself.")
@pass_context
def notify_unit_failed(context: Context, unit: str, within: int):
    """Alert that the systemd UNIT failed, unless the runner reported its runs itself (it then
    already alerted on what failed). Catches a runner that could not start, was killed or
    timed out. Resolved by the next command that records runs."""
    from runner.alerts import unit_failed

    unit_failed(context.settings, unit, within)


@cli.group(hidden=True)
def internal():
    """Steps the runner runs inside job containers."""


@internal.command("vault-probe")
@click.option("--address", required=True)
@click.option("--snapshot", required=True, type=click.Path(path_type=Path, exists=True))
@click.option("--unseal-keys-file", type=click.Path(path_type=Path, exists=True))
@click.option("--approle-dir", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--kv-mount", default="secret")
@click.option("--canary", default="")
@click.option("--canary-key", default="password")
def internal_vault_probe(address, snapshot, unseal_keys_file, approle_dir, kv_mount, canary, canary_key):
    """Restore a raft snapshot into a throwaway Vault and report, as JSON, what could be verified."""
    from runner.restoretests import vault_probe

    result = vault_probe(address, snapshot, unseal_keys_file, approle_dir, kv_mount, canary, canary_key)
    click.echo(json.dumps(result))


def _size(value: int | None) -> str:
    if value is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024


def _number(value: int | None) -> str:
    return "-" if value is None else str(value)


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
    console().print(table)
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
