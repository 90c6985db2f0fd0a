"""Status, dashboard and the OnFailure= alert."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.table import Table

from runner.cli.base import (
    EXIT_FAILED,
    Context,
    cli,
    console,
    fail,
    json_option,
    number_text,
    pass_context,
    tracked,
)
from runner.units import size_text


@cli.command()
@json_option
@pass_context
@tracked
def status(context: Context, as_json: bool):
    """Show, per source and destination, the last successful backup and its age against the RPO,
    the last outcome, size and its change, the repository size and the last restore test.

    Also raises the alerts for any source past its RPO or overdue for a restore test
    (monitoring.restore_test_every), once each. Exit code 1 when anything is past its RPO, last
    failed, failed its last restore test or is overdue for one: usable as a health check."""
    from runner.monitoring import reporting
    from runner.monitoring.status import overview

    history = reporting.report(context.settings, [], context.unit)
    context.reported = True
    if history is None:
        fail("the run history cannot be read: see the log above (an alert was sent)")
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
            "within" if state.within_rpo else "[red]past[/]", state.last_outcome or "-", size_text(state.last_size),
            f"{state.size_change:+.0%}" if state.size_change is not None else "-", size_text(state.repository_bytes),
            number_text(state.snapshots), restore_test_text(state))
    console().print(table)
    sys.exit(code)


def restore_test_text(state) -> str:
    text = f"{state.last_restore_test} {state.last_restore_test_at:%Y-%m-%d}" if state.last_restore_test_at else "-"
    return f"{text} [red]overdue[/]" if state.restore_test_overdue else text


@cli.command()
@click.option("--output", "-o", required=True, type=click.Path(path_type=Path, dir_okay=False),
              help="HTML file to write (self-contained: no external assets).")
@pass_context
def dashboard(context: Context, output: Path):
    """Write the status dashboard: status per source and destination, charts of backup size,
    duration, deduplication and restore-test duration over time, and the latest alerts.
    (monitoring.dashboard_file rewrites it after every run.)"""
    from runner.monitoring import dashboard as pages
    from runner.monitoring.history import open_history

    pages.write(context.settings, open_history(context.settings.paths.state_dir), output)
    click.echo(f"wrote {output}")


@cli.group()
def notify():
    """Alerts raised from outside a job command (systemd's OnFailure= units)."""


@notify.command("unit-failed")
@click.argument("unit")
@click.option("--within", default=6 * 3600 + 600, show_default=True, type=int,
              help="Seconds: how long ago the unit's runner may have started to count as this failure's "
                   "(its longest run, TimeoutStartSec, and a margin).")
@pass_context
def notify_unit_failed(context: Context, unit: str, within: int):
    """Alert that the systemd UNIT failed, unless its runner reported (it then already alerted on
    what failed): the runner notes in the history, by unit, when it starts and when it has reported.
    Catches a runner that could not start, was killed, crashed or timed out. Resolved when that
    unit's runner reports again."""
    from runner.monitoring.alerts import unit_failed

    unit_failed(context.settings, unit, within)
