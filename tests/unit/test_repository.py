"""The repository handle over a stubbed Podman engine: restic's output becomes typed results, and
anything restic does not document raises instead of turning into an empty answer."""

import ast
import json

import pytest

from runner.destinations import Local, RepositoryAccess
from runner.engine import JobResult
from runner.repository import Repository, RepositoryError, SnapshotNotFound
from runner.restic import Repository as ResticRepository
from runner.restic import Snapshot
from runner.results import Status
from runner.settings import LocalDestination, Settings
from tests.conftest import PROJECT_ROOT

SNAPSHOT = '{"time":"2026-11-%02dT01:00:00Z","tree":"t","paths":["/vault"],"tags":["vault"],"id":"%s"}'


class StubEngine:
    """Answers each job with the next scripted (exit code, stdout lines); records the jobs."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.jobs = []

    def run(self, spec):
        self.jobs.append(spec)
        code, stdout = self.answers.pop(0)
        return JobResult(spec.name, "c", code, code is None, 1.5, list(stdout), [], list(stdout))


def handle(engine, tmp_path) -> Repository:
    settings = Settings(paths={"state_dir": tmp_path, "staging_dir": tmp_path, "cache_dir": tmp_path,
                               "secrets_dir": tmp_path})
    destination = Local("local", LocalDestination(kind="local", path=str(tmp_path / "{source}")), settings)
    access = RepositoryAccess("local", "vault", str(tmp_path / "vault"), ResticRepository("/repo", "/pw"), ())
    return Repository(engine, destination, access)


def test_snapshots_are_typed_and_the_newest_is_found(tmp_path):
    listing = f"[{SNAPSHOT % (1, 'aaaa1111')},{SNAPSHOT % (3, 'cccc3333')},{SNAPSHOT % (2, 'bbbb2222')}]"
    repository = handle(StubEngine((0, [listing]), (0, [listing]), (0, ["[]"])), tmp_path)
    assert repository.find("vault").id == "cccc3333"
    assert repository.find("vault", "bbbb").id == "bbbb2222"
    with pytest.raises(SnapshotNotFound, match="no vault snapshot in"):
        repository.find("vault")


@pytest.mark.parametrize("stdout", [[], ["Fatal: something unexpected"], ['{"message_type":"summary"}']])
def test_unreadable_snapshot_listing_raises_instead_of_meaning_none(tmp_path, stdout):
    with pytest.raises(RepositoryError, match="could not be read") as caught:
        handle(StubEngine((0, stdout)), tmp_path).snapshots("vault")
    assert caught.value.status is Status.FAILED


def test_restic_failures_become_statuses_and_messages(tmp_path):
    missing = '{"message_type":"exit_error","code":10,"message":"Fatal: repository does not exist"}'
    wrong = '{"message_type":"exit_error","code":12,"message":"Fatal: wrong password or no key found"}'
    repository = handle(StubEngine((10, [missing]), (12, [wrong]), (None, [])), tmp_path)
    for status, text in [(Status.REPOSITORY_MISSING, "runner repo init --destination local --source vault"),
                         (Status.FAILED, "wrong password"), (Status.TIMED_OUT, "timed out")]:
        with pytest.raises(RepositoryError) as caught:
            repository.stats()
        assert caught.value.status is status and text in caught.value.message


def test_a_missing_repository_is_not_an_error_when_asking_whether_it_exists(tmp_path):
    repository = handle(StubEngine((0, ['{"version":2}']), (10, []), (12, [])), tmp_path)
    assert repository.exists() is True
    assert repository.exists() is False
    with pytest.raises(RepositoryError):
        repository.exists()


def test_check_problems_are_an_outcome_a_lock_is_an_error(tmp_path):
    clean = '{"message_type":"summary","num_errors":0,"broken_packs":null}'
    damaged = ['{"message_type":"error","message":"pack 3f2a5c: unexpected file size\\n"}',
               '{"message_type":"summary","num_errors":1,"broken_packs":["3f2a5c77"]}',
               '{"message_type":"exit_error","code":1,"message":"Fatal: repository contains errors"}']
    unreachable = ['{"message_type":"exit_error","code":1,"message":"Fatal: unable to open repository"}']
    repository = handle(StubEngine((0, [clean]), (1, damaged), (11, []), (1, unreachable), (0, [])), tmp_path)
    assert repository.check("1/8").passed
    failed = repository.check("1/8")
    assert not failed.passed
    assert failed.problems == ("1 error(s)", "pack 3f2a5c: unexpected file size", "broken packs: 3f2a5c77")
    with pytest.raises(RepositoryError, match="lock"):
        repository.check("1/8")
    with pytest.raises(RepositoryError, match="unable to open repository") as caught:
        repository.check("1/8")  # not a verdict on the data: the check could not run
    assert caught.value.status is Status.FAILED
    with pytest.raises(RepositoryError, match="could not be read"):
        repository.check("1/8")  # exit 0 without a report is not a pass


def test_backup_with_a_sidecar_links_both_snapshots_and_measures_the_repository_alongside(tmp_path):
    summary = ('{"message_type":"summary","snapshot_id":"ffff","total_files_processed":1,'
               '"total_bytes_processed":10,"data_added":100,"data_added_packed":50}')
    beside = ('{"message_type":"sidecar","message":{"message_type":"summary","snapshot_id":"eeee",'
              '"total_files_processed":1,"total_bytes_processed":3,"data_added":8,"data_added_packed":5}}')
    stats = '{"total_size":955,"snapshots_count":6,"total_uncompressed_size":1908}'
    repository = handle(StubEngine((0, [summary, beside, stats]), (0, [summary, beside]), (86, [summary]),
                                   (1, ['{"message_type":"exit_error","code":1,"message":"Fatal: boom"}'])), tmp_path)
    stored = repository.backup(tags=["postgres"], command=["dump"], filename="d.sql", sidecar="/m/manifest.json",
                               measure=True)
    assert stored.summary.snapshot_id == "ffff" and stored.sidecar.snapshot_id == "eeee" and stored.bytes_added == 55
    assert stored.measured.total_size == 955 and stored.measured.snapshots == 6
    argv = repository.engine.jobs[0].argv
    assert argv[0] == "backup-with-sidecar"
    spec = json.loads(argv[1])
    [key] = [tag.removeprefix("run:") for tag in spec["backup"] if tag.startswith("run:")]
    assert f"for:{key}" in spec["sidecar"] and "postgres-manifest" in spec["sidecar"]
    assert spec["sidecar"][-3:] == ["backup-with-sidecar", "--release", "/m/manifest.json"]
    assert spec["stats"][-3:] == ["stats", "--mode", "raw-data"]
    unmeasured = repository.backup(tags=["postgres"], command=["dump"], filename="d.sql", sidecar="/m/manifest.json",
                                   measure=True)
    assert unmeasured.measured is None  # the size unknown: a warning, the backup stored
    half = repository.backup(tags=["postgres"], command=["dump"], filename="d.sql", sidecar="/m/manifest.json")
    assert half.summary.snapshot_id == "ffff" and half.sidecar is None
    assert "ffff was stored, but its manifest could not be" in half.sidecar_problem
    with pytest.raises(RepositoryError, match="boom"):
        repository.backup(tags=["postgres"], command=["dump"], filename="d.sql", sidecar="/m/manifest.json")


def test_a_backup_without_sidecar_or_measuring_is_restic_alone(tmp_path):
    summary = ('{"message_type":"summary","snapshot_id":"ffff","total_files_processed":1,'
               '"total_bytes_processed":10,"data_added":100}')
    repository = handle(StubEngine((0, [summary])), tmp_path)
    stored = repository.backup(tags=["vault"], paths=["/staged"])
    assert repository.engine.jobs[0].argv[0] == "restic" and stored.sidecar is None and stored.measured is None


def test_forget_reports_kept_and_removed(tmp_path):
    report = (f'[{{"keep":[{SNAPSHOT % (3, "cccc3333")}],'
              f'"remove":[{SNAPSHOT % (1, "aaaa1111")},{SNAPSHOT % (2, "bbbb2222")}]}}]')
    forgotten = handle(StubEngine((0, [report])), tmp_path).forget(Settings().retention, "vault")
    assert [s.id for s in forgotten.kept] == ["cccc3333"]
    assert [s.id for s in forgotten.removed] == ["aaaa1111", "bbbb2222"]


def test_only_the_repository_handle_parses_restic_output():
    """restic.py holds the parsers; repository.py is the one module that calls them."""
    offenders = []
    for path in (PROJECT_ROOT / "runner").rglob("*.py"):
        if path.name in ("restic.py", "repository.py") and path.parent.name == "runner":
            continue
        tree = ast.parse(path.read_text())
        used = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name) and node.value.id == "restic"}
        used |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                 and node.module == "runner.restic" for alias in node.names}
        parsing = sorted(name for name in used if name.startswith("parse") or name in ("Output", "restore_progress"))
        if parsing:
            offenders.append(f"{path.relative_to(PROJECT_ROOT)}: {', '.join(parsing)}")
    assert offenders == []


def test_a_restore_gets_the_snapshot_meant_or_none(tmp_path):
    listing = f"[{SNAPSHOT % (1, 'abcd1111')},{SNAPSHOT % (2, 'abcd2222')},{SNAPSHOT % (3, 'ffff3333')}]"
    repository = handle(StubEngine(*[(0, [listing])] * 4), tmp_path)
    assert repository.pick("vault", "abcd2").id == "abcd2222"
    assert repository.pick("vault").id == "ffff3333"
    with pytest.raises(RepositoryError, match="abcd is ambiguous in .*: 2 vault snapshots start with it "
                                              r"\(abcd1111 of 2026-11-01T01:00:00, abcd2222 of"):
        repository.pick("vault", "abcd")


def test_one_file_is_dumped_to_the_work_directory_and_a_missing_one_fails(tmp_path):
    missing = '{"message_type":"exit_error","code":1,"message":"Fatal: cannot dump file: path \\"/x\\" not found"}'
    repository = handle(StubEngine((0, []), (1, [missing])), tmp_path)
    snapshot = Snapshot("abcd1234", "2026-11-30T02:00:00Z")
    assert repository.dump(snapshot, "/sidecar/postgres-manifest.json", tmp_path / "work") \
        == tmp_path / "work" / "postgres-manifest.json"
    job = repository.engine.jobs[0]
    assert job.argv[:4] == ("sh", "-c", 'exec "$@" > "$0"', "/dumped/postgres-manifest.json")
    assert job.argv[-3:] == ("dump", "abcd1234", "/sidecar/postgres-manifest.json")
    assert any(m.source == tmp_path / "work" and not m.read_only for m in job.mounts)
    with pytest.raises(RepositoryError, match="not found"):
        repository.dump(snapshot, "/x", tmp_path / "work")


def test_only_the_included_paths_are_restored(tmp_path):
    repository = handle(StubEngine((0, [])), tmp_path)
    repository.restore_only(Snapshot("abcd1234", "t"), tmp_path / "target", ["/minio/manifest.json", "/minio/x*"])
    argv = repository.engine.jobs[0].argv
    assert argv[argv.index("restore"):] == ("restore", "abcd1234", "--target", "/restore", "--include",
                                            "/minio/manifest.json", "--include", "/minio/x*")
    with pytest.raises(ValueError):
        repository.restore_only(Snapshot("abcd1234", "t"), tmp_path / "target", [])
