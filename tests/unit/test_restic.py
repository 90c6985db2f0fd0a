import pytest

from runner import restic
from runner.restic import Outcome, Repository

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
