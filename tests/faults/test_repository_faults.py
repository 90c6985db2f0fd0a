"""Faults in the repositories and in the runs themselves: damaged data, killed jobs and runners,
overlapping runs, and retention that must never go below its floor."""

import os
import signal
import subprocess
import threading
import time

import pytest

from runner.engine import Mount
from runner.repository import RepositoryError
from runner.workspace import job_dir
from tests.faults.harness import Scenario


@pytest.fixture
def scenario(settings, tmp_path, smtp, engine):
    return Scenario(settings, tmp_path, smtp, engine)


def slow(scenario, **overrides):
    """A backup that takes a few seconds: 6 MB through a 1 MB/s limit."""
    (scenario.data / "large.bin").write_bytes(os.urandom(6_000_000))
    return scenario.configure(destinations={"local": scenario.local(bandwidth_limit="1MB")}, **overrides)


def wait_for(predicate, what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def job_containers(label: str) -> list[str]:
    return subprocess.run(["podman", "ps", "-q", "--filter", f"label=io.offsite-backup.job={label}"],
                          capture_output=True, text=True).stdout.split()


def locks(scenario) -> list:
    directory = scenario.root / "repos" / "local" / "files" / "locks"
    return list(directory.iterdir()) if directory.exists() else []


def test_corrupt_pack_fails_the_check_and_nothing_is_pruned(scenario):
    scenario.configure({"files": {}}, retention={"keep_daily": 1, "keep_monthly": 0, "keep_yearly": 0,
                                                 "minimum_snapshots": 1, "check_weeks": 1})
    assert scenario.run("repo", "init").code == 0
    for index in range(3):
        (scenario.data / f"more-{index}.bin").write_bytes(os.urandom(100_000))
        assert scenario.run("exec", "backup").code == 0
    packs = sorted((p for p in (scenario.root / "repos" / "local" / "files" / "data").rglob("*") if p.is_file()),
                   key=lambda p: p.stat().st_size)
    damaged = packs[-1]
    damaged.chmod(0o600)
    content = bytearray(damaged.read_bytes())
    content[len(content) // 2] ^= 0xFF
    damaged.write_bytes(bytes(content))
    outcome = scenario.run("exec", "prune")
    assert outcome.code == 1
    assert scenario.recorded("check", "files") == "check failed"
    assert scenario.recorded("prune", "files") == "check failed"
    assert "nothing forgotten or pruned" in outcome.message("files")
    assert len(scenario.snapshots("files")) == 3  # nothing forgotten in a damaged repository
    scenario.assert_alerted_once("repository check failed", "files", "local")


def test_a_killed_jobs_lock_does_not_hold_up_the_next_check(scenario):
    slow(scenario)  # locks.stale_after stays at its default, 10 minutes
    assert scenario.run("repo", "init").code == 0
    first = {}
    runner = threading.Thread(target=lambda: first.update(outcome=scenario.run("exec", "backup")))
    runner.start()
    wait_for(lambda: locks(scenario) and job_containers("backup-files-local"), "the backup never took its lock")
    subprocess.run(["podman", "kill", "--signal", "KILL", *job_containers("backup-files-local")], check=True,
                   capture_output=True)
    runner.join(timeout=120)
    assert first["outcome"].code == 1 and locks(scenario), "the killed job's lock should still be there"
    started = time.monotonic()
    checked = scenario.run("exec", "check", "--subset", "all")
    assert checked.code == 0, checked.message("files")
    assert time.monotonic() - started < 60, "the check waited for a dead job's lock"
    assert "removed stale restic lock" in checked.output
    assert locks(scenario) == []
    scenario.assert_alerted_once("backup failed", "files", "local")


@pytest.mark.parametrize("command, job", [(("exec", "backup"), "backup-files-local"),
                                          (("exec", "prune"), "check-files-local")])
def test_runner_killed_mid_job_then_gc_and_the_next_run(scenario, command, job):
    # the prune reads all the data back first (check_weeks 1), through the 1 MB/s limit: seconds to kill it in
    slow(scenario, retention={"check_weeks": 1})
    assert scenario.run("repo", "init").code == 0
    if command[1] == "prune":
        assert scenario.run("exec", "backup").code == 0
    unit = f"offsite-backup-{command[1]}.service"
    process = scenario.spawn(*command, env={"OFFSITE_BACKUP_UNIT": unit})
    wait_for(lambda: job_containers(job), f"no {job} container ran")
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    gc = scenario.run("jobs", "gc", "--all")
    assert gc.code == 0 and "leftover job container" in gc.output
    assert job_containers(job) == [], gc.output
    notified = scenario.run("notify", "unit-failed", unit)
    assert notified.code == 0
    mail = scenario.assert_alerted_once("runner did not report", unit, "-")
    assert "never finished reporting" in mail
    again = scenario.run(*command, env={"OFFSITE_BACKUP_UNIT": unit})
    assert again.code == 0, again.output[-3000:]
    assert locks(scenario) == []
    scenario.assert_check_clean("files")
    scenario.assert_alerted_once("runner did not report", unit, "-", event="RESOLVED")


def test_overlapping_runs_one_runs_the_other_is_put_off(scenario):
    slow(scenario, locks={"wait": 2})
    assert scenario.run("repo", "init").code == 0
    runs = [scenario.spawn("exec", "backup", "--json") for _ in range(2)]
    codes = sorted(run.wait(timeout=300) for run in runs)
    assert codes == [0, 75]
    statuses = sorted(run.status for run in scenario.history() if run.kind == "backup")
    assert statuses == ["ok", "skipped by lock"]
    scenario.assert_alerted_once("backup skipped by lock", "files", "local")
    assert len(scenario.snapshots("files")) == 1
    scenario.assert_check_clean("files")


def test_retention_never_goes_below_its_floor(scenario):
    scenario.configure(retention={"keep_daily": 1, "keep_monthly": 0, "keep_yearly": 0, "minimum_snapshots": 3})
    assert scenario.run("repo", "init").code == 0
    for index in range(5):  # five backups on one day
        (scenario.data / f"day-{index}.txt").write_text(f"change {index}\n")
        assert scenario.run("exec", "backup").code == 0
    outcome = scenario.run("exec", "prune")
    assert outcome.code == 0, outcome.message("files")
    kept = scenario.snapshots("files")
    assert len(kept) == 3, "--keep-daily 1 alone would have kept one"
    assert len(scenario.repository("files").snapshots("files-manifest")) == 0
    scenario.assert_check_clean("files")


def sidecar_backup(scenario, script: str):
    """A backup of `script`'s output with /m/manifest.json as its sidecar (what the PostgreSQL source does with
    its dump and manifest), into the files repository; the job may write /m."""
    shared = job_dir(scenario.root / "sidecar", scenario.settings)
    return scenario.repository("files").backup(
        tags=["files"], command=["sh", "-c", script], filename="dump.sql", sidecar="/m/manifest.json",
        mounts=[Mount(shared, "/m", read_only=False)], measure=True)


def test_a_manifest_is_stored_only_beside_a_stored_backup(scenario):
    scenario.configure({"files": {}})
    assert scenario.run("repo", "init").code == 0
    repository = scenario.repository("files")
    stored = sidecar_backup(scenario, "echo rows; echo '{\"rows\": 1}' > /m/manifest.json")
    [dump] = repository.snapshots("files")
    [manifest] = repository.snapshots("files-manifest")
    assert dump.id == stored.summary.snapshot_id and manifest.id == stored.sidecar.snapshot_id
    assert manifest.tag_value("for:") == dump.manifest_key == dump.tag_value("run:")
    assert stored.measured is not None and stored.measured.snapshots == 2  # measured after both were stored
    (scenario.root / "sidecar" / "manifest.json").unlink()

    # the dump stored, its manifest missing: the snapshot is kept, and the run is told its manifest is not
    unlinked = sidecar_backup(scenario, "echo more rows")
    assert unlinked.sidecar is None and "was stored, but its manifest could not be" in unlinked.sidecar_problem
    assert len(repository.snapshots("files")) == 2 and len(repository.snapshots("files-manifest")) == 1

    # the dump failing after its manifest was written: neither is stored
    with pytest.raises(RepositoryError):
        sidecar_backup(scenario, "echo half; echo '{}' > /m/manifest.json; exit 3")
    assert len(repository.snapshots("files")) == 2 and len(repository.snapshots("files-manifest")) == 1
    assert locks(scenario) == []
    scenario.assert_check_clean("files")


@pytest.mark.parametrize("signal_name", ["KILL", "TERM"])
def test_a_stopped_backup_with_a_manifest_leaves_nothing_and_no_lock_in_the_way(scenario, signal_name):
    """SIGTERM reaches both restic processes (backup-with-sidecar passes it on), which remove their own locks;
    after SIGKILL the next job finds both locks stale and removes them."""
    scenario.configure({"files": {}})
    assert scenario.run("repo", "init").code == 0
    failed = []

    def back_up():
        try:
            sidecar_backup(scenario, "echo start; sleep 60; echo '{}' > /m/manifest.json")
        except RepositoryError as error:
            failed.append(error)

    runner = threading.Thread(target=back_up)
    runner.start()
    wait_for(lambda: len(locks(scenario)) == 2 and job_containers("backup-files-local"),
             "the backup and its manifest never took their locks")
    subprocess.run(["podman", "kill", "--signal", signal_name, *job_containers("backup-files-local")], check=True,
                   capture_output=True)
    runner.join(timeout=60)
    assert failed, "the stopped backup was not reported as failed"
    assert (locks(scenario) == []) == (signal_name == "TERM")
    checked = scenario.run("exec", "check", "--subset", "all")
    assert checked.code == 0, checked.output[-2000:]
    assert checked.output.count("removed stale restic lock") == (2 if signal_name == "KILL" else 0)
    assert locks(scenario) == []
    repository = scenario.repository("files")
    assert repository.snapshots("files") == [] and repository.snapshots("files-manifest") == []
