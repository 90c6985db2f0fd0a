"""Prometheus metrics in node_exporter's textfile-collector format, rewritten after every run from the
history (prometheus_client writes a temporary file and renames it, so a scrape never sees half)."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge, write_to_textfile

from runner.destinations import configured
from runner.monitoring.history import History
from runner.monitoring.status import overview, stored_size
from runner.quota import ledger
from runner.settings import Settings
from runner.sources import enabled

PREFIX = "offsite_backup"
KINDS = ("backup", "check", "prune", "restore-test")


def metrics_file(settings: Settings) -> Path:
    return settings.monitoring.metrics_file or settings.paths.state_dir / "metrics" / "offsite_backup.prom"


def registry(settings: Settings, history: History) -> CollectorRegistry:
    registry = CollectorRegistry()
    job = ("source", "destination", "kind")
    repository = ("source", "destination")

    def gauge(name, text, labels):
        return Gauge(f"{PREFIX}_{name}", text, labels, registry=registry)

    last_success = gauge("last_success_timestamp_seconds", "End of the last successful run.", job)
    last_run = gauge("last_run_timestamp_seconds", "End of the last run.", job)
    last_ok = gauge("last_run_success", "1 if the last run succeeded, 0 if not.", job)
    duration = gauge("last_duration_seconds", "Duration of the last run.", job)
    processed = gauge("last_bytes_processed", "Bytes the last successful backup read.", repository)
    added = gauge("last_bytes_added", "Bytes the last successful backup added (after compression).", repository)
    size = gauge("repository_size_bytes", "Stored size of the repository.", repository)
    snapshots = gauge("repository_snapshots", "Snapshots in the repository.", repository)
    dedup = gauge("deduplication_ratio", "Logical size of all snapshots over their stored, uncompressed size.",
                  repository)
    compression = gauge("compression_ratio", "Uncompressed over compressed size of the stored data.", repository)
    restore_ok = gauge("restore_test_success", "1 if the last restore test passed.", repository)
    restore_seconds = gauge("restore_test_duration_seconds", "Duration of the last restore test.", repository)
    age = gauge("last_success_age_seconds", "Seconds since the last successful backup.", repository)
    within = gauge("within_rpo", "1 if the last successful backup is younger than the RPO.", repository)
    rates = {days: gauge(f"backup_success_ratio_{days}d", f"Backups that succeeded, of those that ran, over {days} "
                         "days (put-off ones aside).", repository) for days in (30, 90)}
    test_overdue = gauge("restore_test_overdue", "1 if no restore test passed on the destination within "
                         "monitoring.restore_test_every times the number of destinations the tests visit in turn.",
                         repository)
    quota_used = gauge("quota_used_bytes", "Bytes uploaded today (UTC) to the destination.", ("destination",))
    quota_limit = gauge("quota_limit_bytes", "Daily upload quota of the destination (0: none).", ("destination",))

    for source in enabled(settings):
        for destination in configured(settings):
            where = (source, destination.name)
            for kind in KINDS:
                runs = history.runs(kind=kind, source=source, destination=destination.name)
                if not runs:
                    continue
                labels = (*where, kind)
                last_run.labels(*labels).set(runs[0].ended_at.timestamp())
                last_ok.labels(*labels).set(1 if runs[0].status == "ok" else 0)
                duration.labels(*labels).set(runs[0].duration)
                success = next((run for run in runs if run.status == "ok"), None)
                if success:
                    last_success.labels(*labels).set(success.ended_at.timestamp())
                if kind == "backup" and success:
                    processed.labels(*where).set(success.bytes_processed or 0)
                    added.labels(*where).set(success.bytes_added or 0)
                if kind == "restore-test":
                    restore_ok.labels(*where).set(1 if runs[0].status == "ok" else 0)
                    restore_seconds.labels(*where).set(runs[0].duration)
            stored = stored_size(history.runs(source=source, destination=destination.name))
            if stored:
                size.labels(*where).set(stored.bytes)
                if stored.snapshots is not None:
                    snapshots.labels(*where).set(stored.snapshots)
                measured = stored.measured
                for target, key in ((dedup, "deduplication_ratio"), (compression, "compression_ratio")):
                    if measured.figures.get(key) is not None:
                        target.labels(*where).set(measured.figures[key])
    for state in overview(settings, history):
        if state.age_hours is not None:
            age.labels(state.source, state.destination).set(state.age_hours * 3600)
        within.labels(state.source, state.destination).set(1 if state.within_rpo else 0)
        for days, rate in ((30, state.success_rate_30d), (90, state.success_rate_90d)):
            if rate is not None:
                rates[days].labels(state.source, state.destination).set(rate)
        if state.restore_test_overdue is not None:
            test_overdue.labels(state.source, state.destination).set(1 if state.restore_test_overdue else 0)
    uploads = ledger(settings.paths.state_dir)
    for destination in configured(settings):
        quota_used.labels(destination.name).set(uploads.uploaded_today(destination.name))
        quota_limit.labels(destination.name).set(destination.quota)
    return registry


def write(settings: Settings, history: History) -> Path:
    path = metrics_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(path), registry(settings, history))
    path.chmod(0o644)
    return path
