"""The container options a job gets, checked without Podman (the integration tests run them)."""

import io
import struct
from pathlib import Path

import pytest

from runner import engine, logs
from runner.engine import JobError, JobSpec, Mount, container_options
from runner.settings import Settings
from runner.units import duration_text


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


def test_output_frames_are_split_into_lines_per_stream():
    frames = [(b"first li", None), (None, b"an err"), (b"ne\nsecond\nthi", None), (None, b"or\n"), (b"rd\n", None),
              (b"no newline at end", None)]
    assert list(engine._demuxed_lines(iter(frames))) == [
        (True, "first line"), (True, "second"), (False, "an error"), (True, "third"), (True, "no newline at end")]


def test_failed_result_describes_exit_code_and_tail():
    result = engine.JobResult(name="x", container="c", exit_code=7, timed_out=False, duration=1.0,
                              stdout=[], stderr_tail=["boom"], output_tail=["hello", "boom"])
    assert not result.ok
    assert "exited with code 7" in result.describe() and "boom" in result.describe()


@pytest.mark.parametrize("path", [
    "/etc/shadow", "/etc/gshadow-", "/etc/sudoers.d/backup", "/root", "/root/.ssh/id_ed25519", "/proc/1/environ",
    "/sys/kernel", "/dev/sda", "/boot/vmlinuz", "/run/podman/podman.sock", "/run/user/1000/podman/podman.sock",
    "/run/user/1000/containers/auth.json", "/run/containers/0/auth.json", "/run/docker.sock", "/run/dbus",
    "/var/lib/containers", "/var/lib/containers/storage/overlay", "/home/alice/.local/share/containers/storage",
    "/home/alice/.config/containers/auth.json", "/tmp", "/var/log", "/opt",
])
def test_sensitive_trees_are_refused_by_prefix(path):
    assert engine.mount_refusal(Path(path)) is not None


@pytest.mark.parametrize("path", [
    "/etc/offsite-backup/approle", "/etc/offsite-backup/runner.toml",
    "/run/offsite-backup/secrets/restic-vault.password",
    "/var/lib/offsite-backup/staging/restore-test-vault-1a2b3c", "/var/cache/offsite-backup/restic",
    "/tmp/pytest-of-root/pytest-1/test_x0/data", "/etc/nginx", "/home/alice/documents", "/srv/photos/2024",
    "/run/user/1000/offsite-backup", "/var/lib/postgresql-archive", "/etc/shadows-of-the-past",
])
def test_what_the_project_mounts_is_not_refused(path):
    assert engine.mount_refusal(Path(path)) is None


def test_a_directory_holding_a_sensitive_tree_is_refused(tmp_path):
    home = tmp_path / "home"
    (home / ".local" / "share" / "containers").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    trees = (f"{home}/.local/share/containers",)
    assert engine.mount_refusal(home, trees) == f"{home}, which holds {home}/.local/share/containers"
    assert engine.mount_refusal(home / ".local", trees) is not None
    assert engine.mount_refusal(tmp_path / "elsewhere", trees) is None
    assert engine.mount_refusal(Path("/etc")) is not None  # holds /etc/shadow, and is refused whole anyway


def test_a_link_is_checked_and_mounted_as_what_it_points_to(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (tmp_path / "to-data").symlink_to(data)
    (tmp_path / "to-shadow").symlink_to("/etc/shadow")
    (tmp_path / "to-root").symlink_to("/")
    checked = engine.check_mount(Mount(tmp_path / "to-data", "/data", read_only=False))
    assert checked == Mount(data, "/data", read_only=False)
    with pytest.raises(JobError, match=rf"refusing to give a job /etc/shadow, which is in /etc/shadow "
                                       rf"\(through {tmp_path}/to-shadow\)"):
        engine.check_mount(Mount(tmp_path / "to-shadow", "/data"))
    with pytest.raises(JobError, match="refusing to give a job the host's /"):
        engine.check_mount(Mount(tmp_path / "to-root", "/data"))


def test_the_engine_hands_podman_the_resolved_path(tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    (tmp_path / "link").symlink_to(data)
    created = {}

    class Stop(Exception):
        pass

    job = engine.Engine(Settings())
    monkeypatch.setattr(job, "ping", lambda: None)
    monkeypatch.setattr(job, "image_exists", lambda image: True)
    monkeypatch.setattr(job.client.containers, "create", lambda **options: created.update(options) or _raise(Stop()))
    with pytest.raises(Stop):
        job.run(JobSpec(name="x", argv=("true",), mounts=(Mount(tmp_path / "link", "/data"),)))
    [bind] = [m for m in created["mounts"] if m["type"] == "bind"]
    assert bind["source"] == str(data)


def _raise(error):
    raise error


def test_this_users_podman_storage_and_sockets_are_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "backup"))
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "runtime"))
    trees = engine.local_sensitive_trees(Settings(podman={"url": f"unix://{tmp_path}/sockets/podman.sock"}))
    for path in (tmp_path / "backup/.local/share/containers/storage", tmp_path / "backup/.config/containers",
                 tmp_path / "runtime/podman/podman.sock", tmp_path / "sockets/podman.sock"):
        assert engine.mount_refusal(path, trees) is not None, path
    assert engine.mount_refusal(tmp_path / "backup/.local/state/offsite-backup", trees) is None
    assert set(engine.SENSITIVE_TREES) <= set(trees)


def service(image_user, **settings):
    return engine.service_options(Settings(**settings), "restore-test-postgres", "db:1", image_user, "isolated-net",
                                  deadline=1000.0, env={"POSTGRES_HOST_AUTH_METHOD": "trust"})


@pytest.mark.parametrize("image_user", ["postgres", "10100:10100", "65534"])
def test_a_service_that_starts_as_a_user_gets_no_capability(image_user):
    created = service(image_user)
    assert created["cap_drop"] == ["ALL"] and "cap_add" not in created
    assert created["no_new_privileges"] is True and "privileged" not in created


@pytest.mark.parametrize("image_user", ["", "root", "0", "0:0"])
def test_a_service_that_starts_as_root_gets_only_what_its_entrypoint_needs(image_user):
    created = service(image_user)
    assert created["cap_drop"] == ["ALL"]
    assert created["cap_add"] == ["CHOWN", "DAC_OVERRIDE", "FOWNER", "SETGID", "SETUID"]


def test_a_service_has_the_jobs_limits_and_its_network_only():
    created = service("postgres", jobs={"pids_limit": 300, "memory_limit": "2g"})
    assert created["pids_limit"] == 300 and created["mem_limit"] == "2g"
    assert created["network_mode"] == "bridge" and created["networks"] == {"isolated-net": {}}
    assert created["labels"][engine.JOB_LABEL] == "restore-test-postgres"
    assert created["labels"][engine.INSTANCE_LABEL] == engine.instance(Settings())
    assert "mem_limit" not in service("postgres")


class FakeContainer:
    def __init__(self, name, state, labels):
        self.name, self.labels = name, {engine.MANAGED_LABEL: "true", **labels}
        self.attrs = {"State": state, "Created": 0}


def test_gc_and_list_keep_to_this_installation(monkeypatch):
    settings = Settings()
    mine = {engine.INSTANCE_LABEL: engine.instance(settings), engine.DEADLINE_LABEL: "99999999999"}
    other = {engine.INSTANCE_LABEL: "another0inst", engine.DEADLINE_LABEL: "99999999999"}
    containers = [FakeContainer("mine-running", "running", mine), FakeContainer("mine-exited", "exited", mine),
                  FakeContainer("other-running", "running", other), FakeContainer("other-exited", "exited", other),
                  FakeContainer("legacy-running", "running", {}), FakeContainer("legacy-exited", "exited", {})]
    job = engine.Engine(settings)
    monkeypatch.setattr(job.client.containers, "list", lambda **kwargs: containers)
    assert {c.name for c in job.job_containers()} == {"mine-running", "mine-exited", "legacy-running",
                                                       "legacy-exited"}
    assert {c.name for c in job.leftovers()} == {"mine-exited", "legacy-exited"}
    assert {c.name for c in job.leftovers(include_running=True)} == {"mine-running", "mine-exited", "legacy-exited"}


# What a person reads of a job: one line at INFO, progress in human units, the command only at DEBUG -------------

BACKUP_OUTPUT = [
    '{"message_type":"status","percent_done":0.43,"total_files":3,"files_done":1,"total_bytes":2362232013,'
    '"bytes_done":1015759765,"seconds_remaining":80}',
    '{"message_type":"status","percent_done":0.9,"total_bytes":2362232013,"bytes_done":2126008811}',
    '{"message_type":"summary","files_new":3,"data_added":123000,"data_added_packed":123456,'
    '"total_files_processed":3,"total_bytes_processed":2345678,"snapshot_id":"1a2b3c4d5e6f"}',
]


class RunningContainer:
    """A job container that has already run: its output, its exit code."""

    def __init__(self, stdout: list[str], stderr: list[str] = (), exit_code: int = 0, **options):
        self.name, self.options = options["name"], options
        self.output = {True: stdout, False: list(stderr)}
        self.exit_code = exit_code

    def start(self):
        pass

    def wait(self, condition, interval, timeout):
        return self.exit_code

    def attached(self) -> "AttachedOutput":
        """Its output as Podman's attach stream sends it: each line a frame, stdout's first (stream 1), stderr's."""
        frames = [(stream, f"{line}\n".encode()) for stream, is_stdout in ((1, True), (2, False))
                  for line in self.output[is_stdout]]
        return AttachedOutput(b"".join(struct.pack(">BxxxL", stream, len(data)) + data for stream, data in frames))

    def remove(self, force, v):
        pass


class AttachedOutput:
    def __init__(self, data: bytes):
        self.raw = io.BytesIO(data)

    def close(self):
        pass


@pytest.fixture
def logged():
    """What the runner logs from now on, as 'LEVEL message' lines (at DEBUG and above)."""
    from loguru import logger

    lines: list[str] = []
    sink = logger.add(lambda message: lines.append(message.rstrip("\n")), level="DEBUG", format="{level} {message}")
    yield lines
    logger.remove(sink)


def run_job(monkeypatch, spec, stdout, stderr=(), exit_code=0):
    job = engine.Engine(Settings())
    created = []
    monkeypatch.setattr(job, "ping", lambda: None)
    monkeypatch.setattr(job, "image_exists", lambda image: True)
    monkeypatch.setattr(job.client.containers, "create", lambda **options: created.append(
        RunningContainer(stdout, stderr, exit_code, **options)) or created[-1])
    monkeypatch.setattr(engine, "_attach", lambda container: container.attached())
    return job.run(spec), created[0]


def test_a_job_is_one_line_at_info_with_outcome_duration_and_size(monkeypatch, logged):
    from runner import restic

    monkeypatch.setattr(engine, "PROGRESS_SECONDS", 0)  # every progress line is logged
    spec = JobSpec(name="backup-files-local", argv=("restic", "--repo", "/repo", "backup", "--", "/data"),
                   progress=restic.backup_progress)
    result, container = run_job(monkeypatch, spec, BACKUP_OUTPUT)
    info = [line for line in logged if not line.startswith("DEBUG")]
    assert info == [
        "INFO [backup-files-local] 43%: 968.7 MiB of 2.2 GiB read, about 1 min 20 s left",
        "INFO [backup-files-local] 90%: 2.0 GiB of 2.2 GiB read",
        f"INFO job backup-files-local: ok in {duration_text(result.duration)}, 2.2 MiB read, 120.6 KiB added",
    ]
    assert any(line.startswith("DEBUG job backup-files-local starting in offsite-backup-backup-files-local-")
               and line.endswith(": restic --repo /repo backup -- /data") for line in logged)
    # progress is not the job's output: the summary, which the backup is parsed from, is
    assert result.stdout == BACKUP_OUTPUT[2:]
    # restic prints its status lines only when told how often
    assert container.options["environment"] == {"RESTIC_PROGRESS_FPS": "1"}


def test_progress_reaches_the_log_at_most_every_progress_seconds(monkeypatch, logged):
    from runner import restic

    spec = JobSpec(name="restore-files-local", argv=("restic", "restore"), progress=restic.restore_progress)
    output = ['{"message_type":"status","percent_done":0.5,"total_bytes":2048,"bytes_restored":1024}',
              '{"message_type":"summary","total_files":1,"files_restored":1,"total_bytes":2048,"bytes_restored":2048}']
    result, _ = run_job(monkeypatch, spec, output)
    assert [line for line in logged if line.startswith("INFO")] == [
        f"INFO job restore-files-local: ok in {duration_text(result.duration)}, 2.0 KiB restored"]


def test_a_failed_job_is_one_warning_saying_how_it_ended(monkeypatch, logged):
    spec = JobSpec(name="probe-files-local", argv=("restic", "cat", "config"))
    stderr = ['{"message_type":"exit_error","code":10,"message":"Fatal: repository does not exist"}']
    result, container = run_job(monkeypatch, spec, [], stderr, exit_code=10)
    assert not result.ok and "RESTIC_PROGRESS_FPS" not in container.options["environment"]
    assert [line for line in logged if not line.startswith("DEBUG")] == [
        f"INFO [probe-files-local] {stderr[0]}",  # the job's own messages, at log.job_output
        f"WARNING job probe-files-local: exited with code 10 after {duration_text(result.duration)}",
    ]


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_bar_on_a_terminal_makes_way_for_log_lines_and_goes_at_the_end():
    from runner.restic import Progress

    terminal = Terminal()
    bar = engine._Bar("backup-files-local", terminal)
    bar.show(Progress("43%: 968.7 MiB of 2.2 GiB read", 0.43))
    drawn = "\r\x1b[2Kbackup-files-local ██████████░░░░░░░░░░░░░░ 43%: 968.7 MiB of 2.2 GiB read"
    assert terminal.getvalue() == drawn
    with bar.cleared():
        terminal.write("a log line\n")
    assert terminal.getvalue() == drawn + "\r\x1b[2Ka log line\n" + drawn
    bar.clear()
    assert terminal.getvalue().endswith(drawn + "\r\x1b[2K")
    # not a terminal: nothing drawn
    plain = io.StringIO()
    engine._Bar("x", plain).show(Progress("50%", 0.5))
    assert plain.getvalue() == ""


def test_a_job_gets_back_only_the_capability_to_read_every_file():
    from runner.engine import check_capabilities

    check_capabilities(JobSpec("backup-files", ("restic",), capabilities=("DAC_READ_SEARCH",)))
    with pytest.raises(JobError, match="refusing to give it SYS_ADMIN"):
        check_capabilities(JobSpec("backup-files", ("restic",), capabilities=("SYS_ADMIN",)))


def test_a_files_path_holding_the_runners_secrets_is_refused(tmp_path):
    from runner.engine import Engine

    secrets_dir = tmp_path / "run" / "secrets"
    secrets_dir.mkdir(parents=True)
    (tmp_path / "etc" / "app").mkdir(parents=True)
    engine = Engine(Settings(paths={"secrets_dir": secrets_dir}))
    assert engine.data_refusal(tmp_path / "etc" / "app") is None
    assert f"which holds {secrets_dir}" in engine.data_refusal(tmp_path / "run")
    assert "which is in" in engine.data_refusal(secrets_dir)
    assert engine.data_refusal(Path("/etc")) == "the host's /etc"


class Starting:
    """A container a killed runner's start request still holds: removal is refused until it is up."""

    name = "offsite-backup-backup-files-local-x"

    def __init__(self, refusals: int):
        self.refusals, self.removed = refusals, False

    def remove(self, force, v):
        from podman.errors import APIError

        if self.refusals:
            self.refusals -= 1
            raise APIError("container state improper")
        self.removed = True


def test_a_leftover_caught_between_states_is_removed_on_a_later_attempt(monkeypatch):
    monkeypatch.setattr(engine.time, "sleep", lambda seconds: None)
    container = Starting(refusals=2)
    engine.Engine(Settings()).remove(container)
    assert container.removed
    stuck = Starting(refusals=10)
    engine.Engine(Settings()).remove(stuck)  # gives up with a warning, never raises
    assert not stuck.removed
