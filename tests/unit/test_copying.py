"""Copies between destinations and the restore tests' rotation, without Podman: which copies run in which
order, the one job container that reaches both repositories, copy_from's validation, and which destination
each restore test visits."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from runner import destinations
from runner.copying import ORIGIN_PASSWORD, ORIGIN_ROOT, CopyError, backed_up, combined_job, routes
from runner.destinations import CACHE, LOCAL_REPO, PASSWORD, Nas
from runner.monitoring.history import History
from runner.monitoring.status import next_restore_test, overview, restore_test_rotation
from runner.repository import Repository
from runner.restic import parse_snapshots
from runner.restoring import restore_test_destination
from runner.results import RunResult, Status
from runner.settings import ConfigError, Settings, load_settings

NOW = datetime(2026, 11, 30, 3, 0, tzinfo=UTC)


def settings_with(tmp_path, **destination_configs) -> Settings:
    return Settings(paths={"state_dir": tmp_path / "state", "staging_dir": tmp_path / "staging",
                           "cache_dir": tmp_path / "cache", "secrets_dir": tmp_path / "secrets"},
                    destinations=destination_configs, sources={"files": {"paths": [str(tmp_path)]}})


def secret(path: Path, content: str = "x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    path.chmod(0o400)
    return path


def local(tmp_path, name: str, **overrides) -> dict:
    (tmp_path / name / "files").mkdir(parents=True, exist_ok=True)
    (tmp_path / name / "files" / "config").write_text("")
    return {"kind": "local", "path": str(tmp_path / name / "{source}"), **overrides}


def nas(**overrides) -> dict:
    return {"kind": "nas", "host": "nas.tail.ts.net", **overrides}


def handles(settings: Settings, origin: str, target: str) -> tuple[Repository, Repository]:
    secret(settings.paths.secrets_dir / "restic-files.password")
    for name in (origin, target):
        if settings.destinations[name].kind == "nas":
            secret(settings.paths.secrets_dir / f"{name}-ssh-key")
            secret(settings.paths.secrets_dir / f"{name}-known_hosts")
    found = {d.name: d for d in destinations.configured(settings, [origin, target])}
    return (Repository(None, found[origin], found[origin].access("files")),  # type: ignore[arg-type]
            Repository(None, found[target], found[target].access("files")))  # type: ignore[arg-type]


# Validation ------------------------------------------------------------------------------------


def problems_of(tmp_path, toml: str) -> list[str]:
    config = tmp_path / "runner.toml"
    config.write_text(toml)
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    return caught.value.problems


@pytest.mark.parametrize("toml, problem", [
    ('[destinations.a]\nkind = "local"\ncopy_from = "a"\n', "destinations.a.copy_from: a destination cannot be "
                                                            "filled by copying from itself"),
    ('[destinations.a]\nkind = "local"\ncopy_from = "nas"\n', "destinations.a.copy_from: no destination named 'nas'"),
    ('[destinations.a]\nkind = "local"\ncopy_from = "b"\n[destinations.b]\nkind = "local"\nenabled = false\n',
     "destinations.a.copy_from: destination 'b' is disabled"),
    ('[destinations.a]\nkind = "local"\ncopy_from = "b"\n[destinations.b]\nkind = "local"\ncopy_from = "a"\n',
     "destinations.a.copy_from: the copies go round in a circle (a <- b <- a)"),
])
def test_copy_from_must_name_another_enabled_destination_without_a_circle(tmp_path, toml, problem):
    problems = problems_of(tmp_path, toml)
    assert any(problem in found for found in problems), problems


def test_a_chain_of_copies_is_valid_and_copied_in_order(tmp_path):
    settings = settings_with(tmp_path, gdrive={"kind": "gdrive", "copy_from": "usb"}, nas=nas(),
                             usb=local(tmp_path, "usb", copy_from="nas"), spare=local(tmp_path, "spare"))
    assert [str(route) for route in routes(settings)] == ["nas -> usb", "usb -> gdrive"]
    assert [d.name for d in backed_up(destinations.configured(settings))] == ["nas", "spare"]


def test_an_explicit_copy_needs_both_ends_and_two_of_them(tmp_path):
    settings = settings_with(tmp_path, nas=nas(), usb=local(tmp_path, "usb"))
    assert [str(route) for route in routes(settings, "nas", "usb")] == ["nas -> usb"]
    assert routes(settings) == []  # nothing has copy_from
    with pytest.raises(CopyError, match="both --from and --to"):
        routes(settings, "nas", None)
    with pytest.raises(CopyError, match="cannot be copied into itself"):
        routes(settings, "usb", "usb")
    with pytest.raises(CopyError, match="no destination named elsewhere"):
        routes(settings, "nas", "elsewhere")


# The job ---------------------------------------------------------------------------------------


def test_local_to_local_moves_the_origin_repository_and_password_aside(tmp_path):
    settings = settings_with(tmp_path, one=local(tmp_path, "one"), two=local(tmp_path, "two"))
    origin, target = handles(settings, "one", "two")
    job = combined_job(target, origin)
    mounts = {mount.target: mount for mount in job.mounts}
    assert mounts[LOCAL_REPO].source == tmp_path / "two" / "files"
    assert mounts[ORIGIN_ROOT + LOCAL_REPO].source == tmp_path / "one" / "files"
    assert mounts[ORIGIN_PASSWORD].source == mounts[PASSWORD].source == tmp_path / "secrets" / "restic-files.password"
    assert [mount.target for mount in job.mounts].count(CACHE) == 1  # one cache, shared by both repositories
    argv = list(job.argv)
    assert argv[argv.index("--from-repo") + 1] == ORIGIN_ROOT + LOCAL_REPO
    assert argv[argv.index("--from-password-file") + 1] == ORIGIN_PASSWORD
    assert argv[argv.index("--repo") + 1] == LOCAL_REPO and "copy" in argv


def test_nas_to_local_keeps_the_ssh_command_and_the_lower_bandwidth_limit(tmp_path):
    settings = settings_with(tmp_path, nas=nas(bandwidth_limit="2MB"), usb=local(tmp_path, "usb"))
    origin, target = handles(settings, "nas", "usb")
    job = combined_job(target, origin)
    argv = list(job.argv)
    assert argv[argv.index("--from-repo") + 1] == "sftp:backup@nas.tail.ts.net:/backups/homeserver/files"
    option = argv[argv.index("--option") + 1]
    assert option.startswith("sftp.command=ssh ") and f"-i {Nas.KEY} " in option
    assert {Nas.KEY, Nas.KNOWN_HOSTS, LOCAL_REPO} <= {mount.target for mount in job.mounts}
    assert job.networks == ("podman",)
    assert argv[argv.index("--limit-upload") + 1] == str(2_000_000 // 1024)
    assert not any("password" in value.lower() for value in job.env.values())


def test_two_nas_cannot_share_one_ssh_command(tmp_path):
    settings = settings_with(tmp_path, nas=nas(), other=nas(host="other.tail.ts.net"))
    origin, target = handles(settings, "nas", "other")
    with pytest.raises(CopyError, match="sftp.command set differently"):
        combined_job(target, origin)


def test_manifests_of_copies_are_found_by_the_backup_id():
    listing = ('[{"time":"2026-11-30T01:00:00Z","id":"c0ffee","tags":["postgres"],"original":"beef"},'
               '{"time":"2026-11-30T01:00:01Z","id":"d00d","tags":["postgres-manifest","for:beef"],"original":"f00"},'
               '{"time":"2026-11-29T01:00:00Z","id":"beef","tags":["postgres"]}]')
    copy, manifest, backup = parse_snapshots([listing])
    assert copy.backup_id == backup.backup_id == manifest.tag_value("for:") == "beef"


# The restore tests' rotation -------------------------------------------------------------------


def test_the_destination_tested_longest_ago_comes_next_and_never_tested_first():
    rotation = ["nas", "usb", "gdrive"]
    assert next_restore_test(rotation, {}) == "nas"
    assert next_restore_test(rotation, {"nas": NOW}) == "usb"
    assert next_restore_test(rotation, {"nas": NOW, "usb": NOW - timedelta(days=1)}) == "gdrive"
    assert next_restore_test(rotation, {"nas": NOW, "usb": NOW - timedelta(days=30),
                                        "gdrive": NOW - timedelta(days=60)}) == "gdrive"
    with pytest.raises(ValueError):
        next_restore_test([], {})


def record_test(history: History, destination: str, days_ago: float, status: Status = Status.OK, source="files"):
    history.record("restore-test", RunResult(source, destination, status, "restored"),
                   ended_at=datetime.now(UTC) - timedelta(days=days_ago))


def test_each_run_visits_the_next_destination_per_source(tmp_path):
    settings = settings_with(tmp_path, nas=nas(), usb=local(tmp_path, "usb"))
    history = History(settings.paths.state_dir / "history.sqlite")
    assert restore_test_destination(settings, "files").name == "nas"
    record_test(history, "nas", 1)
    assert restore_test_destination(settings, "files").name == "usb"
    record_test(history, "usb", 0.5, Status.RESTORE_MISMATCH)  # a failed test counts as a visit too
    assert restore_test_destination(settings, "files").name == "nas"
    assert restore_test_destination(settings, "files", "usb").name == "usb"  # --destination forces one
    fixed = settings.model_copy(update={"restore_tests": settings.restore_tests.model_copy(
        update={"destination": "usb"})})
    assert restore_test_rotation(fixed) == ["usb"] and restore_test_destination(fixed, "files").name == "usb"


def test_every_destination_of_the_rotation_is_due_once_per_round(tmp_path):
    settings = settings_with(tmp_path, nas=nas(), usb=local(tmp_path, "usb"))
    history = History(settings.paths.state_dir / "history.sqlite")
    for destination in ("nas", "usb"):
        history.record("backup", RunResult("files", destination, Status.OK, "stored"),
                       ended_at=NOW - timedelta(days=100))
        history.record("backup", RunResult("files", destination, Status.OK, "stored"), ended_at=NOW)
    history.record("restore-test", RunResult("files", "nas", Status.OK, "restored"), ended_at=NOW - timedelta(days=40))
    history.record("restore-test", RunResult("files", "usb", Status.OK, "restored"), ended_at=NOW - timedelta(days=75))
    due = {state.destination: state.restore_test_overdue for state in overview(settings, history, NOW)}
    assert due == {"nas": False, "usb": True}  # two destinations in turn: each due every 2 x 35 days


def test_a_copied_destination_counts_its_copies_as_recovery_points(tmp_path):
    settings = settings_with(tmp_path, nas=nas(), usb=local(tmp_path, "usb", copy_from="nas"))
    history = History(settings.paths.state_dir / "history.sqlite")
    history.record("backup", RunResult("files", "nas", Status.OK, "stored"), ended_at=NOW - timedelta(hours=3))
    history.record("copy", RunResult("files", "usb", Status.OK, "copied"), ended_at=NOW - timedelta(hours=2))
    states = {state.destination: state for state in overview(settings, history, NOW)}
    assert states["usb"].within_rpo and states["usb"].last_outcome == "ok" and states["usb"].age_hours == 2.0
