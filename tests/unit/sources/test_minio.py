import hashlib
import json

import pytest

from runner.settings import Settings
from runner.sources import SourceError
from runner.sources.minio import backup as minio
from runner.sources.minio.restore import unsaved_note
from runner.sources.minio.restore_test import compare_objects, compare_through_s3
from runner.sources.minio.s3 import object_arguments, rclone_mtime


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


def test_manifest_records_folder_markers_and_the_objects_that_could_not_be_saved(tmp_path):
    (tmp_path / minio.OBJECTS / "bucket").mkdir(parents=True)
    (tmp_path / minio.OBJECTS / "bucket" / "kept").write_bytes(b"kept")
    listing = [{"Path": "bucket/kept", "Size": 4, "ModTime": "t1"}]
    unsaved = {"bucket/" + "x" * 300 + "/long": "Failed to copy: file name too long"}
    document = minio.manifest(listing, ["bucket"], tmp_path, {}, unsaved, ["bucket/empty/"])
    assert list(document["objects"]) == ["bucket/kept"] and document["buckets"]["bucket"]["objects"] == 1
    assert document["unsaved"] == unsaved and document["folder_markers"] == ["bucket/empty/"]
    assert "could not be backed up" in unsaved_note(document) and "file name too long" in unsaved_note(document)


def _log(*entries):
    return [{"level": "error", "objectType": "*s3.Object", **entry} for entry in entries]


def test_an_object_rclone_copied_on_a_later_attempt_is_not_unsaved():
    """From rclone 1.60.1's log of a sync that failed three times (--use-json-log): `a` was a file in the
    mirror, so a/b failed the first time; the sync deleted `a`, and the next attempt copied a/b."""
    log = [*_log({"msg": "Failed to copy: mkdir /mirror/objects/photos/a: not a directory", "object": "photos/a/b"},
                 {"msg": "Failed to copy: mkdir /mirror/objects/photos/xxx: file name too long",
                  "object": "photos/xxx/long.jpg"}),
           {"level": "error", "msg": "Attempt 1/3 failed with 2 errors and: not a directory"},
           {"level": "warning", "msg": "Failed to read mtime from object: invalid syntax", "object": "docs/z.txt",
            "objectType": "*s3.Object"},
           *_log({"msg": "Failed to copy: mkdir /mirror/objects/photos/xxx: file name too long",
                  "object": "photos/xxx/long.jpg"},
                 {"msg": "Entry doesn't belong in directory \"photos/marker\" (too short) - ignoring",
                  "object": "photos/marker", "source": "list/list.go:79"}),
           {"level": "error", "msg": "Attempt 2/3 failed with 1 errors and: file name too long"},
           *_log({"msg": "Failed to copy: mkdir /mirror/objects/photos/xxx: file name too long",
                  "object": "photos/xxx/long.jpg"}),
           {"level": "error", "msg": "Attempt 3/3 failed with 1 errors and: file name too long"},
           {"level": "warning", "msg": "Transferred: ...", "stats": {"transfers": 2, "bytes": 16, "deletes": 1}}]
    unsaved, others = minio.failures(minio.last_attempt(log))
    assert unsaved == {"photos/xxx/long.jpg": "Failed to copy: mkdir /mirror/objects/photos/xxx: file name too long"}
    assert others == []
    assert minio.sync_stats(log) == {"transfers": 2, "bytes": 16, "deletes": 1}
    # the attempt before the last one named the folder marker that holds data, by its folder's name
    unsaved, _ = minio.failures(log[4:6])
    assert "photos/marker/" in unsaved and "folder marker holding data" in unsaved["photos/marker/"]


def test_a_sync_that_succeeded_on_its_second_attempt_saved_everything():
    log = [*_log({"msg": "Failed to copy: connection reset", "object": "photos/a"}),
           {"level": "error", "msg": "Attempt 1/3 failed with 1 errors and: connection reset"},
           {"level": "notice", "msg": "Transferred: ...", "stats": {"transfers": 1}}]
    assert minio.failures(minio.last_attempt(log)) == ({}, [])


def test_errors_that_are_not_one_objects_are_reported_apart():
    log = [{"level": "error", "msg": "error listing: directory not found", "object": "photos",
            "objectType": "*s3.Fs"},
           {"level": "error", "msg": "Failed to remove: permission denied", "object": "photos/old",
            "objectType": "*local.Object"}]
    assert minio.failures(log) == ({}, ["photos: error listing: directory not found",
                                        "photos/old: Failed to remove: permission denied"])


def test_rclone_log_lines_that_are_not_json_are_skipped(tmp_path):
    (tmp_path / "sync.log").write_text('{"level": "error", "msg": "x"}\nFailed to sync with 1 errors\n[1]\n')
    assert minio.read_log(tmp_path / "sync.log") == [{"level": "error", "msg": "x"}]
    assert minio.read_log(tmp_path / "missing.log") == []


def test_empty_folders_of_a_listing_are_folder_markers_buckets_are_not():
    """As rclone 1.60.1 lists moto's S3 directory by directory: empty/ and nested/deep/ are zero-byte
    markers; full/ has an object under it; the bucket `spare` is empty."""
    listing = [{"Path": path, "IsDir": True} for path in ("photos", "spare", "photos/empty", "photos/full",
                                                         "photos/nested", "photos/nested/deep")]
    listing.append({"Path": "photos/full/x.txt", "IsDir": False, "Size": 1})
    assert minio.empty_folders(listing) == ["photos/empty/", "photos/nested/deep/"]


def test_stale_copies_of_unsaved_objects_leave_the_mirror(tmp_path):
    objects = tmp_path / minio.OBJECTS / "bucket"
    objects.mkdir(parents=True)
    for name in ("updated", "kept", "marker"):
        (objects / name).write_text("old")
    unsaved = {"bucket/updated": "Failed to copy: connection reset", "bucket/marker/": "a folder marker holding data",
               "bucket/" + "x" * 300: "file name too long"}
    minio.drop_stale_copies(tmp_path, unsaved, {"bucket/kept", "bucket/marker"})
    assert sorted(p.name for p in objects.iterdir()) == ["kept", "marker"]


def test_uploads_carry_exactly_the_recorded_content_type_headers_and_user_metadata():
    entry = {"content_type": "text/plain", "metadata": {
        "owner": "ann", "content-type": "text/plain", "btime": "2026-01-01T00:00:00Z", "tier": "STANDARD",
        "content-encoding": "gzip", "cache-control": "max-age=60", "mtime": "2026-11-30T05:27:38.127702857Z"}}
    assert object_arguments(entry) == {"ContentType": "text/plain", "ContentEncoding": "gzip",
                                       "CacheControl": "max-age=60",
                                       "Metadata": {"owner": "ann", "mtime": "1796016458.127702857"}}
    assert object_arguments({"content_type": None, "metadata": {}}) == {}


@pytest.mark.parametrize("listed, stored", [
    ("2026-11-30T05:27:38.127702857Z", "1796016458.127702857"),  # what rclone writes, read back exactly
    ("2026-11-30T05:27:38.1Z", "1796016458.1"),
    ("2026-11-30T05:27:38Z", "1796016458"),
    ("2026-11-30T06:27:38.5+01:00", "1796016458.5"),
    ("not a time", "not a time"),
])
def test_rclone_mtime_metadata_goes_back_to_the_value_rclone_read(listed, stored):
    assert rclone_mtime(listed) == stored


def test_restored_objects_are_compared_exactly_through_the_s3_api():
    def entry(metadata, **extra):
        return {"size": 1, "md5": "m", "content_type": "text/plain", "metadata": metadata, **extra}

    manifest = {"objects": {"b/same": entry({"owner": "ann", "btime": "then", "content-type": "text/plain"}),
                            "b/extra": entry({"owner": "ann"}), "b/gone": entry({})},
                "folder_markers": ["b/empty/", "b/lost/"]}

    def item(path, metadata):
        return {"Path": path, "Size": 1, "MimeType": "text/plain", "Hashes": {"md5": "m"}, "Metadata": metadata}

    listing = [{"Path": "b", "IsDir": True}, {"Path": "b/empty", "IsDir": True}, {"Path": "b/new", "IsDir": True},
               item("b/same", {"owner": "ann", "btime": "now", "tier": "STANDARD", "content-type": "text/plain"}),
               item("b/extra", {"owner": "ann", "mtime": "2026-11-30T05:27:38Z"}), item("b/stray", {})]
    assert compare_through_s3(manifest, listing) == [
        "b/gone is missing", "b/stray is on the server but not in the backup",
        "b/extra: metadata {'owner': 'ann', 'mtime': '2026-11-30T05:27:38Z'}, the backup had {'owner': 'ann'}",
        "folder marker b/lost/ is missing", "b/new/: an empty folder the backup did not have"]


def test_a_manifest_made_before_markers_and_unsaved_objects_were_recorded_still_reads():
    manifest = json.loads('{"format": 1, "buckets": {"b": {}}, "objects": {}}')
    assert unsaved_note(manifest) == "" and compare_through_s3(manifest, []) == []
