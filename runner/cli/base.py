"""The `runner` group, its context, and what the command modules share: loading the settings,
the engine, the selection of destinations and sources, reporting results and exit codes."""

from __future__ import annotations

import functools
import json
import os
import signal
import sys
from pathlib import Path
from typing import NoReturn

import click
from loguru import logger
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Column, Table

from runner import logs
from runner.settings import (
    CONFIG_ENV,
    DEFAULT_CONFIG_PATH,
    ConfigError,
    LoadedSettings,
    load_settings,
)
from runner.units import duration_text

EXIT_FAILED = 1
EXIT_CONFIG = 2


def console() -> Console:
    # made per use, so that COLUMNS and the output stream in effect now are respected
    return Console()


def table(*columns: str | Column, title: str | None = None) -> Table:
    """A table as every command prints one: a rule under the header and two spaces between columns, no
    borders, so that more fits in 80 columns; a cell too narrow wraps (a long word folds), never cut to '…'."""
    made = [Column(heading) if isinstance(heading, str) else heading for heading in columns]
    for column in made:
        column.overflow = "fold"
    return Table(*made, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0), title=title)


def fixed(heading: str, **options) -> Column:
    """A column whose cells are never wrapped (short values: names, sizes, ages, rates)."""
    return Column(heading, no_wrap=True, **options)


# Set by the Quadlet units to the unit's name: whether a failed unit's runner got to report is
# looked up by it (`notify unit-failed`).
UNIT_ENV = "OFFSITE_BACKUP_UNIT"


class Context:
    def __init__(self, config: Path | None, log_level: str | None, log_format: str | None = None):
        self.config = config
        self.log_level = log_level
        self.log_format = log_format
        self._loaded: LoadedSettings | None = None
        self.unit = os.environ.get(UNIT_ENV, "")
        self.reported = False  # the runs were recorded and their alerts sent

    def load(self) -> LoadedSettings:
        if self._loaded is None:
            try:
                loaded = load_settings(self.config)
            except ConfigError as error:
                fail_config(error)
            logs.setup(self.log_level or loaded.settings.log.level, self.log_format or loaded.settings.log.format)
            self._loaded = loaded
        return self._loaded

    @property
    def settings(self):
        return self.load().settings


def fail_config(error: ConfigError) -> NoReturn:
    click.echo(f"configuration has {len(error.problems)} error(s):", err=True)
    for problem in error.problems:
        click.echo(f"  - {problem}", err=True)
    sys.exit(EXIT_CONFIG)


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
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


def job_engine(context: Context):
    """The engine for commands that report every job: when Podman does not answer, each job fails
    with that reason and is recorded and alerted like any other failure."""
    from runner.engine import Engine, EngineUnavailable

    engine = Engine(context.settings)
    try:
        engine.ping()
    except EngineUnavailable as error:
        logger.error("{}: every job will fail", error)
    return engine


def engine_for(context: Context):
    from runner.engine import Engine, EngineUnavailable

    engine = Engine(context.settings)
    try:
        engine.ping()
    except EngineUnavailable as error:
        fail(str(error))
    return engine


def selection(context: Context, destination_names: tuple[str, ...], source_names: tuple[str, ...]):
    from runner import destinations, sources

    try:
        chosen = destinations.configured(context.settings, destination_names)
        names = sources.enabled(context.settings, source_names)
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    if not names:
        raise click.UsageError("no source is enabled in the configuration (see [sources] in examples/runner.toml)")
    return chosen, names


def record_runs(settings, runs) -> None:
    """Put (kind, result) pairs in the run history, as soon as they are known."""
    from runner.monitoring.reporting import record

    record(settings, runs)


def finish(context: Context, runs, as_json: bool) -> None:
    """Alerts, metrics, dashboard and ping for the recorded runs; then the report and exit code."""
    from runner.monitoring import reporting

    reporting.report(context.settings, runs, context.unit)
    context.reported = True
    report([result for _, result in runs], as_json)


# The scheduled jobs pinged as one (alerts.ping_urls_file); backups are pinged per source by exec backup.
PINGED_JOBS = {"exec check": "check", "exec prune": "prune", "exec restore test": "restore-test", "exec copy": "copy",
               "status": "status"}


def tracked(command):
    """Note in the history when a command starts and, once it has reported, how it ended: a systemd
    unit that fails without that note is alerted by `notify unit-failed`. A scheduled job also pings
    its start and its end (alerts.ping_urls_file)."""

    @functools.wraps(command)
    def pinged(context: Context, *args, **kwargs):
        from runner.monitoring.pings import Pings
        from runner.results import EXIT_DEFERRED

        job = PINGED_JOBS.get(command.__name__.replace("_", " "))
        if job is None or kwargs.get("dry_run"):
            return run(context, *args, **kwargs)
        pings = Pings(context.settings, context.unit)
        pings.start(job)
        code: int | str | None = None
        try:
            result = run(context, *args, **kwargs)
            code = 0
            return result
        except SystemExit as stop:
            code = stop.code
            raise
        finally:
            pings.finish(job, failed=code not in (0, EXIT_DEFERRED))

    def run(context: Context, *args, **kwargs):
        from runner.monitoring.alerts import HISTORY_ERRORS
        from runner.monitoring.history import open_history

        name = command.__name__.replace("_", " ")
        try:
            history = open_history(context.settings.paths.state_dir)
            invocation = history.start_invocation(context.unit, name)
        except HISTORY_ERRORS as error:
            logger.error("could not note the start of this run in the history: {}", error)
            return command(context, *args, **kwargs)
        code: int | None = None
        try:
            result = command(context, *args, **kwargs)
            code = 0
            return result
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else EXIT_FAILED
            raise
        finally:
            if context.reported and code is not None:
                try:
                    history.end_invocation(invocation, code)
                except HISTORY_ERRORS as error:
                    logger.error("could not note the end of this run in the history: {}", error)

    return pinged


def report(results, as_json: bool) -> None:
    from runner.results import exit_code

    if as_json:
        click.echo(json.dumps([as_dict(result) for result in results], indent=2, default=str))
        sys.exit(exit_code(results))
    shown = table(fixed("source"), fixed("destination"), "result", fixed("took", justify="right"), "details")
    for result in results:
        style = "green" if result.status.value == "ok" else "yellow" if not result.status.is_failure else "red"
        shown.add_row(result.source, result.destination, f"[{style}]{escape(result.status.value)}[/]",
                      duration_text(result.duration) if result.duration else "-", escape(logs.mask(result.message)))
    console().print(shown)
    sys.exit(exit_code(results))


def as_dict(record) -> dict:
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


def number_text(value: int | None) -> str:
    return "-" if value is None else str(value)


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

