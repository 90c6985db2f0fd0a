"""The container options a job gets, checked without Podman (the integration tests run them)."""

from pathlib import Path

import pytest

from runner import engine, logs
from runner.engine import JobError, JobSpec, Mount, container_options
from runner.settings import Settings


def options(spec, **settings):
    return container_options(spec, Settings(**settings), "offsite-backup-x", deadline=1000.0)


def test_hardened_by_default():
    created = options(JobSpec(name="x", argv=("true",)))
    assert created["read_only"] is True
    assert created["cap_drop"] == ["ALL"]
    assert created["no_new_privileges"] is True
    assert created["network_mode"] == "none"
    assert created["user"] == "10001:10001"
    assert {"type": "tmpfs", "source": "tmpfs", "target": "/tmp", "size": "256m"} in created["mounts"]
    assert "privileged" not in created and "cap_add" not in created


def test_network_only_when_asked():
    joined = options(JobSpec(name="x", argv=("true",), networks=("backup-net", "podman")))
    assert joined["network_mode"] == "bridge"
    assert joined["networks"] == {"backup-net": {}, "podman": {}}
    assert options(JobSpec(name="x", argv=("true",), networks=("host",)))["network_mode"] == "host"
    with pytest.raises(JobError):
        options(JobSpec(name="x", argv=("true",), networks=("host", "podman")))


def test_labels_identify_the_job_for_gc():
    labels = options(JobSpec(name="backup-vault", argv=("true",), labels={"source": "vault"}))["labels"]
    assert labels[engine.MANAGED_LABEL] == "true"
    assert labels[engine.JOB_LABEL] == "backup-vault"
    assert labels[engine.DEADLINE_LABEL] == "1000"
    assert labels["source"] == "vault"


def test_mounts_keep_their_mode(tmp_path):
    spec = JobSpec(name="x", argv=("true",), mounts=(Mount(tmp_path, "/ro"), Mount(tmp_path, "/rw", read_only=False)))
    binds = [m for m in options(spec)["mounts"] if m["type"] == "bind"]
    assert binds == [
        {"type": "bind", "source": str(tmp_path), "target": "/ro", "read_only": True},
        {"type": "bind", "source": str(tmp_path), "target": "/rw", "read_only": False},
    ]


def test_settings_reach_the_container():
    created = options(JobSpec(name="x", argv=("true",), user="2000:2000"),
                      jobs={"userns": "keep-id", "memory_limit": "1g", "pids_limit": 64})
    assert created["user"] == "2000:2000"
    assert created["userns_mode"] == "keep-id"
    assert created["mem_limit"] == "1g"
    assert created["pids_limit"] == 64


@pytest.mark.parametrize("source", ["/", "/etc", "/home", "/usr", "/var", "/run/podman"])
def test_dangerous_mounts_are_refused(source):
    with pytest.raises(JobError, match="refusing"):
        engine.check_mount(Mount(Path(source), "/data"))


def test_missing_mount_source_is_named(tmp_path):
    with pytest.raises(JobError, match=str(tmp_path / "absent")):
        engine.check_mount(Mount(tmp_path / "absent", "/data"))


def test_secret_values_are_refused_in_argv_and_env():
    logs.register_secret("s3cr3t-for-engine-test")
    with pytest.raises(JobError, match="command"):
        engine.check_no_secrets(JobSpec(name="x", argv=("echo", "s3cr3t-for-engine-test")))
    with pytest.raises(JobError, match="environment PGPASSWORD"):
        engine.check_no_secrets(JobSpec(name="x", argv=("true",), env={"PGPASSWORD": "s3cr3t-for-engine-test"}))


def test_output_frames_are_split_into_lines():
    frames = [b"first li", b"ne\nsecond\nthi", b"rd\n", b"no newline at end"]
    assert list(engine._lines(iter(frames))) == ["first line", "second", "third", "no newline at end"]


def test_failed_result_describes_exit_code_and_tail():
    result = engine.JobResult(name="x", container="c", exit_code=7, timed_out=False, duration=1.0,
                              stdout=[], stderr_tail=["boom"], output_tail=["hello", "boom"])
    assert not result.ok
    assert "exited with code 7" in result.describe() and "boom" in result.describe()
