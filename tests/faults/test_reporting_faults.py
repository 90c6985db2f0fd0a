"""Faults in what reports the runs: a broken history, a full state disk, a mail server that is down,
a unit that failed without its runner reporting, a restore test that never ran."""

from datetime import UTC, datetime, timedelta

import pytest
from aiosmtpd.controller import Controller

from runner.monitoring.history import History
from runner.results import RunResult, Status
from tests.faults.harness import Scenario, small_disk


@pytest.fixture
def scenario(settings, tmp_path, smtp, engine):
    return Scenario(settings, tmp_path, smtp, engine)


def failing(scenario):
    """Files backed up to a good destination and to one whose repository is missing."""
    scenario.configure(destinations={"local": scenario.local(), "other": scenario.local("other")})
    assert scenario.run("repo", "init", "--destination", "local").code == 0


def test_corrupt_history_still_alerts_and_reports(scenario):
    failing(scenario)
    history = scenario.root / "state" / "history.sqlite"
    history.parent.mkdir(parents=True, exist_ok=True)
    history.write_bytes(b"this is not a SQLite database " * 100)
    outcome = scenario.run("exec", "backup")
    assert outcome.code == 1  # the exit code still tells the truth
    assert outcome.status("files", "local") == "ok" and outcome.status("files", "other") == "repository missing"
    assert len(scenario.snapshots("files", "local")) == 1
    mail = scenario.assert_alerted_once("run history unusable", "-", "-")
    assert str(history) in mail
    scenario.assert_alerted_once("backup failed", "files", "other")  # sent without the history's bookkeeping
    assert "could not record" in outcome.output


@pytest.fixture
def full_state(scenario):
    with small_disk(scenario.root / "state", "1m") as state:
        yield state


def test_full_state_disk_fails_the_jobs_and_the_alert_still_goes_out(scenario, full_state):
    failing(scenario)  # repo init wrote the history before the disk filled up
    with open(full_state / "filler", "wb") as filler:
        try:
            while True:
                filler.write(b"\0" * 65536)
        except OSError:
            pass
    outcome = scenario.run("exec", "backup")
    assert outcome.code == 1
    assert {outcome.status("files", d) for d in ("local", "other")} <= {"failed", "repository missing"}
    subjects = scenario.subjects()
    assert any("files on other" in subject for subject in subjects), subjects
    assert any("run history unusable" in subject for subject in subjects), subjects


def test_alert_mail_refused_is_sent_with_the_next_report(scenario, smtp):
    failing(scenario)
    smtp.stop()  # the mail server is down tonight
    assert scenario.run("exec", "backup").code == 1
    assert scenario.subjects() == []
    back = Controller(smtp.handler, hostname="127.0.0.1", port=smtp.port)
    back.start()
    try:
        assert scenario.run("status").code == 1  # the hourly status run reports again
        scenario.assert_alerted_once("backup failed", "files", "other")
        assert scenario.run("status").code == 1
        scenario.assert_alerted_once("backup failed", "files", "other")  # and only once
    finally:
        back.stop()


def test_a_unit_that_fails_without_reporting_is_alerted_even_after_other_runs(scenario):
    failing(scenario)
    vault_unit, postgres_unit = "offsite-backup-vault.service", "offsite-backup-postgres.service"
    ran = scenario.run("exec", "backup", env={"OFFSITE_BACKUP_UNIT": vault_unit})
    assert ran.code == 1  # one unit ran at 01:00 and reported its own failure...
    scenario.assert_alerted_once("backup failed", "files", "other")
    assert scenario.run("notify", "unit-failed", vault_unit).code == 0
    assert not [s for s in scenario.subjects() if vault_unit in s]  # ...which is not alerted twice
    # the next unit's runner never started (its image was missing, say) and systemd ran the alert unit
    assert scenario.run("notify", "unit-failed", postgres_unit).code == 0
    mail = scenario.assert_alerted_once("runner did not report", postgres_unit, "-")
    assert "did not start" in mail and f"journalctl -u {postgres_unit}" in mail
    assert scenario.run("notify", "unit-failed", postgres_unit).code == 0
    scenario.assert_alerted_once("runner did not report", postgres_unit, "-")  # once


def test_a_restore_test_that_never_ran_makes_the_status_unhealthy(scenario):
    scenario.configure()
    history = History(scenario.root / "state" / "history.sqlite")
    month_ago = datetime.now(UTC) - timedelta(days=40)
    history.record("backup", RunResult("files", "local", Status.OK, "first backup", figures={
        "total_bytes_processed": 1000}, duration=5), ended_at=month_ago)
    history.record("backup", RunResult("files", "local", Status.OK, "last night", figures={
        "total_bytes_processed": 1000}, duration=5))
    status = scenario.run("status")
    assert status.code == 1 and "overdue" in status.output
    mail = scenario.assert_alerted_once("restore test overdue", "files", "local")
    assert "runner exec restore-test files" in mail
    assert scenario.run("repo", "init").code == 0 and scenario.run("exec", "backup").code == 0
    tested = scenario.run("exec", "restore-test", "files")
    assert tested.code == 0, tested.output[-3000:]
    scenario.assert_alerted_once("restore test overdue", "files", "local", event="RESOLVED")
    assert scenario.run("status").code == 0
