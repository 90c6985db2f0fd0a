import hashlib

from runner.recover import put_in_place, restore_progress
from runner.restoretests import compare_manifests, compare_objects


def test_manifest_comparison_names_database_and_table():
    expected = {"databases": {"shop": {"public.a": {"rows": 2, "checksum": "1"}, "public.b": {"rows": 1, "checksum": "2"},
                                       "public.c": {"rows": 5, "checksum": "3"}}}}
    actual = {"databases": {"shop": {"public.a": {"rows": 2, "checksum": "1"}, "public.b": {"rows": 1, "checksum": "X"}}}}
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


def test_restore_progress_lines():
    line = '{"message_type":"status","percent_done":0.5,"total_bytes":200,"bytes_restored":100}'
    assert restore_progress(line) == "50% restored (100 of 200 bytes)"
    assert restore_progress('{"message_type":"summary"}') is None


def _restored_tree(root):
    (root / "objects" / "photos").mkdir(parents=True)
    (root / "objects" / "photos" / "cat.jpg").write_bytes(b"jpeg")
    (root / "manifest.json").write_text("{}")
    return root


def test_a_restored_tree_is_moved_into_a_missing_or_empty_target(tmp_path):
    for target in (tmp_path / "missing", tmp_path / "empty"):
        if target.name == "empty":
            target.mkdir()
        restored = _restored_tree(tmp_path / f".{target.name}.partial" / "restored")
        put_in_place(restored, target)
        assert (target / "objects" / "photos" / "cat.jpg").read_bytes() == b"jpeg"
        assert not restored.exists()  # moved, not copied


def test_a_restored_tree_is_merged_into_a_target_holding_files(tmp_path):
    target = tmp_path / "minio"
    (target / "objects").mkdir(parents=True)
    (target / "objects" / "kept").write_text("already there")
    put_in_place(_restored_tree(tmp_path / "partial"), target)
    assert (target / "objects" / "kept").read_text() == "already there"
    assert (target / "objects" / "photos" / "cat.jpg").read_bytes() == b"jpeg"
