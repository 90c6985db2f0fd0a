import hashlib

import pytest

from runner.settings import Settings
from runner.sources import SourceError
from runner.sources.minio import backup as minio
from runner.sources.minio.restore import upload_script
from runner.sources.minio.restore_test import compare_objects


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
    assert (document["objects"]["bucket/new"]["sha256"]
            == "11507a0e2f5e69d5dfa40a62a1bd7b6ee57e6bcd85c67c9b8431b36fff21c437")
    assert document["objects"]["bucket/same"]["metadata"] == {"k": "v"}
    assert document["buckets"] == {"bucket": {"objects": 2, "bytes": 7}, "empty": {"objects": 0, "bytes": 0}}


def test_object_comparison(tmp_path):
    (tmp_path / "bucket").mkdir()
    (tmp_path / "bucket" / "same").write_bytes(b"same")
    (tmp_path / "bucket" / "changed").write_bytes(b"chXnged")
    (tmp_path / "bucket" / "stray").write_bytes(b"?")

    def entry(body: bytes, **extra):
        return {"size": len(body), "sha256": hashlib.sha256(body).hexdigest(), "content_type": "text/plain",
                "metadata": {}, **extra}

    manifest = {"objects": {"bucket/same": entry(b"same"), "bucket/changed": entry(b"changed"),
                            "bucket/gone": entry(b"gone")}}
    assert compare_objects(manifest, tmp_path) == ["bucket/changed: content differs from the backup",
                                                   "bucket/gone is missing",
                                                   "bucket/stray is in the snapshot but not in its manifest"]


def test_upload_script_restores_content_types_and_user_metadata_only():
    manifest = {"buckets": {"photos": {}},
                "objects": {"photos/a b.jpg": {"content_type": "image/jpeg",
                                               "metadata": {"owner": "ann", "btime": "2026-01-01", "tier": "x"}}}}
    script = upload_script(manifest)
    assert "rclone mkdir target:photos" in script
    line = next(line for line in script.splitlines() if line.startswith("rclone copyto"))
    assert "'Content-Type: image/jpeg'" in line and "--metadata-set owner=ann" in line
    assert "btime" not in line and "tier" not in line
    assert line.endswith("'/objects/photos/a b.jpg' 'target:photos/a b.jpg'")
