"""Destinations against real services: the NAS stand-in over SFTP, restic through rclone, local."""

import json
import os
import random
import time

import pytest
from click.testing import CliRunner

from runner import destinations, inventory
from runner.backup import back_up
from runner.cli import cli
from runner.destinations import GDrive
from runner.engine import Mount
from runner.quota import ledger
from runner.repository import Repository
from runner.results import Status
from runner.selftest import tree_fingerprint
from runner.settings import GDriveDestination, LocalDestination, Settings
from runner.sources import SOURCES
from runner.workspace import job_dir
from tests.integration.conftest import private_file, write_config
from tests.integration.nas import NasContainer, make_identity


@pytest.fixture(scope="module")
def identity(tmp_path_factory, engine, settings):
    return make_identity(tmp_path_factory.mktemp("ssh"), settings)


@pytest.fixture(scope="module")
def nas(testcontainers_env, settings, identity):
    with NasContainer(settings, identity) as container:
        yield container


@pytest.fixture
def known_hosts(tmp_path, nas, settings):
    return private_file(tmp_path / "known_hosts", nas.known_hosts_line(), settings)


@pytest.fixture
def data(tmp_path):
    root = tmp_path / "data"
    (root / "nested").mkdir(parents=True)
    (root / "nested" / "random.bin").write_bytes(os.urandom(512 * 1024))
    (root / "notes.txt").write_text("offsite\n" * 100)
    for path in (root, root / "nested"):
        path.chmod(0o755)
    return root


def configure(base: Settings, tmp_path, data, **destination_configs) -> Settings:
    private_file(tmp_path / "restic-files.password", "repository password for tests", base)
    return Settings(
        paths={**base.paths.model_dump(), "state_dir": tmp_path / "state"},
        restic={"password_file": str(tmp_path / "restic-{source}.password")},
        destinations=destination_configs,
        sources={"files": {"paths": [data]}, **{name: {"enabled": False} for name in ("vault", "postgres", "minio")}},
    )


def local(tmp_path, **overrides):
    return LocalDestination(kind="local", path=str(tmp_path / "repos" / "{source}"), **overrides)


def invoke(settings: Settings, tmp_path, *args):
    config = write_config(settings, tmp_path / "runner.toml")
    return CliRunner(env={"COLUMNS": "300"}).invoke(cli, ["--config", str(config), *args], prog_name="runner")


def restore_latest(engine, settings, destination_name, target):
    destination = destinations.configured(settings, [destination_name])[0]
    repository = Repository(engine, destination, destination.access("files"))
    repository.restore(repository.find("files"), target)
    return target


def invoke_json(settings: Settings, tmp_path, *args):
    """Exit code and the results by destination, from the command's --json output."""
    result = invoke(settings, tmp_path, *args, "--json")
    return result.exit_code, {entry["destination"]: entry for entry in json.loads(result.stdout)}


def nas_path(request):
    return f"/backups/homeserver/{request.node.name[:40]}/{{source}}"


def test_backup_to_nas_restores_byte_identical(engine, settings, tmp_path, data, nas, identity, known_hosts, request):
    configured = configure(settings, tmp_path, data, nas=nas.destination(identity, known_hosts, path=nas_path(request)))
    init = invoke(configured, tmp_path, "repo", "init")
    assert init.exit_code == 0, init.output
    backup = invoke(configured, tmp_path, "exec", "backup", "files")
    assert backup.exit_code == 0, backup.output
    restored = restore_latest(engine, configured, "nas", tmp_path / "restored")
    assert tree_fingerprint(restored / "data" / str(data).lstrip("/")) == tree_fingerprint(data)
    code, listing = invoke_json(configured, tmp_path, "repo", "list")
    assert code == 0
    assert listing["nas"]["state"] == "ok" and listing["nas"]["snapshots"] == 1
    assert listing["nas"]["location"].startswith(f"sftp:backup@{nas.address}:/backups/homeserver/")


def test_changed_host_key_is_refused_and_nothing_written(engine, settings, tmp_path, data, nas, identity, request):
    other = make_identity(tmp_path / "other", settings, "other_host_key")
    kind, key = other.public_key.split()[:2]
    wrong = private_file(tmp_path / "known_hosts", f"{nas.address} {kind} {key}\n", settings)
    configured = configure(settings, tmp_path, data, nas=nas.destination(identity, wrong, path=nas_path(request)))
    before = nas.files()
    code, results = invoke_json(configured, tmp_path, "repo", "init")
    assert code == 1
    assert "Host key verification failed" in results["nas"]["message"]
    assert nas.files() == before


def test_unknown_host_key_is_refused(engine, settings, tmp_path, data, nas, identity, request):
    unrelated = private_file(tmp_path / "known_hosts",
                             "192.0.2.1 ssh-ed25519 "
                             "AAAAC3NzaC1lZDI1NTE5AAAAIPglwKleQ6LNglAByJatb15cu/VXSDTs8M1ClmBAbX7O\n", settings)
    configured = configure(settings, tmp_path, data, nas=nas.destination(identity, unrelated, path=nas_path(request)))
    before = nas.files()
    code, results = invoke_json(configured, tmp_path, "repo", "init")
    assert code == 1 and "Host key verification failed" in results["nas"]["message"]
    assert nas.files() == before


def test_nas_down_fails_fast_and_local_still_succeeds(engine, settings, tmp_path, data, identity, testcontainers_env):
    with NasContainer(settings, identity) as down_nas:
        known_hosts = private_file(tmp_path / "known_hosts", down_nas.known_hosts_line(), settings)
        configured = configure(settings, tmp_path, data, local=local(tmp_path),
                               nas=down_nas.destination(identity, known_hosts))
        assert invoke(configured, tmp_path, "repo", "init").exit_code == 0
        address = down_nas.address
        down_nas.get_wrapped_container().stop(timeout=1)
        started = time.monotonic()
        code, results = invoke_json(configured, tmp_path, "exec", "backup", "files")
        elapsed = time.monotonic() - started
    assert code == 1
    assert results["local"]["status"] == "ok" and results["local"]["snapshot_id"]
    assert results["nas"]["status"] == "destination unavailable"
    assert f"{address} port 22" in results["nas"]["message"]
    assert elapsed < 60, f"a dead NAS held the run for {elapsed:.0f} s"


def test_bandwidth_limit_slows_uploads(engine, settings, tmp_path, nas, identity, known_hosts, request):
    data = tmp_path / "incompressible"
    data.mkdir(mode=0o755)
    (data / "random.bin").write_bytes(os.urandom(6 * 1000 * 1000))
    configured = configure(settings, tmp_path, data,
                           nas=nas.destination(identity, known_hosts, path=nas_path(request), bandwidth_limit="1MB"))
    assert invoke(configured, tmp_path, "repo", "init").exit_code == 0
    [result] = back_up(configured, engine, SOURCES["files"], destinations.configured(configured))
    assert result.status is Status.OK, result.message
    assert result.figures["data_added_packed"] >= 6 * 1000 * 1000
    assert result.duration >= 4, f"6 MB at 1 MB/s took only {result.duration:.1f} s"


class DriveOnLocalRclone(GDrive):
    """The Drive destination with its remote swapped for rclone's local backend: everything
    else (rclone.conf rendering, RCLONE_CONFIG, restic's rclone: repository) runs for real."""

    def __init__(self, name, config, settings, folder):
        super().__init__(name, config, settings)
        self.folder = folder

    def rclone_remote(self):
        return {"type": "local"}, (Mount(self.folder, "/drive", read_only=False),)

    def describe(self, source):
        return f"rclone:{self.REMOTE}:/drive/{self.config.path.format(source=source)}"


def service_account(tmp_path, settings):
    return private_file(tmp_path / "sa.json", json.dumps(
        {"type": "service_account", "client_email": "backup@project.iam.gserviceaccount.com", "private_key": "x"}),
        settings)


def test_restic_runs_through_rclone(engine, settings, tmp_path, data):
    configured = configure(settings, tmp_path, data)
    folder = job_dir(tmp_path / "drive", settings)
    config = GDriveDestination(kind="gdrive", service_account_file=service_account(tmp_path, settings))
    drive = DriveOnLocalRclone("gdrive", config, configured, folder)
    assert inventory.init(engine, [drive], ["files"])[0].status is Status.OK
    assert (folder / "Backups" / "homeserver" / "files" / "config").is_file()
    [result] = back_up(configured, engine, SOURCES["files"], [drive])
    assert result.status is Status.OK, result.message
    [state] = inventory.describe(engine, [drive], ["files"])
    assert state.state == "ok" and state.snapshots == 1


def test_rendered_drive_remote_parses_back_in_rclone(engine, settings, tmp_path, data):
    account = service_account(tmp_path, settings)
    configured = configure(settings, tmp_path, data, gdrive=GDriveDestination(
        kind="gdrive", service_account_file=account, team_drive="0ABCdefGHIjkl"))
    drive = destinations.configured(configured)[0]
    drive.preflight()
    access = drive.access("files")
    assert access.repository.location == "rclone:gdrive:Backups/homeserver/files"
    config_mount = next(m for m in access.mounts if m.target == GDrive.RCLONE_CONFIG)
    dumped = engine.run(Repository(engine, drive, access).job("rclone-config", ["rclone", "config", "dump"]))
    assert dumped.ok, dumped.describe()
    remote = json.loads("\n".join(dumped.stdout))["gdrive"]
    assert remote == {
        "type": "drive", "scope": "drive", "service_account_file": GDrive.SERVICE_ACCOUNT,
        "chunk_size": "100M", "stop_on_upload_limit": "true", "team_drive": "0ABCdefGHIjkl",
    }
    assert account.read_text() not in config_mount.source.read_text()


def test_quota_defers_the_second_backup_of_the_day(engine, settings, tmp_path, data):
    configured = configure(settings, tmp_path, data, local=local(tmp_path, daily_upload_quota=1000))
    assert invoke(configured, tmp_path, "repo", "init").exit_code == 0
    first = invoke(configured, tmp_path, "exec", "backup", "files")
    assert first.exit_code == 0, first.output
    uploaded = ledger(configured.paths.state_dir).uploaded_today("local")
    assert uploaded > 500 * 1024  # the random half megabyte, compressed or not
    code, second = invoke_json(configured, tmp_path, "exec", "backup", "files")
    assert code == 75
    assert (second["local"]["status"] == "deferred by quota"
            and "daily quota of 1000 B;" in second["local"]["message"])
    assert ledger(configured.paths.state_dir).uploaded_today("local") == uploaded
    shown = invoke(configured, tmp_path, "quota")
    assert "local" in shown.output and f"{uploaded / 1024:.1f} KiB" in shown.output


def test_repo_init_is_idempotent(engine, settings, tmp_path, data):
    configured = configure(settings, tmp_path, data, local=local(tmp_path))
    code, first = invoke_json(configured, tmp_path, "repo", "init")
    assert code == 0 and first["local"]["message"].endswith(": initialized")
    config = (tmp_path / "repos" / "files" / "config").read_bytes()
    code, second = invoke_json(configured, tmp_path, "repo", "init")
    assert code == 0 and second["local"]["message"].endswith(": already initialized")
    assert (tmp_path / "repos" / "files" / "config").read_bytes() == config


def test_backup_never_creates_a_repository(engine, settings, tmp_path, data, nas, identity, known_hosts, request):
    configured = configure(settings, tmp_path, data, local=local(tmp_path),
                           nas=nas.destination(identity, known_hosts, path=nas_path(request)))
    before = nas.files()
    code, results = invoke_json(configured, tmp_path, "exec", "backup", "files")
    assert code == 1
    for name in ("local", "nas"):
        assert results[name]["status"] == "repository missing"
        assert f"runner repo init --destination {name} --source files" in results[name]["message"]
    assert not (tmp_path / "repos").exists()
    assert nas.files() == before


def compressible_text(size: int) -> str:
    """Log-like lines over a small vocabulary: compresses well, and better the harder one tries."""
    chooser = random.Random(7)
    words = ["".join(chooser.choices("abcdefghijklmnopqrstuvwxyz", k=chooser.randint(3, 9))) for _ in range(400)]
    lines, length = [], 0
    while length < size:
        line = f"{len(lines):08d} {' '.join(chooser.choices(words, k=12))} {chooser.randint(0, 10**6)}\n"
        lines.append(line)
        length += len(line)
    return "".join(lines)


def test_compression_setting_reaches_restic(engine, settings, tmp_path):
    """restic.compression applies to what every backup stores: on compressible data 'max' stores less
    than the default 'auto', and 'off' stores the data as it is."""
    data = tmp_path / "text"
    data.mkdir(mode=0o755)
    (data / "records.log").write_text(compressible_text(4_000_000))
    stored = {}
    for level in ("off", "auto", "max"):
        root = tmp_path / level
        root.mkdir()
        configured = configure(settings, root, data, local=local(root))
        restic_settings = configured.restic.model_copy(update={"compression": level})
        configured = configured.model_copy(update={"restic": restic_settings})
        assert invoke(configured, root, "repo", "init").exit_code == 0
        backed_up = invoke(configured, root, "exec", "backup", "files")
        assert backed_up.exit_code == 0, backed_up.output
        listed = json.loads(invoke(configured, root, "repo", "list", "--json").stdout)
        stored[level] = listed[0]["stored_bytes"]
    assert stored["off"] >= 4_000_000, stored
    assert stored["off"] > 2 * stored["auto"] and stored["auto"] > stored["max"], stored
