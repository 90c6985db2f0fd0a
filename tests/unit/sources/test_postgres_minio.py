import pytest

from runner.engine import ContainerStatus
from runner.settings import Settings
from runner.sources import SourceError, enabled, minio, postgres


def test_restore_priority_order():
    settings = Settings(sources={"files": {"paths": ["/etc/offsite-backup"]}})
    assert enabled(settings) == ["vault", "postgres", "minio", "files"]
    assert enabled(settings, ["minio", "vault"]) == ["vault", "minio"]


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


def test_minio_filters_put_excludes_before_the_bucket_selection():
    settings = Settings(sources={"minio": {"excludes": ["tmp/**"], "buckets": ["photos"]}})
    assert minio.filters(settings) == ["--filter", "- tmp/**", "--filter", "+ /photos/**", "--filter", "- **"]


def test_minio_remote_has_no_keys():
    remote = minio.remote(Settings())
    assert remote["env_auth"] == "true" and not any("secret" in key or "access" in key for key in remote)


def test_mirror_check_names_what_differs(tmp_path):
    objects_dir = tmp_path / minio.OBJECTS / "bucket"
    objects_dir.mkdir(parents=True)
    (objects_dir / "a").write_bytes(b"12345")
    (objects_dir / "stray").write_bytes(b"x")
    listing = [{"Path": "bucket/a", "Size": 4}, {"Path": "bucket/b", "Size": 1}]
    with pytest.raises(SourceError) as caught:
        minio.check_mirror(listing, tmp_path)
    message = str(caught.value)
    assert "bucket/b: missing" in message and "bucket/a: 5 bytes, the source has 4" in message
    assert "bucket/stray: in the mirror but not in the source" in message


def test_manifest_reuses_checksums_of_unchanged_objects(tmp_path):
    objects_dir = tmp_path / minio.OBJECTS / "bucket"
    objects_dir.mkdir(parents=True)
    (objects_dir / "same").write_bytes(b"same")
    (objects_dir / "new").write_bytes(b"new")
    listing = [{"Path": "bucket/same", "Size": 4, "ModTime": "t1", "MimeType": "text/plain", "Metadata": {"k": "v"}},
               {"Path": "bucket/new", "Size": 3, "ModTime": "t2"}]
    previous = {"bucket/same": {"size": 4, "mtime": "t1", "sha256": "remembered"}}
    document = minio.manifest(listing, ["bucket", "empty"], tmp_path, previous)
    assert document["objects"]["bucket/same"]["sha256"] == "remembered"
    assert document["objects"]["bucket/new"]["sha256"] == "11507a0e2f5e69d5dfa40a62a1bd7b6ee57e6bcd85c67c9b8431b36fff21c437"
    assert document["objects"]["bucket/same"]["metadata"] == {"k": "v"}
    assert document["buckets"] == {"bucket": {"objects": 2, "bytes": 7}, "empty": {"objects": 0, "bytes": 0}}


def test_server_without_a_container_is_reached_by_host_name():
    settings = Settings(sources={"postgres": {"container": "", "host": "127.0.0.1", "port": 5433}})
    assert postgres.server(settings, engine=None) is None
    assert postgres.endpoint(settings, None) == ("host", "127.0.0.1")
    with pytest.raises(SourceError, match="sources.postgres.host is required"):
        postgres.endpoint(Settings(sources={"postgres": {"container": ""}}), None)
    with pytest.raises(SourceError, match="needs sources.postgres.container"):
        postgres.server(Settings(sources={"postgres": {"container": "", "mode": "exec"}}), engine=None)
