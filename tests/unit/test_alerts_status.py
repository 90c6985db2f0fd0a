"""Alert decisions, status and RPO over a real SQLite history (no containers needed)."""

from datetime import UTC, datetime, timedelta

from click.testing import CliRunner

from runner.cli import cli
from runner.monitoring import alerts
from runner.monitoring.history import History
from runner.monitoring.status import overview
from runner.results import RunResult, Status
from runner.settings import Settings
from tests.conftest import write_config

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def settings_for(tmp_path, floor: float = 0) -> Settings:
    """One source, one destination; no success-rate floor unless a test asks for one."""
    return Settings(paths={"state_dir": tmp_path}, destinations={"nas": {"kind": "local"}},
                    monitoring={"success_rate_floor": floor},
                    sources={"files": {"paths": ["/etc/hostname"]}, "vault": {"enabled": False},
                             "postgres": {"enabled": False}, "minio": {"enabled": False}})


def decide(settings, history, runs, now=None, unit=""):
    """The alerts decided and, as the runner does, delivered (to the log: no mail is configured)."""
    decided = alerts.decide(settings, history, runs, now, unit)
    assert alerts.delivered(settings, history, decided)
    return decided


def restore_tested(history, at=NOW, status=Status.OK):
    """A restore test of the source, so that only the alert under test is due."""
    history.record("restore-test", RunResult("files", "nas", status, "restored"), ended_at=at)


def backup(history, status=Status.OK, processed=1000, at=NOW):
    result = RunResult("files", "nas", status, "x", figures={"total_bytes_processed": processed}, duration=10)
    history.record("backup", result, ended_at=at)
    return ("backup", result)


def test_three_failures_one_problem_then_one_resolution(tmp_path):
    settings, history = settings_for(tmp_path), History(tmp_path / "history.sqlite")
    restore_tested(history)
    events = [decide(settings, history, [backup(history, Status.FAILED)], NOW) for _ in range(3)]
    assert [[a.event for a in e] for e in events] == [["PROBLEM"], [], []]
    assert events[0][0].kind == "backup failed"
    recovered = decide(settings, history, [backup(history)], NOW)
    assert [a.event for a in recovered] == ["RESOLVED"]
    assert decide(settings, history, [backup(history)], NOW) == []


def test_size_anomaly_only_beyond_half_and_not_on_the_first_run(tmp_path):
    settings, history = settings_for(tmp_path), History(tmp_path / "history.sqlite")
    restore_tested(history)
    assert decide(settings, history, [backup(history, processed=1000)], NOW) == []
    assert decide(settings, history, [backup(history, processed=1200)], NOW) == []  # +20 %
    [notice] = decide(settings, history, [backup(history, processed=1920)], NOW)  # +60 %
    assert notice.event == "NOTICE" and notice.kind == "backup size anomaly" and "+60%" in notice.message


def test_restore_test_failure_is_its_own_kind(tmp_path):
    settings, history = settings_for(tmp_path), History(tmp_path / "history.sqlite")
    backup(history)
    result = RunResult("files", "nas", Status.RESTORE_MISMATCH, "shop: public.t differs")
    history.record("restore-test", result, ended_at=NOW)
    [alert] = decide(settings, history, [("restore-test", result)], NOW)
    assert alert.kind == "restore test failed"


def test_a_restore_test_is_due_every_month(tmp_path):
    settings, history = settings_for(tmp_path), History(tmp_path / "history.sqlite")
    backup(history, at=NOW - timedelta(days=40))
    backup(history)
    assert not overview(settings, history, NOW - timedelta(days=20))[0].restore_test_overdue  # not due yet
    [state] = overview(settings, history, NOW)
    assert state.restore_test_overdue and not state.healthy  # never tested, 40 days after the first backup
    [due] = decide(settings, history, [], NOW)
    assert (due.event, due.kind) == ("PROBLEM", "restore test overdue") and "none has passed yet" in due.message
    assert decide(settings, history, [], NOW) == []  # announced once
    restore_tested(history, at=NOW - timedelta(days=1))
    [passed] = decide(settings, history, [], NOW)
    assert (passed.event, passed.kind) == ("RESOLVED", "restore test overdue")
    [state] = overview(settings, history, NOW + timedelta(days=36))
    assert state.restore_test_overdue  # the last one passed 37 days ago
    [elsewhere] = overview(settings_for(tmp_path).model_copy(update={"restore_tests": settings.restore_tests.model_copy(
        update={"destination": "other"})}), history, NOW)
    assert elsewhere.restore_test_overdue is None  # the tests read from another destination


def test_past_the_rpo_status_fails_and_alerts_once(tmp_path):
    settings, history = settings_for(tmp_path), History(tmp_path / "history.sqlite")
    restore_tested(history)
    backup(history, at=NOW - timedelta(hours=25))
    [state] = overview(settings, history, NOW)
    assert not state.within_rpo and state.age_hours == 25.0 and not state.healthy
    first = decide(settings, history, [], NOW)
    assert [(a.event, a.kind) for a in first] == [("PROBLEM", "recovery point objective missed")]
    assert decide(settings, history, [], NOW) == []
    config = write_config(settings, tmp_path / "runner.toml")
    result = CliRunner().invoke(cli, ["--config", str(config), "status", "--json"], prog_name="runner")
    assert result.exit_code == 1
    assert '"within_rpo": false' in result.stdout


def test_recent_success_is_healthy(tmp_path):
    settings, history = settings_for(tmp_path), History(tmp_path / "history.sqlite")
    backup(history, at=datetime.now(UTC) - timedelta(hours=2))
    restore_tested(history, at=datetime.now(UTC) - timedelta(days=20))
    config = write_config(settings, tmp_path / "runner.toml")
    result = CliRunner().invoke(cli, ["--config", str(config), "status"], prog_name="runner")
    assert result.exit_code == 0, result.output


def test_a_failed_unit_is_alerted_unless_its_runner_reported(tmp_path):
    from runner.monitoring.alerts import unit_failed

    settings, history = settings_for(tmp_path), History(tmp_path / "history.sqlite")
    unit, other = "offsite-backup-postgres.service", "offsite-backup-minio.service"
    history.end_invocation(history.start_invocation(other, "exec backup"), 0)  # another unit ran fine
    [alert] = unit_failed(settings, unit, within=3600)
    assert alert.kind == "runner did not report" and "did not start" in alert.message
    assert f"journalctl -u {unit}" in alert.message
    assert unit_failed(settings, unit, within=3600) == []  # once
    resolved = decide(settings, history, [], unit=unit)
    assert ("RESOLVED", "runner did not report") in [(a.event, a.kind) for a in resolved]

    started = history.start_invocation(unit, "exec backup")  # then killed: it never reported
    [killed] = unit_failed(settings, unit, within=3600)
    assert "never finished reporting" in killed.message
    decide(settings, history, [], unit=unit)
    history.end_invocation(started, 1)  # it reported its failures itself
    assert unit_failed(settings, unit, within=3600) == []


def test_an_alert_that_could_not_be_mailed_goes_out_with_the_next_report(tmp_path):
    import socket

    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    history = History(tmp_path / "history.sqlite")
    mailing = settings_for(tmp_path).model_copy(update={"alerts": Settings().alerts.model_copy(update={
        "email_to": ["admin@example.org"], "smtp_host": "127.0.0.1", "smtp_port": port, "smtp_login": False,
        "starttls": False})})
    restore_tested(history)
    failed = alerts.decide(mailing, history, [backup(history, Status.FAILED)], NOW)
    assert [a.kind for a in failed] == ["backup failed"]
    assert not alerts.delivered(mailing, history, failed)  # the SMTP server is down
    again = alerts.decide(mailing, history, [backup(history, Status.FAILED)], NOW)
    assert [(a.event, a.kind) for a in again] == [("PROBLEM", "backup failed")]  # still to be mailed
    assert alerts.delivered(settings_for(tmp_path), history, again)
    assert alerts.decide(mailing, history, [backup(history, Status.FAILED)], NOW) == []


def test_the_success_rate_is_computed_over_30_and_90_days_and_alerted_below_the_floor(tmp_path):
    settings, history = settings_for(tmp_path, floor=0.995), History(tmp_path / "history.sqlite")
    restore_tested(history)
    for day in range(1, 90):  # one backup a night for 89 nights: one failed 40 days ago, one 10 days ago
        failed = day in (10, 40)
        backup(history, Status.FAILED if failed else Status.OK, at=NOW - timedelta(days=day))
    backup(history, Status.DEFERRED, at=NOW - timedelta(days=5))  # put off: counts for neither side
    [state] = overview(settings, history, NOW)
    assert state.success_rate_30d == round(29 / 30, 4) and state.success_rate_90d == round(87 / 89, 4)
    assert state.below_success_floor and not state.healthy
    [low] = [a for a in decide(settings, history, [], NOW) if a.kind == "backup success rate low"]
    assert "96.7%" in low.message and "99.5%" in low.message
    later = NOW + timedelta(days=25)  # the failure of 10 days ago is now 35 days old
    for day in range(24, -1, -1):
        backup(history, at=later - timedelta(days=day))
    [state] = overview(settings, history, later)
    assert state.success_rate_30d == 1.0 and not state.below_success_floor
    resolved = decide(settings, history, [], later)
    assert ("RESOLVED", "backup success rate low") in [(a.event, a.kind) for a in resolved]


def test_the_success_rate_is_not_judged_on_fewer_runs_than_a_week(tmp_path):
    settings, history = settings_for(tmp_path, floor=0.995), History(tmp_path / "history.sqlite")
    restore_tested(history)
    for day in range(6, 0, -1):  # a new install: six runs, one failed
        backup(history, Status.FAILED if day == 3 else Status.OK, at=NOW - timedelta(days=day))
    [state] = overview(settings, history, NOW)
    assert state.success_rate_30d == round(5 / 6, 4) and not state.below_success_floor
    assert "backup success rate low" not in [a.kind for a in decide(settings, history, [], NOW)]
    backup(history, at=NOW)  # the seventh run: now the rate is judged
    [state] = overview(settings, history, NOW)
    assert state.below_success_floor
    assert "backup success rate low" in [a.kind for a in decide(settings, history, [], NOW)]


def test_a_bucket_no_backup_covers_is_noticed_once(tmp_path):
    settings, history = settings_for(tmp_path), History(tmp_path / "history.sqlite")
    restore_tested(history)

    def minio_backup(uncovered):
        result = RunResult("files", "nas", Status.OK, "x", figures={"total_bytes_processed": 10,
                                                                   "uncovered_buckets": uncovered})
        history.record("backup", result, ended_at=NOW)
        return [a for a in decide(settings, history, [("backup", result)], NOW) if "bucket" in a.kind]

    [notice] = minio_backup(["archive"])
    assert (notice.event, notice.kind) == ("NOTICE", "bucket archive not backed up")
    assert "sources.files.buckets" in notice.message
    assert minio_backup(["archive"]) == []  # once
    assert [a.kind for a in minio_backup(["archive", "scratch"])] == ["bucket scratch not backed up"]
    assert minio_backup([]) == []  # covered now: forgotten quietly
    assert [a.kind for a in minio_backup(["archive"])] == ["bucket archive not backed up"]  # back again


def test_repository_size_is_the_last_measurement_plus_what_backups_stored_since(tmp_path):
    settings, history = settings_for(tmp_path), History(tmp_path / "history.sqlite")
    [state] = overview(settings, history, NOW)
    assert state.repository_bytes is None and state.snapshots is None  # never measured: unknown, not 0
    measured = {"repository_bytes": 10_000, "snapshots": 4, "compression_ratio": 2.0}
    history.record("prune", RunResult("files", "nas", Status.OK, "pruned", figures=measured),
                   ended_at=NOW - timedelta(hours=5))
    for hours, status, manifest in ((4, Status.OK, True), (3, Status.FAILED, False), (2, Status.OK, False)):
        figures = {"total_bytes_processed": 50_000, "data_added_packed": 300}
        if manifest:
            figures.update(manifest_snapshot="eeee", manifest_added_packed=7)
        history.record("backup", RunResult("files", "nas", status, "x", figures=figures),
                       ended_at=NOW - timedelta(hours=hours))
    [state] = overview(settings, history, NOW)
    assert state.repository_bytes == 10_000 + 307 + 300  # the failed backup stored nothing
    assert state.snapshots == 4 + 2 + 1
    history.record("backup", RunResult("files", "nas", Status.OK, "x", figures={
        "total_bytes_processed": 50_000, "data_added_packed": 5, "repository_bytes": 20_000, "snapshots": 9}),
        ended_at=NOW - timedelta(hours=1))
    [state] = overview(settings, history, NOW)
    assert (state.repository_bytes, state.snapshots) == (20_000, 9)  # a newer measurement replaces the sum


def test_a_backup_measures_its_repository_only_when_no_run_did_within_a_week(tmp_path):
    from runner.backup import needs_measuring

    settings, history = settings_for(tmp_path), History(tmp_path / "history.sqlite")
    assert needs_measuring(settings, "files", "nas")
    history.record("backup", RunResult("files", "nas", Status.OK, "x", figures={"data_added_packed": 3}))
    assert needs_measuring(settings, "files", "nas")  # backups since, but no measurement
    history.record("prune", RunResult("files", "nas", Status.OK, "x", figures={"repository_bytes": 10}),
                   ended_at=datetime.now(UTC) - timedelta(days=8))
    assert needs_measuring(settings, "files", "nas")
    history.record("copy", RunResult("files", "nas", Status.OK, "x", figures={"repository_bytes": 12}),
                   ended_at=datetime.now(UTC) - timedelta(days=2))
    assert not needs_measuring(settings, "files", "nas") and needs_measuring(settings, "vault", "nas")
    (tmp_path / "history.sqlite").write_text("not a database")
    assert needs_measuring(settings, "files", "nas")  # an unreadable history: measure rather than guess
