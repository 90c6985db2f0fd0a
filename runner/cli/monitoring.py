"""Status, dashboard and the OnFailure= alert."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Column, Table

from runner.cli.base import (
    EXIT_FAILED,
    Context,
    cli,
    console,
    fail,
    fixed,
    json_option,
    number_text,
    pass_context,
    table,
    tracked,
)
from runner.units import age_text, duration_text, rate_text, size_text

if TYPE_CHECKING:
    from runner.monitoring.status import RepositoryStatus


@cli.command()
@click.option("--wide", is_flag=True, help="Every column: also the RPO, the size change, the repository's size "
              "and snapshots, the 90-day success rate, the last restore test's date and duration (wider than 80).")
@json_option
@pass_context
@tracked
def status(context: Context, wide: bool, as_json: bool):
    """Show, per source and destination, whether it is healthy, how long ago the last successful backup
    was, the last outcome and size, the share of backups that succeeded over 30 days, and the state of
    the restore tests (--wide: every column; --json: every figure).

    Also raises the alerts for any source past its RPO or overdue for a restore test
    (monitoring.restore_test_every), once each. Exit code 1 when anything is past its RPO, last
    failed, failed its last restore test or is overdue for one, or succeeded less often than
    monitoring.success_rate_floor over 30 days: usable as a health check."""
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
    shown = wide_table(states) if wide else compact_table(states)
    out = console()
    if wide:  # as wide as its columns need, whatever the terminal
        out.width = max(out.width, Measurement.get(out, out.options.update_width(10_000), shown).maximum)
    out.print(shown)
    sys.exit(code)


def compact_table(states: list[RepositoryStatus]) -> Table:
    """What fits 80 columns: health, the last success's age, the last outcome and size, the 30-day success rate,
    the restore tests' state."""
    # the longest word an outcome has is 11 letters ('destination unavailable')
    shown = table(fixed("source"), fixed("to"), fixed("health"), fixed("last\nsuccess"),
                  Column("last outcome", min_width=11), fixed("size", justify="right"),
                  fixed("30 d", justify="right"), "restore test")
    for state in states:
        shown.add_row(state.source, state.destination, health_text(state), success_text(state),
                      outcome_text(state), size_text(state.last_size), rate_cell(state), restore_test_state(state))
    return shown


def wide_table(states: list[RepositoryStatus]) -> Table:
    shown = table(*map(fixed, ("source", "destination", "health", "last success", "RPO")), "last outcome",
                  *(fixed(heading, justify="right") for heading in ("last size", "change", "repository", "snapshots",
                                                                     "ok 30 d", "ok 90 d")),
                  "last restore test")
    for state in states:
        shown.add_row(
            state.source, state.destination, health_text(state), success_text(state),
            "within" if state.within_rpo else "[red]past[/]", outcome_text(state), size_text(state.last_size),
            f"{state.size_change:+.0%}" if state.size_change is not None else "-", size_text(state.repository_bytes),
            number_text(state.snapshots), rate_cell(state), rate_text(state.success_rate_90d),
            restore_test_text(state))
    return shown


def health_text(state: RepositoryStatus) -> str:
    return "[green]ok[/]" if state.healthy else "[red]attention[/]"


def success_text(state: RepositoryStatus) -> str:
    age = age_text(state.age_hours * 3600 if state.age_hours is not None else None)
    return age if state.within_rpo else f"[red]{age}[/]"


def outcome_text(state: RepositoryStatus) -> str:
    from runner.monitoring.status import OK, PUT_OFF

    outcome = state.last_outcome or "-"
    return escape(outcome) if outcome in ("-", OK, *PUT_OFF) else f"[red]{escape(outcome)}[/]"


def rate_cell(state: RepositoryStatus) -> str:
    rate = rate_text(state.success_rate_30d)
    return f"[red]{rate}[/]" if state.below_success_floor else rate


def restore_test_state(state: RepositoryStatus) -> str:
    """Whether the last restore test passed, and whether one is overdue: 'ok', 'failed' (whatever went wrong:
    --wide says), 'overdue', 'failed, overdue', '-' (none on this destination)."""
    passed = state.last_restore_test in (None, "ok")
    if state.restore_test_overdue:
        return "[red]overdue[/]" if passed else "[red]failed, overdue[/]"
    return (state.last_restore_test or "-") if passed else "[red]failed[/]"


def restore_test_text(state: RepositoryStatus) -> str:
    """The last restore test: outcome, date and duration; and whether one is overdue."""
    text = escape(state.last_restore_test or ("none yet" if state.restore_test_overdue else "-"))
    if state.last_restore_test_at:
        text += f" {state.last_restore_test_at:%Y-%m-%d}, {duration_text(state.last_restore_test_seconds)}"
    return f"{text}, [red]overdue[/]" if state.restore_test_overdue else text


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
    """Alerts raised from outside a job command (systemd's OnFailure= units), and a test alert."""


@notify.command("test")
@pass_context
def notify_test(context: Context):
    """Send a test alert (a NOTICE) through every channel: the mail (alerts.email_to) and each
    Apprise target of alerts.apprise_urls_file, to check they arrive. Nothing is recorded in the
    history. Exit code 1 when a channel could not deliver it (the log says which and why)."""
    from runner.monitoring.alerts import Alert, delivered

    config = context.settings.alerts
    if not config.email_to and not config.apprise_urls_file:
        fail("no alert channel is configured (alerts.email_to, alerts.apprise_urls_file): alerts go to the log only")
    alert = Alert("NOTICE", "test alert", "-", "-", "`runner notify test` sent this to check that alerts arrive.")
    if not delivered(context.settings, None, [alert]):
        fail("the test alert did not go out on every channel: see the log above")
    click.echo("the test alert went out on every channel")


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
    unit's runner reports again. Its job's failure ping (alerts.ping_urls_file) is sent with the alert."""
    from runner.monitoring.alerts import unit_failed
    from runner.monitoring.pings import Pings, job_of_unit

    job = job_of_unit(unit)
    if unit_failed(context.settings, unit, within) and job:
        Pings(context.settings, unit).finish(job, failed=True)
