"""MinIO backups and restores with what real buckets hold: objects the mirror cannot hold, folder
markers, every kind of object metadata, and S3 servers or directories that already hold data.
Real S3 stand-ins (moto), real rclone and restic, the runner's own S3 step in the runner image."""

import hashlib
import json
import os

import pytest
from click.testing import CliRunner

from runner import images
from runner.cli import cli as runner_cli
from runner.sources.minio.backup import MANIFEST, OBJECTS
from runner.sources.minio.s3 import connect, upload
from tests.integration.conftest import run_tools, write_config
from tests.integration.services import S3
from tests.integration.test_sources import configure, minio_settings, restore, snapshots

LONG = "photos/" + "x" * 300 + "/long.jpg"  # a path component of 300 bytes: no Linux filesystem holds it
HEADS = ("ContentLength", "ContentType", "ContentEncoding", "CacheControl", "ContentDisposition", "ContentLanguage",
         "Metadata")


@pytest.fixture(scope="module", autouse=True)
def built(engine, settings, testcontainers_env):
    images.build(settings, ["runner", "testbed-s3"])  # uploads run in the runner image


def cli(settings, root, *args):
    config = write_config(settings, root / "runner.toml")
    return CliRunner().invoke(runner_cli, ["--config", str(config), *map(str, args)], prog_name="runner")


def backed_up(settings, root, s3, **minio):
    configured = configure(settings, root, minio=minio_settings(s3, root, settings, **minio))
    configured = configured.model_copy(update={"restore_tests": configured.restore_tests.model_copy(
        update={"s3_image": images.testbed_tag("s3")})})
    assert cli(configured, root, "repo", "init").exit_code == 0
    return configured, backup_again(configured, root)


def backup_again(configured, root):
    result = cli(configured, root, "exec", "backup", "minio", "--json")
    [entry] = json.loads(result.stdout)
    return entry


def restore_test(configured, root):
    result = cli(configured, root, "exec", "restore-test", "minio", "--json")
    [entry] = json.loads(result.stdout)
    return result.exit_code, entry


def put(s3, path, body, **extra):
    bucket, key = path.split("/", 1)
    s3.client.put_object(Bucket=bucket, Key=key, Body=body, **extra)


def keys(s3):
    return {f"{bucket['Name']}/{item['Key']}" for bucket in s3.client.list_buckets()["Buckets"]
            for item in s3.client.list_objects_v2(Bucket=bucket["Name"]).get("Contents", [])}


def latest_snapshot(engine, configured, tmp_path, name):
    latest = max(snapshots(engine, configured, "minio"), key=lambda snapshot: snapshot.time)
    restored = restore(engine, configured, "minio", latest, tmp_path / name) / "minio"
    files = {str(p.relative_to(restored / OBJECTS)): p.read_bytes() for p in (restored / OBJECTS).rglob("*")
             if p.is_file()}
    return files, json.loads((restored / MANIFEST).read_text())


def test_objects_the_mirror_cannot_hold_are_named_and_all_others_are_backed_up(engine, settings, tmp_path):
    with S3(settings) as s3:
        for bucket in ("photos", "docs"):
            s3.client.create_bucket(Bucket=bucket)
        good = {f"docs/dir{index}/note-{index}.txt": f"note {index}\n".encode() * 50 for index in range(6)}
        good["photos/cat.jpg"] = os.urandom(5000)
        for path, body in good.items():
            put(s3, path, body, ContentType="text/plain", Metadata={"owner": "ann"})
        put(s3, LONG, b"a name too long for the mirror")
        put(s3, "photos/a", b"an object named like the folder beside it")
        put(s3, "photos/a/b", b"an object in that folder")
        put(s3, "photos/holder/", b"a folder marker that holds data")
        configured, result = backed_up(settings, tmp_path, s3)

        assert result["status"] == "partial" and result["snapshot_id"], result["message"]  # stored, not complete
        figures = result["figures"]
        files, manifest = latest_snapshot(engine, configured, tmp_path, "first")
        reasons = manifest["unsaved"]
        clash = {"photos/a", "photos/a/b"}  # one of the two is a file in the mirror, the other cannot be
        assert figures["unsaved"] == 3 and len(reasons.keys() & clash) == 1
        assert "file name too long" in reasons[LONG] and "folder marker holding data" in reasons["photos/holder/"]
        assert "3 item(s) of the source could not be backed up" in result["message"]
        assert all(path in result["message"] for path in reasons)
        saved = {**good, **{path: s3.client.get_object(Bucket="photos", Key=path.split("/", 1)[1])["Body"].read()
                            for path in clash - reasons.keys()}}
        assert files == saved  # every other object, byte for byte, and nothing else
        assert set(manifest["objects"]) == set(saved)
        assert figures["objects"] == len(saved)

        code, tested = restore_test(configured, tmp_path)
        assert code == 0 and tested["status"] == "ok", tested["message"]
        assert tested["figures"]["s3_compared"] == len(saved) and tested["figures"]["unsaved"] == 3
        assert "not a restore mismatch" in tested["message"] and "photos/holder/" in tested["message"]

        # the next night: one object deleted at the source goes from the mirror although others still fail
        s3.client.delete_object(Bucket="docs", Key="dir0/note-0.txt")
        again = backup_again(configured, tmp_path)
        assert again["status"] == "partial" and again["figures"]["deleted"] == 1, again["message"]
        assert again["figures"]["unsaved"] == 3
        files, _ = latest_snapshot(engine, configured, tmp_path, "second")
        assert set(files) == set(saved) - {"docs/dir0/note-0.txt"}


def test_folder_markers_are_recorded_restore_tested_and_recreated(engine, settings, tmp_path):
    with S3(settings) as s3, S3(settings) as fresh:
        for bucket in ("photos", "spare"):
            s3.client.create_bucket(Bucket=bucket)
        for marker in ("photos/empty/", "photos/nested/deep/", "photos/full/"):
            put(s3, marker, b"")
        put(s3, "photos/full/x.jpg", b"x")
        put(s3, "photos/cache/x.tmp", b"excluded")  # a folder holding only excluded objects: no marker
        configured, result = backed_up(settings, tmp_path, s3, excludes=["*.tmp"])
        assert result["status"] == "ok" and result["figures"]["folder_markers"] == 2, result["message"]
        _, manifest = latest_snapshot(engine, configured, tmp_path, "restored")
        # photos/full/ holds an object: rclone 1.60 shows it as a folder like any other and it cannot be told apart
        assert manifest["folder_markers"] == ["photos/empty/", "photos/nested/deep/"]

        code, tested = restore_test(configured, tmp_path)
        assert code == 0 and "and its 2 folder markers" in tested["message"], tested["message"]

        restored = cli(configured, tmp_path, "restore", "minio", "--to-dir", tmp_path / "copy", "--endpoint",
                       fresh.endpoint, "--network", "podman")
        assert restored.exit_code == 0, restored.output
        assert "1 objects uploaded" in restored.output and "2 folder markers recreated" in restored.output
        assert keys(fresh) == {"photos/empty/", "photos/nested/deep/", "photos/full/x.jpg"}
        assert {bucket["Name"] for bucket in fresh.client.list_buckets()["Buckets"]} == {"photos", "spare"}


def test_restore_to_an_endpoint_gives_back_exactly_the_content_types_headers_and_user_metadata(
        engine, settings, tmp_path):
    with S3(settings) as s3, S3(settings) as fresh:
        for bucket in ("docs", "photos"):
            s3.client.create_bucket(Bucket=bucket)
        put(s3, "docs/plain.txt", b"plain", ContentType="text/plain; charset=utf-8",
            Metadata={"owner": "ann", "Mixed-Case": "Value", "spaced": "two  spaces"})
        put(s3, "docs/page.html.gz", b"\x1f\x8bnot really gzip", ContentType="text/html", ContentEncoding="gzip",
            CacheControl="max-age=60", ContentDisposition='attachment; filename="page.html"', ContentLanguage="de",
            Metadata={"a": "1"})
        put(s3, "docs/bare", b"no content type, no metadata")
        put(s3, "photos/empty.jpg", b"", ContentType="image/jpeg")
        uploaded_by_rclone(settings, tmp_path, s3, "photos/by-rclone.txt")  # carries rclone's own mtime metadata
        configured, result = backed_up(settings, tmp_path, s3)
        assert result["status"] == "ok", result["message"]

        restored = cli(configured, tmp_path, "restore", "minio", "--to-dir", tmp_path / "copy", "--endpoint",
                       fresh.endpoint, "--network", "podman")
        assert restored.exit_code == 0, restored.output
        assert keys(fresh) == keys(s3)
        for path in sorted(keys(s3)):
            bucket, key = path.split("/", 1)
            source, target = (server.client.head_object(Bucket=bucket, Key=key) for server in (s3, fresh))
            assert {field: target.get(field) for field in HEADS} == {field: source.get(field) for field in HEADS}, path
            assert (fresh.client.get_object(Bucket=bucket, Key=key)["Body"].read()
                    == s3.client.get_object(Bucket=bucket, Key=key)["Body"].read())
        assert "mtime" in s3.client.head_object(Bucket="photos", Key="by-rclone.txt")["Metadata"]


def uploaded_by_rclone(settings, tmp_path, s3, path):
    share = tmp_path / "rclone-upload"
    share.mkdir()
    (share / "file.txt").write_text("uploaded with rclone\n")
    (share / "rclone.conf").write_text(f"[s3]\ntype = s3\nprovider = Minio\nenv_auth = true\n"
                                       f"endpoint = {s3.endpoint}\n")
    (share / "credentials").write_text("[default]\naws_access_key_id = AKIATESTTESTTEST\n"
                                       "aws_secret_access_key = test-secret-key\n")
    run_tools(settings, "rclone", "copyto", "/share/file.txt", f"s3:{path}", mounts=(f"{share}:/share:ro",),
              env={"RCLONE_CONFIG": "/share/rclone.conf", "AWS_SHARED_CREDENTIALS_FILE": "/share/credentials"})


def test_large_objects_go_up_in_parts_with_their_metadata(settings, tmp_path):
    with S3(settings) as s3:
        body = os.urandom(12 * 1024 * 1024 + 5)
        (tmp_path / OBJECTS / "videos").mkdir(parents=True)
        (tmp_path / OBJECTS / "videos" / "big.mp4").write_bytes(body)
        (tmp_path / MANIFEST).write_text(json.dumps({"buckets": {"videos": {}}, "objects": {"videos/big.mp4": {
            "size": len(body), "sha256": hashlib.sha256(body).hexdigest(), "content_type": "video/mp4",
            "metadata": {"owner": "ann", "content-type": "video/mp4", "btime": "2026-01-01T00:00:00Z"}}}}))
        client = connect(s3.endpoint, "us-east-1", ("AKIATESTTESTTEST", "test-secret-key"))
        progress = {}
        upload(client, tmp_path, progress, multipart_above=5 * 1024 * 1024, part_size=5 * 1024 * 1024)
        head = s3.client.head_object(Bucket="videos", Key="big.mp4")
        assert head["ETag"].endswith('-3"')  # three parts
        assert (head["ContentType"], head["Metadata"], head["ContentLength"]) == ("video/mp4", {"owner": "ann"},
                                                                                  len(body))
        assert s3.client.get_object(Bucket="videos", Key="big.mp4")["Body"].read() == body
        assert progress == {"objects": 1, "bytes": len(body), "folder_markers": 0, "buckets": 1}


def test_a_server_holding_objects_is_refused_and_a_forced_restore_moves_the_old_directory_aside(
        engine, settings, tmp_path):
    with S3(settings) as s3:
        s3.client.create_bucket(Bucket="docs")
        put(s3, "docs/a.txt", b"as backed up", ContentType="text/plain")
        put(s3, "docs/b.txt", b"b", ContentType="text/plain")
        configured, result = backed_up(settings, tmp_path, s3)
        assert result["status"] == "ok", result["message"]
        put(s3, "docs/a.txt", b"changed since the backup", ContentType="text/plain")

        refused = cli(configured, tmp_path, "restore", "minio", "--to-dir", tmp_path / "new", "--endpoint",
                      s3.endpoint, "--network", "podman")
        assert refused.exit_code == 1
        assert "already holds objects in the buckets to be written: docs" in refused.output
        assert "nothing was uploaded" in refused.output and "--force" in refused.output
        assert s3.client.get_object(Bucket="docs", Key="a.txt")["Body"].read() == b"changed since the backup"
        assert not (tmp_path / "new").exists()

        target = tmp_path / "minio-restore"
        (target / OBJECTS / "docs").mkdir(parents=True)
        (target / OBJECTS / "docs" / "deleted-since.txt").write_text("stale")
        (target / "notes.txt").write_text("an operator's notes")
        old = {str(p.relative_to(target)) for p in target.rglob("*")}
        not_forced = cli(configured, tmp_path, "restore", "minio", "--to-dir", target)
        assert not_forced.exit_code == 1 and "is not empty; use --force" in not_forced.output

        forced = cli(configured, tmp_path, "restore", "minio", "--to-dir", target, "--endpoint", s3.endpoint,
                     "--network", "podman", "--force")
        assert forced.exit_code == 0, forced.output
        assert s3.client.get_object(Bucket="docs", Key="a.txt")["Body"].read() == b"as backed up"
        files = {str(p.relative_to(target)) for p in target.rglob("*") if p.is_file()}
        assert files == {MANIFEST, f"{OBJECTS}/docs/a.txt", f"{OBJECTS}/docs/b.txt"}  # nothing stale mixed in
        [aside] = [p for p in tmp_path.iterdir() if p.name.startswith("minio-restore.before-restore-")]
        assert {str(p.relative_to(aside)) for p in aside.rglob("*")} == old  # moved, nothing deleted
        assert f"moved to {aside}" in forced.output
