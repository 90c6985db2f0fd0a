"""The job engine against real Podman and a real restic."""

import os
import subprocess
import threading
import time

import pytest

from runner import restic
from runner.engine import JOB_LABEL, JobSpec, Mount
from runner.selftest import tree_fingerprint
from runner.workspace import hand_to_job_user, job_dir
from tests.integration.conftest import containers_named, podman_json


@pytest.fixture
def password_file(tmp_path, settings):
    path = tmp_path / "password"
    path.write_text("integration-test-password")
    path.chmod(0o400)
    hand_to_job_user(path, settings)
    return path


def test_restic_roundtrip_restores_byte_identical_files(engine, settings, tmp_path, password_file):
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "sub" / "random.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    (data / "text.txt").write_text("héllo\n" * 1000)
    (data / "empty").touch()
    repository = job_dir(tmp_path / "repository", settings)
    restored = job_dir(tmp_path / "restored", settings)
    repo = restic.Repository("/repo", "/secrets/password")
    mounts = (Mount(repository, "/repo", read_only=False), Mount(password_file, "/secrets/password"))

    def run(name, argv, *extra):
        result = engine.run(JobSpec(name=name, argv=tuple(argv), mounts=(*mounts, *extra)))
        assert result.ok, result.describe()
        return result

    run("test-init", restic.init(repo))
    backup = run("test-backup", restic.backup(repo, ["/data"], host="test"), Mount(data, "/data"))
    snapshot = restic.parse_backup(backup.stdout).snapshot_id
    run("test-restore", restic.restore(repo, snapshot, "/restore"), Mount(restored, "/restore", read_only=False))

    assert tree_fingerprint(restored / "data") == tree_fingerprint(data)
    assert (restored / "data" / "sub" / "random.bin").read_bytes() == (data / "sub" / "random.bin").read_bytes()


def test_running_job_container_is_hardened(engine, tmp_path):
    job = f"test-hardening-{os.getpid()}"
    results = []
    runner = threading.Thread(target=lambda: results.append(
        engine.run(JobSpec(name=job, argv=("sleep", "6"), mounts=(Mount(tmp_path, "/data"),)))))
    runner.start()
    try:
        deadline = time.monotonic() + 30
        running = []
        while not running and time.monotonic() < deadline:
            running = podman_json("ps", "--format", "json", "--filter", f"label={JOB_LABEL}={job}")
            time.sleep(0.2)
        assert running, "the job container never showed up in `podman ps`"
        inspected = podman_json("inspect", running[0]["Id"])[0]
        host = inspected["HostConfig"]
        assert host["ReadonlyRootfs"] is True
        assert not inspected["EffectiveCaps"] and not inspected["BoundingCaps"] and not host["CapAdd"]
        assert {"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_SETUID", "CAP_NET_BIND_SERVICE"} <= set(host["CapDrop"])
        status = subprocess.run(["podman", "exec", running[0]["Id"], "cat", "/proc/self/status"],
                                capture_output=True, text=True, check=True).stdout
        capabilities = dict(line.split(":\t") for line in status.splitlines() if line.startswith("Cap"))
        assert capabilities["CapEff"] == capabilities["CapBnd"] == "0000000000000000"
        assert "NoNewPrivs:\t1" in status
        assert "no-new-privileges" in host["SecurityOpt"]
        assert inspected["Config"]["User"] == "10001:10001"
        assert host["NetworkMode"] == "none"
        data_mount = next(m for m in inspected["Mounts"] if m["Destination"] == "/data")
        assert data_mount["RW"] is False
    finally:
        runner.join(timeout=60)
    assert results and results[0].ok


def test_job_past_its_timeout_is_killed_and_removed(engine):
    started = time.monotonic()
    result = engine.run(JobSpec(name="test-timeout", argv=("sleep", "300"), timeout=3))
    assert result.timed_out and not result.ok
    assert result.exit_code is None
    assert time.monotonic() - started < 60
    assert "timed out" in result.describe()
    assert containers_named(result.container) == []


def test_failing_job_reports_exit_code_and_output_tail(engine):
    result = engine.run(JobSpec(name="test-fails", argv=(
        "sh", "-c", "for i in 1 2 3; do echo line $i; done; echo something broke >&2; exit 7")))
    assert result.exit_code == 7 and not result.timed_out
    assert result.stdout == ["line 1", "line 2", "line 3"]
    assert result.stderr_tail == ["something broke"]
    assert "exited with code 7" in result.describe() and "something broke" in result.describe()
    assert containers_named(result.container) == []


def test_gc_removes_leftovers_of_a_crashed_run_only(engine, settings):
    image = settings.images.tools
    label = ["--label", "io.offsite-backup.managed=true", "--label", f"{JOB_LABEL}=test-gc"]
    past, future = str(int(time.time()) - 3600), str(int(time.time()) + 3600)

    def create(name, *args):
        subprocess.run(["podman", *args[:1], "--name", name, *label, *args[1:]], check=True, capture_output=True)

    exited, overdue, live = (f"offsite-backup-test-gc-{kind}-{os.getpid()}" for kind in ("exited", "overdue", "live"))
    names = {exited, overdue, live}
    try:
        create(exited, "run", image, "true")
        create(overdue, "run", "-d", "--label", f"io.offsite-backup.deadline={past}", image, "sleep", "300")
        create(live, "run", "-d", "--label", f"io.offsite-backup.deadline={future}", image, "sleep", "300")
        found = {c.name for c in engine.leftovers(grace=0)}
        assert {exited, overdue} <= found and live not in found
        for container in engine.leftovers(grace=0):
            if container.name in names:
                engine.remove(container)
        assert containers_named(exited) == [] and containers_named(overdue) == []
        assert len(containers_named(live)) == 1
        subprocess.run(["podman", "network", "create", "--internal", "--label", "io.offsite-backup.managed=true",
                        f"offsite-backup-test-gc-net-{os.getpid()}"], check=True, capture_output=True)
        time.sleep(1.2)
        assert f"offsite-backup-test-gc-net-{os.getpid()}" in engine.remove_unused_networks(grace=1)
    finally:
        subprocess.run(["podman", "rm", "--force", "--ignore", "--time", "0", *names], capture_output=True)
