import pytest

from runner.engine import ContainerStatus
from runner.settings import Settings
from runner.sources import SourceError
from runner.sources.postgres import backup as postgres
from runner.sources.postgres.restore_test import compare_manifests, production_address


def test_endpoint_defaults_to_the_containers_address_on_its_first_network():
    status = ContainerStatus("db", True, "running", "", {"homeserver": "10.89.0.5", "podman": "10.88.0.2"})
    assert postgres.endpoint(Settings(), status) == ("homeserver", "10.89.0.5")
    chosen = Settings(sources={"postgres": {"network": "podman", "host": "db.dns"}})
    assert postgres.endpoint(chosen, status) == ("podman", "db.dns")
    with pytest.raises(SourceError, match="not on network 'other'"):
        postgres.endpoint(Settings(sources={"postgres": {"network": "other"}}), status)


def test_dump_argv_has_no_password():
    argv = postgres.dump_argv(Settings(sources={"postgres": {"dump_options": ["--no-role-passwords"]}}), "10.0.0.5")
    assert argv == ["pg_dumpall", "--host", "10.0.0.5", "--port", "5432", "--username", "postgres", "--no-password",
                    "--no-role-passwords"]


@pytest.mark.parametrize("status, message", [
    (ContainerStatus("postgres", False), "does not exist"),
    (ContainerStatus("postgres", True, "exited"), "is exited"),
    (ContainerStatus("postgres", True, "running", "unhealthy"), "unhealthy"),
])
def test_container_must_be_running_and_healthy(status, message):
    class Engine:
        def container_status(self, name):
            return status

    with pytest.raises(SourceError, match=message):
        postgres.running_container(Settings(), Engine())


def test_server_without_a_container_is_reached_by_host_name():
    settings = Settings(sources={"postgres": {"container": "", "host": "127.0.0.1", "port": 5433}})
    assert postgres.server(settings, engine=None) is None
    assert postgres.endpoint(settings, None) == ("host", "127.0.0.1")
    with pytest.raises(SourceError, match="sources.postgres.host is required"):
        postgres.endpoint(Settings(sources={"postgres": {"container": ""}}), None)
    with pytest.raises(SourceError, match="needs sources.postgres.container"):
        postgres.server(Settings(sources={"postgres": {"container": "", "mode": "exec"}}), engine=None)


def test_manifest_comparison_names_database_and_table():
    expected = {"databases": {"shop": {"public.a": {"rows": 2, "checksum": "1"},
                                       "public.b": {"rows": 1, "checksum": "2"},
                                       "public.c": {"rows": 5, "checksum": "3"}}}}
    actual = {"databases": {"shop": {"public.a": {"rows": 2, "checksum": "1"},
                                     "public.b": {"rows": 1, "checksum": "X"}}}}
    assert compare_manifests(expected, actual) == ["shop: public.b: row contents differ from the backup",
                                                   "shop: public.c is missing"]
    actual["databases"]["shop"]["public.b"]["checksum"] = "2"
    actual["databases"]["shop"]["public.c"] = {"rows": 4, "checksum": "3"}
    assert compare_manifests(expected, actual) == ["shop: public.c has 4 rows, the backup had 5"]


def test_manifests_of_different_formats_compare_rows_only():
    expected = {"databases": {"shop": {"public.a": {"rows": 2, "checksum": "old-style"}}}}
    actual = {"format": 2, "databases": {"shop": {"public.a": {"rows": 2, "checksum": "new-style"}}}}
    assert compare_manifests(expected, actual) == []
    actual["databases"]["shop"]["public.a"]["rows"] = 3
    assert compare_manifests(expected, actual) == ["shop: public.a has 3 rows, the backup had 2"]
    expected["format"] = 2
    actual["databases"]["shop"]["public.a"]["rows"] = 2
    assert compare_manifests(expected, actual) == ["shop: public.a: row contents differ from the backup"]


class NoContainers:
    def container_status(self, name):
        raise AssertionError(f"asked Podman for container {name!r}")


@pytest.mark.parametrize(("host", "probed"), [("db.lan", "db.lan"), ("127.0.0.1", None), ("localhost", None)])
def test_a_server_without_a_container_is_probed_by_its_host_unless_on_loopback(host, probed):
    settings = Settings(sources={"postgres": {"container": "", "host": host, "network": "host"}})
    assert production_address(settings, NoContainers()) == probed


@pytest.mark.parametrize(("stored", "asked"), [(3, "--format 3 "), (2, "--format 2 "), (1, "")])
def test_restored_server_is_hashed_as_the_backups_manifest_was(tmp_path, stored, asked):
    """A format 2 manifest (SHA-256) is compared with a format 2 one, so older backups keep their row checksums;
    a format 1 manifest, which no longer can be made, with the default (row counts compare)."""
    import importlib
    import json

    from runner.engine import JobResult

    restore_test = importlib.import_module("runner.sources.postgres.restore_test")  # the package's name is a function

    class Engine:
        def run(self, spec):
            self.script = spec.argv[2]
            (tmp_path / "verify" / "manifest.json").write_text(json.dumps({"format": stored, "databases": {}}))
            return JobResult(spec.name, "c", 0, False, 0.1, [], [], [])

    engine = Engine()
    settings = Settings(paths={"state_dir": tmp_path / "state"})
    restore_test._manifest_of(settings, engine, "10.0.0.9", "net", tmp_path / "verify", stored)
    assert engine.script.startswith(f"dump-with-manifest {asked}--manifest /out/manifest.json -- pg_dumpall")
