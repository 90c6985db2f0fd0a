"""What `runner snapshots show` says of a snapshot, per source; and what a partial restore selects."""

import json

import pytest

from runner import restic
from runner.restic import Node
from runner.restoring import RestoreError
from runner.sources.files import contents as files
from runner.sources.files.restore import chosen_path
from runner.sources.minio import contents as minio
from runner.sources.minio.restore import selected, selection_patterns
from runner.sources.postgres import contents as postgres
from runner.sources.vault import contents as vault

MANIFEST = {
    "format": 2,
    "buckets": {"photos": {"objects": 2, "bytes": 3072}, "docs": {"objects": 1, "bytes": 5}, "empty": {"objects": 0,
                                                                                                       "bytes": 0}},
    "objects": {
        "photos/2024/cat.jpg": {"size": 2048, "sha256": "a", "content_type": "image/jpeg", "metadata": {},
                                "mtime": "2026-11-01T10:00:00.123Z"},
        "photos/2025/dog.jpg": {"size": 1024, "sha256": "b", "content_type": "image/jpeg", "metadata": {}},
        "docs/a.txt": {"size": 5, "sha256": "c", "content_type": "text/plain", "metadata": {}},
    },
    "folder_markers": ["photos/2024/empty/"],
    "unsaved": {"photos/2024/" + "x" * 300: "file name too long"},
}


def test_postgres_shows_databases_tables_and_rows_from_the_manifest(tmp_path):
    manifest = {"format": 2, "dump_bytes": 2_500_000, "databases": {
        "shop": {"public.orders": {"rows": 2000, "checksum": "x"}, "public.customers": {"rows": 500, "checksum": "y"}},
        "notes": {"public.note": {"rows": 300, "checksum": "z"}}}}
    (tmp_path / "m.json").write_text(json.dumps(manifest))
    shown = postgres.describe(postgres.read_manifest(tmp_path / "m.json"))
    assert shown.rows == (("notes", "public.note", "300"), ("shop", "public.customers", "500"),
                          ("shop", "public.orders", "2,000"))
    assert shown.summary.startswith("2 databases, 3 tables, 2,800 rows") and "2.4 MiB" in shown.summary
    assert shown.data["databases"] == {"notes": {"public.note": 300},
                                       "shop": {"public.customers": 500, "public.orders": 2000}}


@pytest.mark.parametrize("content", ["not json", '{"tables": {}}', '{"databases": {"shop": {"t": {"rows": "9"}}}}'])
def test_a_postgres_manifest_that_is_not_one_is_an_error(tmp_path, content):
    (tmp_path / "m.json").write_text(content)
    with pytest.raises(RestoreError, match="manifest"):
        postgres.read_manifest(tmp_path / "m.json")


def test_minio_shows_buckets_with_object_counts_and_sizes():
    shown = minio.buckets(MANIFEST)
    assert shown.rows == (("docs", "1", "5 B"), ("empty", "0", "0 B"), ("photos", "2", "3.0 KiB"))
    assert shown.summary.startswith("3 objects (3.0 KiB) in 3 buckets; 1 folder markers; 1 objects could not be")


def test_minio_lists_the_objects_under_a_prefix():
    shown = minio.objects_under(MANIFEST, "photos/2024/")
    assert shown.rows == (("photos/2024/cat.jpg", "2.0 KiB", "image/jpeg", "2026-11-01T10:00:00"),
                          ("photos/2024/empty/", "0 B", "(folder marker)", "-"))
    assert shown.summary == "1 objects (2.0 KiB) under photos/2024/ and 1 folder markers"
    assert list(shown.data["objects"]) == ["photos/2024/cat.jpg"]
    assert "(the buckets: docs, empty, photos)" in minio.objects_under(MANIFEST, "video/").summary


def test_vault_shows_the_raft_index_and_term():
    meta = {"Version": 1, "ID": "2-53-1700000000", "Index": 53, "Term": 2,
            "Configuration": {"Servers": [{"ID": "node1", "Address": "10.0.0.5:8201", "Suffrage": 0}]}}
    shown = vault.describe(meta, 20480)
    assert ("raft index", "53") in shown.rows and ("raft term", "2") in shown.rows
    assert ("servers", "10.0.0.5:8201") in shown.rows
    assert shown.data["raft_index"] == 53 and shown.data["meta"] == meta


def test_files_shows_the_tree_at_its_original_paths_or_under_a_prefix():
    nodes = [Node("/data", "dir"), Node("/data/etc", "dir"), Node("/data/etc/app", "dir"),
             Node("/data/etc/app/a.conf", "file", 10), Node("/data/etc/app/sub", "dir"),
             Node("/data/etc/app/sub/b", "file", 2048), Node("/data/etc/apple", "file", 1),
             Node("/data/etc/app/link", "symlink")]
    whole = files.describe(nodes)
    assert [row[0] for row in whole.rows][:2] == ["/etc", "/etc/app"] and len(whole.rows) == 7
    under = files.describe(nodes, "/etc/app/")
    assert [row[:2] for row in under.rows] == [("/etc/app", "dir"), ("/etc/app/a.conf", "file"),
                                               ("/etc/app/sub", "dir"), ("/etc/app/sub/b", "file"),
                                               ("/etc/app/link", "symlink")]  # not /etc/apple
    assert under.summary.startswith("2 files (2.0 KiB) and 2 directories under /etc/app/")


def test_a_bucket_or_a_prefix_selects_its_objects_markers_and_unsaved_ones():
    chosen = selected(MANIFEST, "photos", "2024/")
    assert list(chosen["objects"]) == ["photos/2024/cat.jpg"]
    assert chosen["buckets"] == {"photos": {"objects": 1, "bytes": 2048}}
    assert chosen["folder_markers"] == ["photos/2024/empty/"] and len(chosen["unsaved"]) == 1
    assert chosen["selected"] == {"bucket": "photos", "prefix": "2024/"}
    assert selected(MANIFEST, "empty", "")["objects"] == {}  # an empty bucket is restored as one
    with pytest.raises(RestoreError, match=r"no bucket 'video' \(it has: docs, empty, photos\)"):
        selected(MANIFEST, "video", "")
    with pytest.raises(RestoreError, match="holds no object whose key starts with '2023/'"):
        selected(MANIFEST, "photos", "2023/")


def test_only_the_chosen_objects_and_the_manifest_are_fetched():
    assert selection_patterns("photos", "") == ["/minio/manifest.json", "/minio/objects/photos"]
    assert selection_patterns("photos", "2024/c") == ["/minio/manifest.json", "/minio/objects/photos/2024/c*"]
    assert selection_patterns("a*b", "[x]") == ["/minio/manifest.json", restic.include_pattern("/minio/objects/a*b/[x]",
                                                                                                prefix=True)]


@pytest.mark.parametrize("given, path", [("/etc/app/", "/etc/app"), ("/etc//app/../app.conf", "/etc/app.conf"),
                                         ("/", "/")])
def test_a_files_path_is_the_absolute_path_it_names(given, path):
    assert chosen_path(given) == path


def test_a_relative_files_path_is_refused():
    with pytest.raises(RestoreError, match="original absolute path"):
        chosen_path("etc/app")
