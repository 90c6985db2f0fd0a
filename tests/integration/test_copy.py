"""Multi-site: snapshots copied from the NAS stand-in to a second repository with restic copy, restored from the
copy and compared with the original; a destination filled by copying (copy_from); restore tests that visit
every destination in turn."""

import json

import pytest
from click.testing import CliRunner

from runner import destinations, images
from runner.cli import cli
from runner.monitoring.history import open_history
from runner.repository import Repository
from runner.selftest import tree_fingerprint
from runner.settings import LocalDestination, Settings
from runner.sources import SOURCES
from tests.integration.conftest import private_file, write_config
from tests.integration.nas import NasContainer, make_identity
from tests.integration.services import Postgres
from tests.integration.test_sources import SAMPLE_DATABASES, postgres_settings

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sites(tmp_path_factory, engine, settings, testcontainers_env):
    """A NAS and a PostgreSQL with data, the files source's data, and the settings for both destinations."""
    root = tmp_path_factory.mktemp("copy")
    images.build(settings, ["testbed-postgres"])
    identity = make_identity(root / "ssh", settings)
    data = root / "data"
    (data / "nested").mkdir(parents=True)
    (data / "nested" / "random.bin").write_bytes(bytes(range(256)) * 2048)
    (data / "notes.txt").write_text("offsite\n" * 100)
    for path in (data, data / "nested"):
        path.chmod(0o755)
    with NasContainer(settings, identity) as nas, Postgres(settings) as production:
        production.load(SAMPLE_DATABASES)
        known_hosts = private_file(root / "known_hosts", nas.known_hosts_line(), settings)
        for source in SOURCES:
            private_file(root / f"restic-{source}.password", f"password of {source}", settings)
        private_file(root / "usb-restic.password", "the usb disk's own password", settings)
        configured = Settings(
            paths={**settings.paths.model_dump(), "state_dir": root / "state", "staging_dir": root / "staging"},
            restic={"password_file": str(root / "restic-{source}.password")},
            restore_tests={"postgres_image": images.testbed_tag("postgres")},
            destinations={
                "nas": nas.destination(identity, known_hosts, path="/backups/copy/{source}"),
                # a repository of its own, with another password than the NAS's
                "usb": {"kind": "local", "path": str(root / "usb" / "{source}"),
                        "password_file": str(root / "usb-restic.password")},
            },
            sources={"files": {"paths": [str(data)]}, "postgres": postgres_settings(production, root, settings),
                     **{name: {"enabled": False} for name in ("vault", "minio")}},
        )
        yield {"settings": configured, "root": root, "data": data, "nas": nas}


def invoke(settings: Settings, root, *args):
    config = write_config(settings, root / "runner.toml")
    return CliRunner(env={"COLUMNS": "300"}).invoke(cli, ["--config", str(config), *args], prog_name="runner")


def results(settings: Settings, root, *args) -> tuple[int, list[dict]]:
    result = invoke(settings, root, *args, "--json")
    try:
        return result.exit_code, json.loads(result.stdout)
    except json.JSONDecodeError:
        raise AssertionError(result.output) from None


def by_source(found: list[dict]) -> dict[str, dict]:
    return {entry["source"]: entry for entry in found}


def with_copy_from(settings: Settings) -> Settings:
    usb = settings.destinations["usb"].model_copy(update={"copy_from": "nas"})
    return settings.model_copy(update={"destinations": {**settings.destinations, "usb": usb}})


def test_copies_restore_like_the_original_and_restore_tests_visit_every_destination(sites, engine, tmp_path):
    settings, root = sites["settings"], sites["root"]
    code, initialized = results(settings, root, "repo", "init")
    assert code == 0, initialized
    code, backed_up = results(settings, root, "exec", "backup", "--destination", "nas")
    assert code == 0, backed_up
    assert {entry["destination"] for entry in backed_up} == {"nas"}

    code, copied = results(settings, root, "exec", "copy", "--from", "nas", "--to", "usb")
    assert code == 0, copied
    copied = by_source(copied)
    assert {source: entry["destination"] for source, entry in copied.items()} == {"files": "usb", "postgres": "usb"}
    assert copied["files"]["figures"]["copied"] == 1
    assert copied["postgres"]["figures"]["copied"] == 2 and copied["postgres"]["figures"]["copied_manifests"] == 1

    # restored from the copy (its own repository and password), the files are the original ones
    usb = destinations.configured(settings, ["usb"])[0]
    repository = Repository(engine, usb, usb.access("files"))
    repository.restore(repository.find("files"), tmp_path / "restored")
    restored = tmp_path / "restored" / "data" / str(sites["data"]).lstrip("/")
    assert tree_fingerprint(restored) == tree_fingerprint(sites["data"])

    # the copy's manifest points at the copied snapshot: listed beside it
    code, listed = results(settings, root, "snapshots", "postgres", "--destination", "usb")
    assert code == 0
    [postgres_on_usb] = listed
    [snapshot] = postgres_on_usb["snapshots"]
    assert snapshot["manifest_id"] is not None
    assert snapshot["id"] != by_source(backed_up)["postgres"]["snapshot_id"]  # a copy has an id of its own

    # a second copy finds nothing new
    code, again = results(settings, root, "exec", "copy", "--from", "nas", "--to", "usb")
    assert code == 0, again
    assert {entry["source"]: entry["figures"]["copied"] for entry in again} == {"files": 0, "postgres": 0}
    assert all("nothing new" in entry["message"] for entry in again)
    history = open_history(settings.paths.state_dir)
    assert {(run.source, run.destination, run.status) for run in history.runs(kind="copy")} == {
        ("files", "usb", "ok"), ("postgres", "usb", "ok")}

    # two monthly restore tests: the first reads from the NAS, the second from the copy
    visited = []
    for _ in range(2):
        code, tested = results(settings, root, "exec", "restore-test")
        assert code == 0, tested
        assert len({entry["destination"] for entry in tested}) == 1
        visited.append(tested[0]["destination"])
        assert by_source(tested)["postgres"]["figures"]["tables"] == 4  # compared with the manifest, row by row
    assert visited == ["nas", "usb"]
    passed = {(run.source, run.destination) for run in history.runs(kind="restore-test") if run.status == "ok"}
    assert passed == {(source, destination) for source in ("files", "postgres") for destination in ("nas", "usb")}

    # prune in the copy keeps the manifest of every snapshot it keeps (found by the backup's id)
    pruning = settings.model_copy(update={"retention": settings.retention.model_copy(
        update={"minimum_snapshots": 1})})
    code, pruned = results(pruning, root, "exec", "prune", "postgres", "--destination", "usb")
    assert code == 0 and "1 kept" in pruned[-1]["message"], pruned
    code, listed = results(settings, root, "snapshots", "postgres", "--destination", "usb")
    assert listed[0]["snapshots"][0]["manifest_id"] == snapshot["manifest_id"]

    # the status shows each destination's last restore test
    code, status = results(settings, root, "status")
    assert {(state["source"], state["destination"]): state["last_restore_test"] for state in status} == {
        (source, destination): "ok" for source in ("files", "postgres") for destination in ("nas", "usb")}


def test_a_destination_filled_by_copying_is_left_out_of_backups_and_copied_into(sites):
    settings, root = with_copy_from(sites["settings"]), sites["root"]
    code, initialized = results(settings, root, "repo", "init")
    assert code == 0, initialized
    (sites["data"] / "notes.txt").write_text("changed since the first copy\n")
    code, backed_up = results(settings, root, "exec", "backup", "files")
    assert code == 0, backed_up
    assert [entry["destination"] for entry in backed_up] == ["nas"]  # usb is filled by copying

    code, copied = results(settings, root, "exec", "copy", "files")
    assert code == 0, copied
    [entry] = copied
    assert (entry["destination"], entry["figures"]["origin"], entry["figures"]["copied"]) == ("usb", "nas", 1)
    code, status = results(settings, root, "status")
    usb = {state["source"]: state for state in status if state["destination"] == "usb"}
    assert usb["files"]["within_rpo"] and usb["files"]["last_outcome"] == "ok"


def test_a_copy_that_cannot_run_is_recorded_and_alerted(sites):
    settings, root = sites["settings"], sites["root"]
    spare = LocalDestination(kind="local", path=str(root / "spare" / "{source}"))  # never initialized
    settings = settings.model_copy(update={"destinations": {**settings.destinations, "spare": spare}})
    code, initialized = results(settings, root, "repo", "init", "--destination", "nas")
    assert code == 0, initialized
    code, copied = results(settings, root, "exec", "copy", "--from", "nas", "--to", "spare")
    assert code == 1
    assert {entry["source"]: entry["status"] for entry in copied} == {"files": "repository missing",
                                                                       "postgres": "repository missing"}
    assert all("runner repo init --destination spare" in entry["message"] for entry in copied)
    assert not (root / "spare").exists()  # a copy never creates a repository
    history = open_history(settings.paths.state_dir)
    alerts = history.open_alerts()
    assert alerts["copy:files:spare"]["kind"] == "copy failed"
    assert {(run.source, run.status) for run in history.runs(kind="copy", destination="spare")} == {
        ("files", "repository missing"), ("postgres", "repository missing")}
