"""Alert decisions, status and RPO over a real SQLite history (no containers needed)."""

from datetime import UTC, datetime, timedelta

from click.testing import CliRunner

from runner.cli import cli
from runner.monitoring.alerts import decide
from runner.monitoring.history import History
from runner.monitoring.status import overview
from runner.results import RunResult, Status
from runner.settings import Settings
from tests.conftest import write_config

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def settings_for(tmp_path) -> Settings:
    return Settings(paths={"state_dir": tmp_path}, destinations={"nas": {"kind": "local"}},
                    sources={"files": {"paths": ["/etc/hostname"]}, "vault": {"enabled": False},
                             "postgres": {"enabled": False}, "minio": {"enabled": False}})


def backup(history, status=Status.OK, processed=1000, at=NOW):
    result = RunResult("files", "nas", status, "x", figures={"total_bytes_processed": processed}, duration=10)
    history.record("backup", result, ended_at=at)
    return ("backup", result)


def test_three_failures_one_problem_then_one_resolution(tmp_path):
    settings, history = settings_for(tmp_path), History(tmp_path / "history.sqlite")
    events = [decide(settings, history, [backup(history, Status.FAILED)], NOW) for _ in range(3)]
    assert [[a.event for a in e] for e in events] == [["PROBLEM"], [], []]
    assert events[0][0].kind == "backup failed"
    recovered = decide(settings, history, [backup(history)], NOW)
    assert [a.event for a in recovered] == ["RESOLVED"]
    assert decide(settings, history, [backup(history)], NOW) == []


def test_size_anomaly_only_beyond_half_and_not_on_the_first_run(tmp_path):
    settings, history = settings_for(tmp_path), History(tmp_path / "history.sqlite")
    assert decide(settings, history, [backup(history, processed=1000)], NOW) == []
    assert decide(settings, history, [backup(history, processed=1200)], NOW) == []  # +20 %
    [notice] = decide(settings, history, [backup(history, processed=1920)], NOW)  # +60 %
    assert notice.event == "NOTICE" and notice.kind == "backup size anomaly" and "+60%" in notice.message


def test_restore_test_failure_is_its_own_kind(tmp_path):
    settings, history = settings_for(tmp_path), History(tmp_path / "history.sqlite")
    result = RunResult("files", "nas", Status.RESTORE_MISMATCH, "shop: public.t differs")
    history.record("restore-test", result)
    [alert] = decide(settings, history, [("restore-test", result)], NOW)
    assert alert.kind == "restore test failed"


def test_past_the_rpo_status_fails_and_alerts_once(tmp_path):
    settings, history = settings_for(tmp_path), History(tmp_path / "history.sqlite")
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
    config = write_config(settings, tmp_path / "runner.toml")
    result = CliRunner().invoke(cli, ["--config", str(config), "status"], prog_name="runner")
    assert result.exit_code == 0, result.output


def test_unit_failure_alerts_only_when_the_runner_recorded_nothing(tmp_path):
    from runner.monitoring.alerts import unit_failed

    settings, history = settings_for(tmp_path), History(tmp_path / "history.sqlite")
    [alert] = unit_failed(settings, "offsite-backup-postgres.service", within=3600)
    assert alert.kind == "runner did not run" and "journalctl -u offsite-backup-postgres.service" in alert.message
    assert unit_failed(settings, "offsite-backup-postgres.service", within=3600) == []  # once
    resolved = decide(settings, history, [backup(history, at=datetime.now(UTC))])
    assert [(a.event, a.kind) for a in resolved] == [("RESOLVED", "runner did not run")]
    assert unit_failed(settings, "offsite-backup-postgres.service", within=3600) == []  # runs were recorded
