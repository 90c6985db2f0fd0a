import pytest

from runner import restic
from runner.restic import Outcome, OutputError, Repository

PASSWORD = "correct horse battery staple 42"
# A summary line as restic 0.18.0 printed it in the tools image.
SUMMARY_LINE = (
    '{"message_type":"summary","files_new":1,"files_changed":0,"files_unmodified":0,"dirs_new":2,'
    '"dirs_changed":0,"dirs_unmodified":0,"data_blobs":1,"tree_blobs":3,"data_added":1056,'
    '"data_added_packed":957,"total_files_processed":1,"total_bytes_processed":3,'
    '"total_duration":0.732357043,"backup_start":"2026-11-27T12:03:16.288276366Z",'
    '"backup_end":"2026-11-27T12:03:17.020633409Z",'
    '"snapshot_id":"07fbd2347da7240c51868fcac2e59410c5f4801f44cb1736ec6f3cd0eabcf61e"}'
)


@pytest.fixture
def repo(tmp_path):
    password_file = tmp_path / "password"
    password_file.write_text(PASSWORD)
    return Repository("sftp:backup@nas:/backups/x", str(password_file), cache_dir="/cache",
                      options=("sftp.connections=2",), limit_upload_kib=10240)


def all_argvs(repo):
    return [
        restic.init(repo),
        restic.backup(repo, ["/data"], host="h", tags=["vault"], excludes=["*.tmp"]),
        restic.backup_from_command(repo, ["pg_dumpall", "-h", "db"], filename="all.sql", host="h"),
        restic.snapshots(repo, host="h", tags=["vault"], latest=1),
        restic.restore(repo, "latest", "/restore", includes=["/data"]),
        restic.cat_config(repo),
    ]


def test_argv_never_contains_the_password(repo):
    for argv in all_argvs(repo):
        assert all(PASSWORD not in arg for arg in argv), argv
        assert "--password-file" in argv and "--password" not in argv
        assert argv[0] == "restic"


def test_global_options(repo):
    argv = restic.init(repo)
    assert argv[argv.index("--repo") + 1] == "sftp:backup@nas:/backups/x"
    assert argv[argv.index("--option") + 1] == "sftp.connections=2"
    assert argv[argv.index("--limit-upload") + 1] == "10240"
    assert "--json" in argv
    assert argv[-2:] == ["--repository-version", "2"]


def test_no_cache_when_no_cache_dir():
    argv = restic.snapshots(Repository("/repo", "/pw"))
    assert "--no-cache" in argv and "--cache-dir" not in argv


def test_backup_from_command_puts_the_command_after_the_separator(repo):
    argv = restic.backup_from_command(repo, ["pg_dumpall", "--clean"], filename="all.sql", host="h")
    assert argv[argv.index("--stdin-filename") + 1] == "all.sql"
    assert argv[argv.index("--") + 1:] == ["pg_dumpall", "--clean"]


def test_paths_cannot_be_read_as_options(repo):
    argv = restic.backup(repo, ["--weird-dir"], host="h")
    assert argv[argv.index("--") + 1:] == ["--weird-dir"]


@pytest.mark.parametrize("code, expected", [
    (0, Outcome.OK), (1, Outcome.FATAL), (3, Outcome.INCOMPLETE), (10, Outcome.REPOSITORY_MISSING),
    (11, Outcome.LOCKED), (12, Outcome.WRONG_PASSWORD), (130, Outcome.CANCELLED),
    (2, Outcome.FAILED), (137, Outcome.FAILED), (255, Outcome.FAILED),
])
def test_exit_codes(code, expected):
    assert restic.outcome(code) is expected
    assert f"exit code {code}" in restic.explain(code)


def test_missing_repository_explanation_says_to_run_repo_init():
    assert "runner repo init" in restic.explain(10)


def test_parse_summary_line():
    output = restic.parse_output(['{"message_type":"status","percent_done":0.5}', SUMMARY_LINE])
    assert output.summary["snapshot_id"].startswith("07fbd234")
    assert output.summary["data_added"] == 1056
    assert output.errors == [] and output.exit_error is None


def test_parse_errors_and_exit_error():
    output = restic.parse_output([
        '{"message_type":"error","error":{"message":"permission denied"},"during":"archival","item":"/data/x"}',
        '{"message_type":"exit_error","code":12,"message":"Fatal: wrong password or no key found"}',
        "not json at all",
        "",
    ])
    assert output.errors == ["/data/x: permission denied"]
    assert output.exit_error == "Fatal: wrong password or no key found"
    assert output.text == ["not json at all"]


def test_parse_snapshot_listing():
    output = restic.parse_output(['[{"id":"abc","short_id":"abc","paths":["/data"]}]'])
    assert output.documents == [[{"id": "abc", "short_id": "abc", "paths": ["/data"]}]]


def test_restore_progress_lines():
    line = '{"message_type":"status","percent_done":0.5,"total_bytes":200,"bytes_restored":100}'
    assert restic.restore_progress(line) == "50%: 100 B of 200 B restored"
    assert restic.restore_progress('{"message_type":"summary"}') is None


def test_backup_progress_in_human_units():
    status = ('{"message_type":"status","seconds_elapsed":60,"seconds_remaining":4980,"percent_done":0.0123,'
              '"total_files":120,"files_done":3,"total_bytes":3221225472,"bytes_done":39621017,'
              '"current_files":["/data/big.bin"]}')
    progress = restic.backup_progress(status)
    assert progress == "1%: 37.8 MiB of 3.0 GiB read, about 1 h 23 min left"
    assert progress.fraction == 0.0123 and not progress.final
    # a command's output (PostgreSQL's dump): restic knows no total, and its time left is nonsense
    dump = ('{"message_type":"status","seconds_elapsed":3,"seconds_remaining":191732119065,"percent_done":0,'
            '"total_files":1,"bytes_done":288634303,"current_files":["/dump.sql"]}')
    assert restic.backup_progress(dump) == "275.3 MiB read" and restic.backup_progress(dump).fraction is None
    # still scanning: no total yet, no time left known
    assert restic.backup_progress('{"message_type":"status","percent_done":0}') == "0 B read"


def test_backup_summary_is_what_the_job_read_and_added():
    summary = ('{"message_type":"summary","files_new":1,"data_added":300013797,"data_added_packed":126470,'
               '"total_files_processed":1,"total_bytes_processed":2345678,"snapshot_id":"ca53eabd"}')
    said = restic.backup_progress(summary)
    assert said == "2.2 MiB read, 123.5 KiB added" and said.final
    assert restic.backup_progress('{"message_type":"error","error":{"message":"denied"}}') is None
    assert restic.backup_progress("not json") is None


def test_restore_summary_is_what_the_job_restored():
    said = restic.restore_progress('{"message_type":"summary","total_files":3,"files_restored":3,'
                                   '"total_bytes":300000000,"bytes_restored":300000000}')
    assert said == "286.1 MiB restored" and said.final and said.fraction == 1.0




SNAPSHOT = ('{"time":"2026-11-30T04:30:30.601092348Z","tree":"7846d35b","paths":["/data"],"hostname":"homeserver",'
            '"tags":["postgres-manifest","for:abc"],"id":"e865ce704193a6b9","short_id":"e865ce70"}')


def test_snapshots_parse_into_typed_snapshots():
    [snapshot] = restic.parse_snapshots([f"[{SNAPSHOT}]"])
    assert (snapshot.id, snapshot.short_id, snapshot.paths, snapshot.hostname) == (
        "e865ce704193a6b9", "e865ce70", ("/data",), "homeserver")
    assert snapshot.tag_value("for:") == "abc" and snapshot.tag_value("nope:") is None
    assert restic.parse_snapshots(["[]"]) == []


@pytest.mark.parametrize("parse, lines", [
    (restic.parse_snapshots, []),  # nothing at all is not "no snapshots"
    (restic.parse_snapshots, ["Fatal: unable to open config file"]),
    (restic.parse_snapshots, ['{"message_type":"summary"}']),
    (restic.parse_snapshots, ['[{"id":"abc"}]']),  # a snapshot without its time
    (restic.parse_snapshots, ["[]", "[]"]),
    (restic.parse_backup, ['{"message_type":"status","percent_done":1}']),
    (restic.parse_backup, ['{"message_type":"summary","total_files_processed":1}']),
    (restic.parse_stats, []),
    (restic.parse_stats, ['{"total_size":"12","snapshots_count":1}']),
    (restic.parse_forget, ['[{"keep":"everything"}]']),
    (restic.parse_forget, ["not json"]),
    (restic.parse_ls, ['{"name":"a","type":"file","path":"/a"}']),  # no snapshot line first
    (restic.parse_locks, ["stray text"]),
    (restic.parse_locks, ["lock 0a1b", "{not json"]),
])
def test_output_that_is_not_what_restic_documents_raises(parse, lines):
    with pytest.raises(OutputError):
        parse(lines)


def test_backup_summary_prefers_the_packed_size():
    summary = restic.parse_backup(['{"message_type":"status","percent_done":0.5}', SUMMARY_LINE])
    assert summary.snapshot_id.startswith("07fbd234") and summary.bytes_added == 957
    assert (summary.files_processed, summary.bytes_processed) == (1, 3)
    assert summary.raw["data_added"] == 1056


def test_stats_are_found_after_a_backup_summary():
    stats = restic.parse_stats([SUMMARY_LINE, '{"total_size":985,"total_uncompressed_size":1871,'
                                '"compression_ratio":1.899,"compression_space_saving":47.35,"snapshots_count":1}'])
    assert (stats.total_size, stats.uncompressed_size, stats.snapshots) == (985, 1871, 1)
    restore_size = restic.parse_stats(['{"total_size":3,"total_file_count":5,"snapshots_count":1}'])
    assert restore_size.uncompressed_size is None and restore_size.compression_ratio is None


def test_forget_groups_keep_and_remove():
    [group] = restic.parse_forget([f'[{{"tags":null,"keep":[{SNAPSHOT}],"remove":null}}]'])
    assert [s.short_id for s in group.keep] == ["e865ce70"] and group.remove == ()


def test_ls_lists_nodes_after_the_snapshot_line():
    nodes = restic.parse_ls([SNAPSHOT, '{"name":"a","type":"file","path":"/data/a","size":3,"message_type":"node"}',
                             '{"name":"l","type":"symlink","path":"/data/l","message_type":"node"}'])
    assert nodes == [restic.Node("/data/a", "file", 3), restic.Node("/data/l", "symlink", None)]


# Browsing: sizes in the snapshot list, one file, only some paths --------------------------------------

SNAPSHOT_WITH_SUMMARY = ('{"time":"2026-11-30T02:00:01.5Z","tree":"t","paths":["/minio"],"tags":["minio"],'
                         '"id":"4060433d15fae0bd","short_id":"4060433d","summary":{"files_new":8,'
                         '"total_files_processed":8,"total_bytes_processed":17}}')


def test_a_snapshot_carries_the_size_its_backup_read_when_restic_recorded_it():
    old = '{"time":"2026-11-29T02:00:00Z","tree":"t","id":"aaaa"}'  # restic < 0.17: no summary
    listed = restic.parse_snapshots([f"[{SNAPSHOT_WITH_SUMMARY},{old}]"])
    assert [(s.short_id, s.size) for s in listed] == [("4060433d", 17), ("aaaa", None)]


def test_a_summary_without_its_size_is_unreadable_not_unknown():
    broken = SNAPSHOT_WITH_SUMMARY.replace('"total_bytes_processed":17', '"total_bytes_processed":"17"')
    with pytest.raises(OutputError, match="snapshot summary: 'total_bytes_processed'"):
        restic.parse_snapshots([f"[{broken}]"])


def test_include_patterns_match_names_literally():
    assert restic.include_pattern("/minio/objects/photos") == "/minio/objects/photos"
    assert restic.include_pattern("/minio/objects/we[ir]d*/x?", prefix=True) == r"/minio/objects/we\[ir]d\*/x\?*"
    assert restic.include_pattern("/data/a\\b") == "/data/a\\\\b"


def test_dump_reads_one_file_without_a_lock(repo):
    argv = restic.dump(repo, "4060433d", "/sidecar/postgres-manifest.json")
    assert argv[-3:] == ["dump", "4060433d", "/sidecar/postgres-manifest.json"]
    assert "--no-lock" in argv and PASSWORD not in " ".join(argv)


def test_ls_reads_modes_owners_and_times_of_nodes():
    setuid_program = 0o755 | 1 << 23  # Go's os.FileMode keeps setuid apart from the permission bits
    setgid_dir = 0o2775 & 0o777 | 1 << 31 | 1 << 22
    nodes = restic.parse_ls([SNAPSHOT,
                             f'{{"type":"file","path":"/data/p","size":1,"mode":{setuid_program},"uid":0,"gid":0,'
                             '"mtime":"2026-11-30T08:00:00.5Z","ctime":"2026-11-30T08:00:01Z"}',
                             f'{{"type":"dir","path":"/data/d","mode":{setgid_dir},"uid":2000,"gid":1234}}'])
    assert (nodes[0].mode, nodes[0].uid, nodes[0].ctime) == (0o4755, 0, "2026-11-30T08:00:01Z")
    assert (nodes[1].mode, nodes[1].uid, nodes[1].gid) == (0o2775, 2000, 1234)
    with pytest.raises(restic.OutputError, match="uid is not a number"):
        restic.parse_ls([SNAPSHOT, '{"type":"file","path":"/data/p","uid":"root"}'])


def test_a_sidecar_summary_is_read_only_from_its_wrapper():
    data = '{"message_type":"summary","snapshot_id":"ffff","total_files_processed":1,"total_bytes_processed":9,' \
           '"data_added":9}'
    beside = '{"message_type":"sidecar","message":{"message_type":"summary","snapshot_id":"eeee",' \
             '"total_files_processed":1,"total_bytes_processed":3,"data_added":3}}'
    assert restic.parse_backup([data, beside]).snapshot_id == "ffff"
    assert restic.parse_sidecar([data, beside]).snapshot_id == "eeee"
    with pytest.raises(restic.OutputError):
        restic.parse_sidecar([data])  # the backup's own summary is not the sidecar's
    with pytest.raises(restic.OutputError):
        restic.parse_sidecar([data, '{"message_type":"sidecar","message":{"message_type":"error"}}'])


def test_a_snapshot_names_its_manifest_by_its_run_tag_or_else_its_backup_id():
    linked = restic.Snapshot("aaaa", "2026-11-30T02:00:00Z", tags=("postgres", "run:1234abcd"), original="bbbb")
    older = restic.Snapshot("cccc", "2026-11-30T02:00:00Z", tags=("postgres",), original="dddd")
    assert linked.manifest_key == "1234abcd" and older.manifest_key == "dddd"
