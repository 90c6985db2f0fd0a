import os
from datetime import UTC, datetime

from runner.restic import Node
from runner.sources.files.restore_test import _time_ns, compare_tree, compare_with_originals


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


def test_modes_and_owners_of_the_restored_tree_are_compared(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "key").write_text("k")
    os.chmod(tmp_path / "data" / "key", 0o644)
    uid, gid = os.getuid(), os.getgid()
    nodes = [Node("/data", "dir"), Node("/data/key", "file", 1, 0o600, uid, gid)]
    assert compare_tree(nodes, tmp_path) == ["/data/key has mode 0644, the backup had 0600"]
    other = [Node("/data", "dir"), Node("/data/key", "file", 1, 0o644, uid + 1, gid)]
    assert compare_tree(other, tmp_path) == [f"/data/key has owner {uid}:{gid}, the backup had {uid + 1}:{gid}"]
    assert compare_tree(other, tmp_path, owners=False) == []


def ctime(path) -> str:
    """A path's ctime as restic writes it."""
    ns = path.lstat().st_ctime_ns
    return datetime.fromtimestamp(ns // 1_000_000_000, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{ns % 10**9:09d}Z"


def test_unchanged_originals_are_compared_by_content_mode_and_owner(tmp_path):
    original = tmp_path / "etc"
    restored = tmp_path / "restored"
    copy = restored / "data" / str(original).lstrip("/")
    copy.mkdir(parents=True)
    original.mkdir()
    for name, backed_up, now in (("same.conf", "same", "same"), ("damaged.conf", "good", "evil"),
                                 ("later.conf", "old", "old")):
        (original / name).write_text(backed_up)
        (copy / name).write_text(now)
        (original / name).chmod(0o644)
    uid, gid = os.getuid(), os.getgid()
    nodes = [Node(f"/data{original}/{path.name}", "file", path.stat().st_size, 0o644, uid, gid, "", ctime(path))
             for path in sorted(original.iterdir())]
    (original / "later.conf").write_text("newer")  # changed since the backup: compared with the snapshot only
    result = compare_with_originals(nodes, restored, (f"/data{original}",))
    assert (result.compared, result.changed, result.unreadable) == (2, 1, 0)
    assert result.differences == [f"{original}/damaged.conf: the restored content differs from the original, "
                                  "unchanged since the backup"]


def test_restic_times_are_read_to_the_nanosecond():
    assert _time_ns("1970-01-01T00:00:01.000000002Z") == 1_000_000_002
    assert _time_ns("1970-01-01T01:00:01.5+01:00") == 1_500_000_000
    assert _time_ns("not a time") is None
