"""Where each source stands on each destination, from the run history: the data behind
`runner status`, the metrics, the alerts and the dashboard."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from runner.destinations import configured
from runner.monitoring.history import History, Run
from runner.settings import Settings
from runner.sources import enabled

OK = "ok"
# A partial backup stored a snapshot of all but what it names: a recovery point for the RPO, but
# its outcome still needs attention.
RECOVERY_POINT = (OK, "partial")
# Runs put off (not failed) count for neither side of the success rate.
PUT_OFF = ("deferred by quota", "skipped by lock")
# A rate over fewer runs than a week of nightly backups is noise: each of those failures has its own alert.
RATE_JUDGED_FROM = 7


@dataclass
class RepositoryStatus:
    source: str
    destination: str
    last_success: datetime | None
    age_hours: float | None
    within_rpo: bool
    last_outcome: str | None  # status of the latest backup run
    last_run: datetime | None
    last_size: int | None  # bytes processed by the latest successful backup
    size_change: float | None  # against the successful backup before it (0.2 = +20 %)
    repository_bytes: int | None
    snapshots: int | None
    last_restore_test: str | None
    last_restore_test_at: datetime | None
    last_restore_test_seconds: float | None
    # on a destination of the restore tests' rotation: no restore test passed within restore_test_allowance
    # (of the last passed one, or of the first good backup); None elsewhere: the tests do not read from there
    restore_test_overdue: bool | None = None
    # backups that succeeded, of those that ran, over the last 30 and 90 days (None: none ran)
    success_rate_30d: float | None = None
    success_rate_90d: float | None = None
    below_success_floor: bool = False  # the 30-day rate is under monitoring.success_rate_floor

    @property
    def healthy(self) -> bool:
        return self.within_rpo and self.last_outcome in (OK, *PUT_OFF) and self.last_restore_test in (None, OK) \
            and not self.restore_test_overdue and not self.below_success_floor

    def as_dict(self) -> dict:
        data = asdict(self)
        for key, value in data.items():
            if isinstance(value, datetime):
                data[key] = value.isoformat(timespec="seconds")
        data["healthy"] = self.healthy
        return data


def size_change(current: Run, previous: Run | None) -> float | None:
    if previous is None or not previous.bytes_processed or current.bytes_processed is None:
        return None
    return (current.bytes_processed - previous.bytes_processed) / previous.bytes_processed


def ran_within(backups: list[Run], now: datetime, days: int) -> list[Run]:
    """The backups that ran (put-off ones aside) in the last `days` days."""
    return [run for run in backups
            if (now - run.ended_at).total_seconds() <= days * 86400 and run.status not in PUT_OFF]


def success_rate(backups: list[Run], now: datetime, days: int) -> float | None:
    """Successful backups over those that ran (put-off ones aside) in the last `days` days."""
    ran = ran_within(backups, now, days)
    return round(sum(run.status == OK for run in ran) / len(ran), 4) if ran else None


def recovery_kind(settings: Settings, destination: str) -> str:
    """The runs that put recovery points on a destination: 'copy' where it is filled by copying (copy_from),
    else 'backup'."""
    config = settings.destinations.get(destination)
    return "copy" if config is not None and config.copy_from else "backup"


def restore_test_rotation(settings: Settings) -> list[str]:
    """The destinations the restore tests read from, in turn: restore_tests.destination alone when it is set,
    else every enabled destination."""
    if settings.restore_tests.destination:
        return [settings.restore_tests.destination]
    return [destination.name for destination in configured(settings)]


def restore_test_allowance(settings: Settings) -> float:
    """Seconds a destination of the rotation may go without a passed restore test of a source: the tests visit
    each destination in turn, so each is due once per monitoring.restore_test_every times their number."""
    return settings.monitoring.restore_test_every * max(1, len(restore_test_rotation(settings)))


def next_restore_test(rotation: list[str], last_tested: Mapping[str, datetime]) -> str:
    """Of the rotation's destinations, the one whose last restore test of a source (any outcome) is the oldest;
    one never tested comes first; a tie goes to the first in configuration order."""
    if not rotation:
        raise ValueError("no destination to restore-test from")
    never = datetime.min.replace(tzinfo=UTC)
    return min(rotation, key=lambda name: last_tested.get(name, never))


@dataclass(frozen=True)
class StoredSize:
    bytes: int
    snapshots: int | None
    measured: Run  # the run that last measured the repository (restic stats)


def stored_size(runs: list[Run]) -> StoredSize | None:
    """A repository's size from its runs (newest first): the last measurement (restic stats, made by prunes,
    copies and now and then by a backup) plus what the backups since stored, their snapshots and their
    manifests'. None when it was never measured."""
    added, snapshots = 0, 0
    for run in runs:
        if run.stored_bytes:
            counted = run.figures.get("snapshots")
            return StoredSize(run.stored_bytes + added, counted + snapshots if isinstance(counted, int) else None, run)
        if run.kind == "backup" and run.status in RECOVERY_POINT:
            added += (run.bytes_added or 0) + (run.figures.get("manifest_added_packed") or 0)
            snapshots += 2 if run.figures.get("manifest_snapshot") else 1
    return None


def repository_status(settings: Settings, history: History, source: str, destination: str,
                      now: datetime | None = None) -> RepositoryStatus:
    now = now or datetime.now(UTC)
    backups = history.runs(kind=recovery_kind(settings, destination), source=source, destination=destination)
    successes = [run for run in backups if run.status in RECOVERY_POINT]
    last, previous = (successes + [None, None])[:2]
    age = (now - last.ended_at).total_seconds() / 3600 if last else None
    change = size_change(last, previous) if last else None
    stored = stored_size(history.runs(source=source, destination=destination))
    tests = history.runs(kind="restore-test", source=source, destination=destination)
    overdue = None
    if destination in restore_test_rotation(settings):
        # due once per round of the rotation since the last passed test, or else since the first good backup
        passed = next((run for run in tests if run.status == OK), None)
        since = passed.ended_at if passed else successes[-1].ended_at if successes else None
        overdue = since is not None and (now - since).total_seconds() > restore_test_allowance(settings)
    rate_30d = success_rate(backups, now, 30)
    return RepositoryStatus(
        source=source, destination=destination,
        last_success=last.ended_at if last else None,
        age_hours=round(age, 1) if age is not None else None,
        within_rpo=age is not None and age * 3600 <= settings.monitoring.rpo,
        last_outcome=backups[0].status if backups else None,
        last_run=backups[0].ended_at if backups else None,
        last_size=last.bytes_processed if last else None,
        size_change=round(change, 3) if change is not None else None,
        repository_bytes=stored.bytes if stored else None,
        snapshots=stored.snapshots if stored else None,
        last_restore_test=tests[0].status if tests else None,
        last_restore_test_at=tests[0].ended_at if tests else None,
        last_restore_test_seconds=tests[0].duration if tests else None,
        restore_test_overdue=overdue,
        success_rate_30d=rate_30d,
        success_rate_90d=success_rate(backups, now, 90),
        below_success_floor=(rate_30d is not None and rate_30d < settings.monitoring.success_rate_floor
                             and len(ran_within(backups, now, 30)) >= RATE_JUDGED_FROM),
    )


def overview(settings: Settings, history: History, now: datetime | None = None) -> list[RepositoryStatus]:
    return [repository_status(settings, history, source, destination.name, now)
            for source in enabled(settings) for destination in configured(settings)]
