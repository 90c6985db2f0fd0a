"""What follows every command that ran jobs: recording the runs, alerts, metrics, dashboard.

None of it may keep the others from happening: a history that cannot be written still lets the
alerts go out (undeduplicated, with an alert about the history), and the command's exit code and
the journal tell the truth either way.
"""

from __future__ import annotations

from loguru import logger

from runner.monitoring import alerts, dashboard, metrics
from runner.monitoring.alerts import HISTORY_ERRORS
from runner.monitoring.history import History, open_history
from runner.results import RunResult
from runner.settings import Settings


def record(settings: Settings, runs: list[tuple[str, RunResult]]) -> None:
    """Put the runs in the history as soon as they are known; a broken history is logged here and
    alerted by report()."""
    try:
        history = open_history(settings.paths.state_dir)
        for kind, result in runs:
            history.record(kind, result)
    except HISTORY_ERRORS as error:
        logger.error("could not record {} run(s) in the history: {}", len(runs), error)


def report(settings: Settings, runs: list[tuple[str, RunResult]], unit: str = "") -> History | None:
    """Decide and send the alerts for these runs (and any source past its RPO or overdue for a restore
    test), then refresh the metrics and the dashboard. Returns the history, None when it
    cannot be used. Nothing here raises: the runs are done."""
    history: History | None
    try:
        history = open_history(settings.paths.state_dir)
        decided = alerts.decide(settings, history, runs, unit=unit)
    except HISTORY_ERRORS as error:
        logger.error("the run history cannot be used: {}", error)
        history, decided = None, alerts.without_history(settings, runs, error)
    alerts.delivered(settings, history, decided)
    if history is not None:
        _refresh(settings, history)
    return history


def _refresh(settings: Settings, history: History) -> None:
    for what, step in (("metrics", lambda: metrics.write(settings, history)),
                       ("dashboard", lambda: settings.monitoring.dashboard_file
                        and dashboard.write(settings, history, settings.monitoring.dashboard_file))):
        try:
            step()
        except (*HISTORY_ERRORS, ValueError) as error:
            logger.error("could not write the {}: {}", what, error)
