"""What follows every command that ran jobs: alerts, metrics, dashboard, ping."""

from __future__ import annotations

from loguru import logger

from runner.monitoring import alerts, dashboard, metrics
from runner.monitoring.history import History, open_history
from runner.results import RunResult
from runner.settings import Settings


def record(settings: Settings, runs: list[tuple[str, RunResult]]) -> None:
    history = open_history(settings.paths.state_dir)
    for kind, result in runs:
        history.record(kind, result)


def report(settings: Settings, runs: list[tuple[str, RunResult]]) -> History:
    """Decide and send alerts for these recorded runs (and any source past its RPO), then refresh
    the metrics and the dashboard, and ping. A failure here is logged, never raised: the runs are done."""
    history = open_history(settings.paths.state_dir)
    alerts.send(settings, alerts.decide(settings, history, runs))
    for what, step in (("metrics", lambda: metrics.write(settings, history)),
                       ("dashboard", lambda: settings.monitoring.dashboard_file
                        and dashboard.write(settings, history, settings.monitoring.dashboard_file))):
        try:
            step()
        except OSError as error:
            logger.error("could not write the {}: {}", what, error)
    alerts.ping(settings, runs)
    return history
