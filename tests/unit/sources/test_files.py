import os

from runner.restic import Node
from runner.sources.files.restore_test import compare_tree


def test_restored_tree_is_compared_with_the_snapshot_listing(tmp_path):
    (tmp_path / "data" / "etc").mkdir(parents=True)
    (tmp_path / "data" / "etc" / "same.conf").write_text("abc")
    (tmp_path / "data" / "etc" / "short.conf").write_text("ab")
    (tmp_path / "data" / "etc" / "stray").write_text("?")
    os.symlink("same.conf", tmp_path / "data" / "etc" / "link")
    nodes = [Node("/data", "dir"), Node("/data/etc", "dir"), Node("/data/etc/same.conf", "file", 3),
             Node("/data/etc/short.conf", "file", 3), Node("/data/etc/gone.conf", "file", 1),
             Node("/data/etc/link", "symlink")]
    assert compare_tree(nodes, tmp_path) == [
        "/data/etc/short.conf has 2 bytes, the backup had 3",
        "/data/etc/gone.conf is missing",
        "/data/etc/stray is in the restored tree but not in the snapshot",
    ]


def test_a_link_where_a_file_was_is_a_difference(tmp_path):
    (tmp_path / "data").mkdir()
    os.symlink("/etc/passwd", tmp_path / "data" / "file")
    assert compare_tree([Node("/data", "dir"), Node("/data/file", "file", 10)], tmp_path) == [
        "/data/file is not a regular file"]
