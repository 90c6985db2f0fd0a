import sqlite3
import threading
import time
from datetime import UTC, date, datetime, timedelta

from runner import restic
from runner.engine import LEGACY_JOB_HOSTNAME as JOB_HOSTNAME
from runner.locking import repository_lock
from runner.maintenance import rotating_subset
from runner.monitoring.history import MIGRATIONS, History, migrate
from runner.results import EXIT_DEFERRED, RunResult, Status, exit_code
from runner.settings import Settings


def test_rotating_subset_reads_every_part_over_the_weeks():
    settings = Settings(retention={"check_weeks": 4})
    parts = {rotating_subset(settings, date(2026, 1, 5) + timedelta(weeks=w)) for w in range(4)}
    assert parts == {"1/4", "2/4", "3/4", "4/4"}
    assert rotating_subset(Settings(retention={"check_weeks": 1})) == "all"


def test_check_and_forget_arguments():
    repo = restic.Repository("/repo", "/pw")
    assert restic.check(repo, "3/8")[-3:] == ["check", "--read-data-subset", "3/8"]
    assert restic.check(repo, "all")[-2:] == ["check", "--read-data"]
    assert restic.check(repo, "")[-1] == "check"
    forget = restic.forget(repo, daily=7, monthly=12, yearly=2, last=3, tags=["vault"], retry_lock=600)
    assert forget[forget.index("--retry-lock") + 1] == "600s"
    assert forget[forget.index("forget"):] == ["forget", "--tag", "vault", "--keep-last", "3", "--keep-daily", "7",
                                               "--keep-monthly", "12", "--keep-yearly", "2"]
    assert "--remove-all" not in restic.unlock(repo)
    preview = restic.forget(repo, daily=7, monthly=12, yearly=2, last=3, tags=["vault"], retry_lock=600, dry_run=True)
    assert "--no-lock" in preview and "--dry-run" in preview and "--retry-lock" not in preview


def test_lock_report_parsing():
    lines = ["lock 0a1b", "{", '  "time": "2026-11-27T13:03:38.236759949Z",', f'  "hostname": "{JOB_HOSTNAME}",',
             '  "pid": 6,', '  "exclusive": true', "}",
             "lock 2c3d", '{"time": "2026-01-01T00:00:00Z", "hostname": "laptop", "pid": 9}']
    first, second = restic.parse_locks(lines)
    assert (first.id, first.hostname, first.pid, first.exclusive) == ("0a1b", JOB_HOSTNAME, 6, True)
    assert first.time == datetime(2026, 11, 27, 13, 3, 38, 236759, tzinfo=UTC)
    assert second.hostname == "laptop" and second.age() > 0


def test_second_run_on_a_repository_waits_then_is_skipped(tmp_path):
    settings = Settings(paths={"state_dir": tmp_path}, locks={"wait": 1})
    held, released = threading.Event(), threading.Event()

    def first():
        with repository_lock(settings, "nas", "vault") as got:
            assert got
            held.set()
            released.wait(10)

    thread = threading.Thread(target=first)
    thread.start()
    held.wait(5)
    started = time.monotonic()
    with repository_lock(settings, "nas", "vault") as got:
        assert got is False
    assert time.monotonic() - started >= 1
    with repository_lock(settings, "nas", "postgres") as other_repository:
        assert other_repository  # only the same repository is excluded
    released.set()
    thread.join()
    with repository_lock(settings, "nas", "vault") as got:
        assert got


def test_skipped_runs_exit_like_deferred_ones():
    assert exit_code([RunResult("vault", "nas", Status.SKIPPED),
                      RunResult("vault", "local", Status.OK)]) == EXIT_DEFERRED
    assert Status.CHECK_FAILED.is_failure


def test_history_records_runs_and_removed_snapshots(tmp_path):
    history = History(tmp_path / "history.sqlite")
    result = RunResult("vault", "nas", Status.OK, "pruned", duration=3.5,
                       figures={"repository_bytes": 10}, removed=[{"id": "abc", "time": "2025-01-01T12:00:00Z"}])
    run_id = history.record("prune", result)
    [run] = history.runs(kind="prune")
    assert ((run.id, run.source, run.status, run.figures, run.duration)
            == (run_id, "vault", "ok", {"repository_bytes": 10}, 3.5))
    assert abs((run.ended_at - run.started_at).total_seconds() - 3.5) < 0.01
    assert history.removed_snapshots(run_id)[0]["snapshot_id"] == "abc"
    assert History(tmp_path / "history.sqlite").runs() == [run]  # reopening migrates nothing twice


def test_migrations_bring_an_old_history_up_to_date(tmp_path):
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE unrelated (x)")
    connection.close()
    with sqlite3.connect(path) as connection:
        assert migrate(connection) == len(MIGRATIONS)
        assert connection.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    connection.close()
