"""Retention, checks and locks against real restic repositories."""

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from datetime import date, timedelta

from click.testing import CliRunner

from runner.cli import cli
from runner.monitoring.history import open_history
from runner.settings import Settings
from runner.workspace import job_dir
from tests.integration.conftest import private_file, write_config

END = date(2026, 11, 20)
DAYS = 800


def configure(base: Settings, tmp_path, **overrides) -> Settings:
    tmp_path.chmod(0o755)  # the tools container, as the job user, opens files in it
    data = tmp_path / "data"
    data.mkdir(mode=0o755, exist_ok=True)
    (data / "file.txt").write_text("tiny\n")
    private_file(tmp_path / "password", "maintenance test password", base)
    destination = {"kind": "local", "path": str(tmp_path / "repo"), "password_file": str(tmp_path / "password"),
                   **overrides.pop("destination", {})}
    return Settings(
        paths={**base.paths.model_dump(), "state_dir": tmp_path / "state"},
        destinations={"local": destination},
        sources={"files": {"paths": [data]}, **{s: {"enabled": False} for s in ("vault", "postgres", "minio")}},
        **overrides,
    )


def invoke(settings, tmp_path, *args):
    config = write_config(settings, tmp_path / "runner.toml")
    result = CliRunner().invoke(cli, ["--config", str(config), *args], prog_name="runner")
    return result


def invoke_json(settings, tmp_path, *args):
    result = invoke(settings, tmp_path, *args, "--json")
    return result.exit_code, json.loads(result.stdout), result.output


def restic_in_tools(settings, tmp_path, script: str, cpus: str | None = None) -> str:
    """restic against the test repository in the tools image, as the job user."""
    command = ["podman", "run", "--rm", "--user", settings.jobs.user, "-v", f"{tmp_path}:/w",
               *(["--cpus", cpus] if cpus else []), "--entrypoint", "sh", settings.images.tools, "-c",
               f'export RESTIC_REPOSITORY=/w/repo RESTIC_PASSWORD_FILE=/w/password RESTIC_CACHE_DIR=/tmp/c; {script}']
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def snapshot_dates(settings, tmp_path) -> list[str]:
    listing = json.loads(restic_in_tools(settings, tmp_path, "restic snapshots --json --tag files"))
    return sorted(s["time"][:10] for s in listing)


def expected_after_retention(days: list[date], daily: int, monthly: int, yearly: int) -> set[date]:
    """restic's policy, from its definition: for each period kind, walk the snapshots newest first
    and keep the first one seen in each of the `count` most recent periods."""
    kept = set()
    for count, period in ((daily, lambda d: d), (monthly, lambda d: (d.year, d.month)), (yearly, lambda d: d.year)):
        seen = []
        for day in sorted(days, reverse=True):
            if period(day) not in seen:
                if len(seen) == count:
                    break
                seen.append(period(day))
                kept.add(day)
    return kept


def test_time_travel_keeps_exactly_the_policy(engine, settings, tmp_path):
    configured = configure(settings, tmp_path, retention={"check_weeks": 1})
    job_dir(tmp_path / "repo", settings)
    # The repository's key is made under a tight CPU limit, so that restic calibrates a cheap key
    # derivation and the 800 backups below take minutes, not a quarter of an hour.
    restic_in_tools(configured, tmp_path, "restic init --repository-version 2 -q", cpus="0.05")
    days = [END - timedelta(days=offset) for offset in range(DAYS)]
    dates = " ".join(day.isoformat() for day in days)
    restic_in_tools(configured, tmp_path, f'for d in {dates}; do echo $d; done | xargs -P 4 -I D '
                    'restic backup -q --host homeserver --tag files --time "D 12:00:00" /w/data/file.txt')
    assert len(snapshot_dates(configured, tmp_path)) == DAYS

    code, results, output = invoke_json(configured, tmp_path, "exec", "prune", "files")
    assert code == 0, output
    check, prune = results
    assert check["status"] == "ok" and prune["status"] == "ok"
    expected = expected_after_retention(days, 7, 12, 2)
    # 7 days; 12 months, the newest already kept by the days; 2 years, both already kept by the months
    assert len(expected) == 7 + 11
    assert snapshot_dates(configured, tmp_path) == sorted(d.isoformat() for d in expected)
    run = open_history(configured.paths.state_dir).runs(kind="prune")[0]
    removed = open_history(configured.paths.state_dir).removed_snapshots(run.id)
    assert len(removed) == DAYS - len(expected)
    assert ({r["snapshot_time"][:10] for r in removed}
            == {d.isoformat() for d in days} - {d.isoformat() for d in expected})
    assert "forgot snapshot" in output
    assert run.figures["snapshots"] == len(expected) and run.figures["deduplication_ratio"] > 0


def test_two_snapshots_are_never_pruned(engine, settings, tmp_path):
    configured = configure(settings, tmp_path)
    assert invoke(configured, tmp_path, "repo", "init").exit_code == 0
    for _ in range(2):
        assert invoke(configured, tmp_path, "exec", "backup", "files").exit_code == 0
    code, results, _ = invoke_json(configured, tmp_path, "exec", "prune", "files")
    assert code == 0
    assert "only 2 snapshot(s), and at least 3 are always kept" in results[1]["message"]
    assert len(snapshot_dates(configured, tmp_path)) == 2


def tree_digest(root):
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
            if p.is_file()}


def test_corrupt_pack_fails_the_check_and_stops_pruning(engine, settings, tmp_path):
    configured = configure(settings, tmp_path, retention={"check_weeks": 1, "keep_daily": 1, "keep_monthly": 0,
                                                            "keep_yearly": 0})
    assert invoke(configured, tmp_path, "repo", "init").exit_code == 0
    for index in range(3):
        (tmp_path / "data" / f"more-{index}.bin").write_bytes(os.urandom(100_000))
        assert invoke(configured, tmp_path, "exec", "backup", "files").exit_code == 0
    pack = max((p for p in (tmp_path / "repo" / "data").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    os.chmod(pack, 0o600)
    content = bytearray(pack.read_bytes())
    content[len(content) // 2] ^= 0xFF
    pack.write_bytes(bytes(content))
    before = tree_digest(tmp_path / "repo" / "data")
    code, results, _ = invoke_json(configured, tmp_path, "exec", "prune", "files")
    assert code == 1
    check, prune = results
    assert check["status"] == "check failed" and "found errors" in check["message"]
    assert prune["status"] == "check failed" and "nothing forgotten or pruned" in prune["message"]
    assert len(snapshot_dates(configured, tmp_path)) == 3
    assert tree_digest(tmp_path / "repo" / "data") == before
    statuses = [run.status for run in open_history(configured.paths.state_dir).runs()]
    assert statuses.count("check failed") == 2


def slow_backup_settings(settings, tmp_path, **locks):
    (tmp_path / "data").mkdir(mode=0o755)
    (tmp_path / "data" / "big.bin").write_bytes(os.urandom(6_000_000))
    return configure(settings, tmp_path, destination={"bandwidth_limit": "1MB"},
                     locks={"stale_after": 1, "wait": 2, **locks})


def test_killed_backup_leaves_a_lock_the_next_run_removes(engine, settings, tmp_path):
    configured = slow_backup_settings(settings, tmp_path)
    assert invoke(configured, tmp_path, "repo", "init").exit_code == 0
    first = {}
    runner = threading.Thread(
        target=lambda: first.update(result=invoke(configured, tmp_path, "exec", "backup", "files")))
    runner.start()
    locks = tmp_path / "repo" / "locks"
    deadline = time.monotonic() + 60
    while not (locks.exists() and any(locks.iterdir())) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert any(locks.iterdir()), "the backup never took its lock"
    running = subprocess.run(["podman", "ps", "-q", "--filter", "label=io.offsite-backup.job=backup-files-local"],
                             capture_output=True, text=True).stdout.split()
    assert running, "the backup job container is not running"
    subprocess.run(["podman", "kill", "--signal", "KILL", *running], check=True, capture_output=True)
    runner.join(timeout=120)
    assert first["result"].exit_code == 1
    assert any(locks.iterdir()), "the killed job's lock should still be there"
    time.sleep(1.5)  # older than locks.stale_after
    second = invoke(configured, tmp_path, "exec", "backup", "files")
    assert second.exit_code == 0, second.output
    assert "removed stale restic lock" in second.output
    assert not any(locks.iterdir())


def test_two_runs_at_once_one_runs_one_is_skipped(engine, settings, tmp_path):
    configured = slow_backup_settings(settings, tmp_path)
    assert invoke(configured, tmp_path, "repo", "init").exit_code == 0
    config = write_config(configured, tmp_path / "runner.toml")
    command = [sys.executable, "-m", "runner", "--config", str(config), "exec", "backup", "files", "--json"]
    runs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outcomes = sorted((run.wait(timeout=300), json.loads(run.stdout.read())[0]["status"]) for run in runs)
    assert outcomes == [(0, "ok"), (75, "skipped by lock")]
    code, results, _ = invoke_json(configured, tmp_path, "exec", "check", "files", "--subset", "all")
    assert code == 0 and results[0]["status"] == "ok"


def test_prune_dry_run_forgets_nothing_and_lists_what_prune_then_forgets(engine, settings, tmp_path):
    configured = configure(settings, tmp_path, retention={"keep_daily": 1, "keep_monthly": 0, "keep_yearly": 0,
                                                          "minimum_snapshots": 2, "check_weeks": 1})
    assert invoke(configured, tmp_path, "repo", "init").exit_code == 0
    for index in range(5):
        (tmp_path / "data" / f"day-{index}.txt").write_text(f"change {index}\n")
        assert invoke(configured, tmp_path, "exec", "backup", "files").exit_code == 0
    before = snapshot_ids(settings, tmp_path)
    locks_before = sorted((tmp_path / "repo" / "locks").iterdir())
    code, [preview], output = invoke_json(configured, tmp_path, "exec", "prune", "--dry-run")
    assert code == 0, output
    would = {entry["id"] for entry in preview["figures"]["forget"]}
    assert len(would) == 3 and "would forget 3 of 5 snapshot(s)" in preview["message"]
    assert snapshot_ids(settings, tmp_path) == before  # nothing forgotten
    assert sorted((tmp_path / "repo" / "locks").iterdir()) == locks_before  # no lock taken
    assert [run.kind for run in open_history(configured.paths.state_dir).runs()] == ["backup"] * 5  # not recorded
    code, results, output = invoke_json(configured, tmp_path, "exec", "prune")
    assert code == 0, output
    [run] = [run for run in open_history(configured.paths.state_dir).runs() if run.kind == "prune"]
    forgotten = {snapshot["snapshot_id"] for snapshot in open_history(configured.paths.state_dir).removed_snapshots(
        run.id)}
    assert forgotten == would and snapshot_ids(settings, tmp_path) == before - would


def snapshot_ids(settings, tmp_path) -> set[str]:
    return {s["id"] for s in json.loads(restic_in_tools(settings, tmp_path, "restic snapshots --json --tag files"))}
