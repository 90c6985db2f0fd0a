from runner.restoring import put_in_place


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


def test_merging_replaces_files_and_links_of_the_same_name(tmp_path):
    target = tmp_path / "target"
    (target / "objects" / "photos").mkdir(parents=True)
    (target / "objects" / "photos" / "cat.jpg").write_bytes(b"old")
    (target / "link").symlink_to("elsewhere")
    restored = _restored_tree(tmp_path / "partial")
    (restored / "link").symlink_to("manifest.json")
    put_in_place(restored, target)
    assert (target / "objects" / "photos" / "cat.jpg").read_bytes() == b"jpeg"
    assert (target / "link").readlink().name == "manifest.json"
