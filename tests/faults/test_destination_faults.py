"""Faults at a destination, or in what reaching it needs: that destination fails (or is put off),
alerted once; the other destination still gets its backup."""

import json
import os

import pytest

from tests.faults.harness import Scenario
from tests.integration.conftest import private_file, run_tools
from tests.integration.nas import NasContainer, make_identity


@pytest.fixture(scope="module")
def identity(tmp_path_factory, engine, settings):
    return make_identity(tmp_path_factory.mktemp("ssh"), settings)


@pytest.fixture(scope="module")
def nas(testcontainers_env, settings, identity):
    with NasContainer(settings, identity) as container:
        yield container


@pytest.fixture
def scenario(settings, tmp_path, smtp, engine):
    return Scenario(settings, tmp_path, smtp, engine)


def nas_destination(scenario, nas, identity, request, known_hosts: str | None = None, **options) -> dict:
    hosts = private_file(scenario.root / "known_hosts", known_hosts or nas.known_hosts_line(), scenario.base)
    scenario.secrets.append(identity.private_key.read_text().strip())
    path = f"/backups/homeserver/{request.node.name[:40]}/{{source}}"
    return {"kind": "nas", "host": nas.address, "private_key_file": str(identity.private_key),
            "known_hosts_file": str(hosts), "connect_timeout": 3, "bandwidth_limit": 0, "path": path, **options}


def both(scenario, nas_config) -> dict:
    return {"local": scenario.local(), "nas": nas_config}


def assert_local_backed_up(scenario, outcome):
    assert outcome.status("files", "local") == "ok", outcome.message("files", "local")
    assert scenario.recorded("backup", "files", "local") == "ok"
    assert len(scenario.snapshots("files", "local")) >= 1
    scenario.assert_check_clean("files", "local")
    assert not [s for s in scenario.subjects() if s.endswith("files on local")]


def test_nas_down_fails_fast_and_local_succeeds(scenario, settings, identity, request, testcontainers_env):
    with NasContainer(settings, identity) as down:
        scenario.configure(destinations=both(scenario, nas_destination(scenario, down, identity, request)))
        assert scenario.run("repo", "init").code == 0
    outcome = scenario.run("exec", "backup")  # the NAS container is gone now
    assert outcome.code == 1
    assert outcome.status("files", "nas") == "destination unavailable"
    assert scenario.recorded("backup", "files", "nas") == "destination unavailable"
    scenario.assert_alerted_once("backup failed", "files", "nas")
    assert_local_backed_up(scenario, outcome)


def test_nas_hung_fails_at_the_connect_timeout(scenario, nas, identity, request):
    scenario.configure(destinations=both(scenario, nas_destination(scenario, nas, identity, request)))
    assert scenario.run("repo", "init").code == 0
    nas.get_wrapped_container().pause()
    try:
        outcome = scenario.run("exec", "backup")
    finally:
        nas.get_wrapped_container().unpause()
    assert outcome.code == 1
    assert outcome.status("files", "nas") == "destination unavailable"
    assert "did not answer within 3 s" in outcome.message("files", "nas")
    scenario.assert_alerted_once("backup failed", "files", "nas")
    assert_local_backed_up(scenario, outcome)
    assert scenario.snapshots("files", "nas") == []


def test_nas_full_fails_the_upload_and_stores_nothing_half(scenario, settings, identity, request, testcontainers_env):
    full = NasContainer(settings, identity)
    full.tmpfs["/backups"] = "size=2m"  # a NAS disk with 2 MB free
    with full:
        full.exec("chown backup:backup /backups")
        scenario.configure(destinations=both(scenario, nas_destination(
            scenario, full, identity, request, path="/backups/{source}")))
        initialized = scenario.run("repo", "init")
        assert initialized.code == 0, initialized.message("files", "nas")
        (scenario.data / "large.bin").write_bytes(os.urandom(6_000_000))
        outcome = scenario.run("exec", "backup")
        assert outcome.code == 1
        assert outcome.status("files", "nas") == "failed"
        assert "no space left" in outcome.message("files", "nas").lower()
        assert scenario.snapshots("files", "nas") == []
        scenario.assert_check_clean("files", "nas")
    scenario.assert_alerted_once("backup failed", "files", "nas")
    assert_local_backed_up(scenario, outcome)


def test_changed_nas_host_key_is_refused(scenario, nas, identity, request, settings):
    other = make_identity(scenario.root / "other", settings, "other_host_key")
    kind, key = other.public_key.split()[:2]
    scenario.configure(destinations=both(scenario, nas_destination(
        scenario, nas, identity, request, known_hosts=f"{nas.address} {kind} {key}\n")))
    before = nas.files()
    outcome = scenario.run("exec", "backup")
    assert outcome.code == 1
    assert "Host key verification failed" in outcome.message("files", "nas")
    assert nas.files() == before  # nothing written to a host that may not be the NAS
    scenario.assert_alerted_once("backup failed", "files", "nas")


def test_wrong_repository_password_fails_that_repository_only(scenario):
    scenario.configure(destinations={"local": scenario.local(), "other": scenario.local(
        "other", password_file=str(scenario.root / "other-{source}.password"))})
    scenario.secret(scenario.root / "other-files.password", "the password the repository was made with")
    assert scenario.run("repo", "init").code == 0
    wrong = scenario.root / "other-files.password"
    wrong.chmod(0o600)
    wrong.write_text("not the password it was made with")
    scenario.secrets.append("not the password it was made with")
    outcome = scenario.run("exec", "backup")
    assert outcome.code == 1
    assert outcome.status("files", "other") == "failed" and "wrong password" in outcome.message("files", "other")
    scenario.assert_alerted_once("backup failed", "files", "other")
    assert_local_backed_up(scenario, outcome)


def test_missing_repository_is_not_created_by_a_backup(scenario):
    scenario.configure(destinations={"local": scenario.local(), "other": scenario.local("other")})
    assert scenario.run("repo", "init", "--destination", "local").code == 0
    outcome = scenario.run("exec", "backup")
    assert outcome.code == 1
    assert outcome.status("files", "other") == "repository missing"
    assert "runner repo init --destination other --source files" in outcome.message("files", "other")
    assert not (scenario.root / "repos" / "other").exists()
    scenario.assert_alerted_once("backup failed", "files", "other")
    assert_local_backed_up(scenario, outcome)


@pytest.mark.parametrize("fault, expected", [
    ("unrendered", "contains '<no value>'"),
    ("readable", "readable by group or others"),
])
def test_a_bad_secret_file_is_refused_by_name(scenario, fault, expected):
    scenario.configure(destinations={"local": scenario.local(), "other": scenario.local(
        "other", password_file=str(scenario.root / "other-{source}.password"))})
    password = scenario.secret(scenario.root / "other-files.password", "password rendered by the agent")
    assert scenario.run("repo", "init").code == 0
    password.chmod(0o600)
    if fault == "unrendered":
        password.write_text("<no value>\n")
    else:
        password.chmod(0o644)
    outcome = scenario.run("exec", "backup")
    assert outcome.code == 1
    message = outcome.message("files", "other")
    assert outcome.status("files", "other") == "destination unavailable"
    assert str(password) in message and expected in message
    scenario.assert_alerted_once("backup failed", "files", "other")
    assert_local_backed_up(scenario, outcome)


def test_exhausted_upload_quota_puts_the_backup_off(scenario):
    scenario.configure(destinations={"local": scenario.local(), "drive": scenario.local(
        "drive", daily_upload_quota="100KB")})
    assert scenario.run("repo", "init").code == 0
    assert scenario.run("exec", "backup").code == 0  # the day's first upload is let through
    outcome = scenario.run("exec", "backup")
    assert outcome.code == 75  # nothing failed, something was put off
    assert outcome.status("files", "drive") == "deferred by quota"
    assert scenario.recorded("backup", "files", "drive") == "deferred by quota"
    scenario.assert_alerted_once("backup deferred by quota", "files", "drive")
    assert outcome.status("files", "local") == "ok"


def test_corrupt_upload_ledger_fails_only_where_a_quota_needs_it(scenario):
    scenario.configure(destinations={"local": scenario.local(), "drive": scenario.local(
        "drive", daily_upload_quota="750GB")})
    assert scenario.run("repo", "init").code == 0
    ledger = scenario.root / "state" / "upload-ledger.json"
    ledger.parent.mkdir(exist_ok=True)
    ledger.write_text('{"version": 1, "uploads": [{"day": "2026-11')  # cut off mid-write
    outcome = scenario.run("exec", "backup")
    assert outcome.code == 1
    assert outcome.status("files", "drive") == "failed"
    assert "today's uploads are unknown" in outcome.message("files", "drive") and str(ledger) in outcome.message(
        "files", "drive")
    assert scenario.snapshots("files", "drive") == []
    scenario.assert_alerted_once("backup failed", "files", "drive")
    assert outcome.status("files", "local") == "ok"
    assert "upload ledger was not updated" in outcome.message("files", "local")
    assert len(scenario.snapshots("files", "local")) == 1
    json.loads(json.dumps(outcome.results[("files", "local")]))  # the run is reported whole


def test_a_nas_key_that_is_not_ed25519_is_refused(scenario, nas, identity, request, settings):
    keys = scenario.root / "rsa"
    keys.mkdir()
    run_tools(settings, "ssh-keygen", "-q", "-t", "rsa", "-b", "2048", "-N", "", "-f", "/out/id_rsa",
              mounts=(f"{keys}:/out",))
    key = scenario.secret(keys / "id_rsa", (keys / "id_rsa").read_text())
    scenario.configure(destinations=both(scenario, nas_destination(scenario, nas, identity, request,
                                                                   private_key_file=str(key))))
    before = nas.files()
    outcome = scenario.run("exec", "backup")
    assert outcome.code == 1
    assert outcome.status("files", "nas") == "destination unavailable"
    assert str(key) in outcome.message("files", "nas") and "ed25519" in outcome.message("files", "nas")
    assert nas.files() == before  # refused before the NAS was contacted
    scenario.assert_alerted_once("backup failed", "files", "nas")
