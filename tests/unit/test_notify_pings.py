"""Apprise targets and ping URLs read from their secret files, each channel delivered on its own, and the
old ping settings refused clearly (no network: Apprise's sending is stubbed)."""

import pytest

from runner.monitoring import alerts, notify
from runner.monitoring.history import History
from runner.monitoring.pings import PingFileError, Pings, base_urls
from runner.results import RunResult, Status
from runner.settings import Settings
from tests.unit.test_alerts_status import NOW, restore_tested, settings_for


def secret(path, text):
    path.write_text(text)
    path.chmod(0o600)
    return path


def with_alerts(settings: Settings, **changes) -> Settings:
    return settings.model_copy(update={"alerts": settings.alerts.model_copy(update=changes)})


def test_the_old_ping_settings_are_refused_with_what_to_do_instead():
    with pytest.raises(ValueError, match="alerts.ping_urls_file") as raised:
        Settings(alerts={"success_ping_url": "https://hc.example.org/ping/secret-uuid"})
    assert "secret-uuid" not in str(raised.value).split("input_value")[0]


def test_ping_urls_are_read_per_job_and_errors_name_the_line_not_the_url(tmp_path):
    path = secret(tmp_path / "pings", "# checks\nbackup-vault = https://hc.example.org/ping/uuid-1/\n\n"
                                      "status=http://127.0.0.1:8000/ping/uuid-2\n")
    settings = with_alerts(Settings(), ping_urls_file=path)
    assert base_urls(settings) == {"backup-vault": "https://hc.example.org/ping/uuid-1",
                                   "status": "http://127.0.0.1:8000/ping/uuid-2"}
    secret(path, "backup-vault = https://hc.example.org/ping/uuid-1\nbackups = https://hc.example.org/ping/uuid-3\n")
    with pytest.raises(PingFileError, match="line 2: unknown job 'backups'") as raised:
        base_urls(settings)
    assert "uuid-3" not in str(raised.value)
    secret(path, "status https://hc.example.org/ping/uuid-4\n")
    with pytest.raises(PingFileError, match="line 1: not 'JOB = BASE-URL'") as raised:
        base_urls(settings)
    assert "uuid-4" not in str(raised.value)


def test_runs_by_hand_ping_nothing(tmp_path):
    path = secret(tmp_path / "pings", "status = https://hc.example.org/ping/uuid-1\n")
    settings = with_alerts(Settings(), ping_urls_file=path)
    assert Pings(settings, "").urls == {}
    assert Pings(settings, "offsite-backup-status.service").urls == {"status": "https://hc.example.org/ping/uuid-1"}


def test_apprise_targets_skip_comments_and_are_named_by_line_and_scheme(tmp_path):
    path = secret(tmp_path / "apprise", "# team\nntfys://ntfy.example.org/backups-7f3a9c\n\njson://127.0.0.1:9/x\n")
    found = notify.targets(with_alerts(Settings(), apprise_urls_file=path))
    assert [(t.channel, t.label) for t in found] == [("apprise-2", "notification target 2 (ntfys)"),
                                                      ("apprise-4", "notification target 4 (json)")]
    assert "backups-7f3a9c" not in found[0].scrub("failed posting to ntfy.example.org/backups-7f3a9c")


def test_a_failing_target_is_retried_alone_and_stops_neither_the_others_nor_the_mail(tmp_path, monkeypatch):
    path = secret(tmp_path / "apprise", "json://down.example.org/a\njson://up.example.org/b\n")
    settings = with_alerts(settings_for(tmp_path), apprise_urls_file=path)
    sent: list[tuple[int, str]] = []
    down = {"down.example.org"}

    def fake_send(target, title, body, event):
        if any(host in target.url for host in down):
            return "connection refused"
        sent.append((target.line, title))
        return ""

    monkeypatch.setattr(notify, "send", fake_send)
    history = History(tmp_path / "history.sqlite")
    restore_tested(history)
    failed = alerts.decide(settings, history, [("backup", RunResult("files", "nas", Status.FAILED, "no repository"))],
                           NOW)
    assert not alerts.delivered(settings, history, failed)
    assert sent == [(2, "[offsite-backup] PROBLEM: backup failed, files on nas")]
    down.clear()
    again = alerts.decide(settings, history, [("backup", RunResult("files", "nas", Status.FAILED, "no repository"))],
                          NOW)
    assert alerts.delivered(settings, history, again)
    assert [line for line, _ in sent] == [2, 1]  # only the target that missed it
    assert alerts.decide(settings, history, [("backup", RunResult("files", "nas", Status.FAILED, "x"))], NOW) == []


def test_an_unreadable_urls_file_keeps_the_alert_pending_and_the_mail_channel_unaffected(tmp_path):
    settings = with_alerts(settings_for(tmp_path), apprise_urls_file=tmp_path / "missing")
    history = History(tmp_path / "history.sqlite")
    restore_tested(history)
    failed = alerts.decide(settings, history, [("backup", RunResult("files", "nas", Status.FAILED, "boom"))], NOW)
    assert not alerts.delivered(settings, history, failed)
    [key] = [alert.key for alert in failed if alert.key]
    assert history.delivered_on([key]) == {key: {"mail"}}


def test_each_quadlet_unit_names_its_job():
    from runner.monitoring.pings import job_of_unit

    assert job_of_unit("offsite-backup-vault.service") == "backup-vault"
    assert job_of_unit("offsite-backup-restore-test.service") == "restore-test"
    assert job_of_unit("offsite-backup-status.service") == "status"
    assert job_of_unit("offsite-backup-agent.service") is None


def test_a_target_that_fails_midway_gets_only_what_it_missed_again(tmp_path, monkeypatch):
    path = secret(tmp_path / "apprise", "json://hooks.example.org/a\n")
    settings = with_alerts(settings_for(tmp_path), apprise_urls_file=path)
    sent: list[str] = []
    fail_after = [1]

    def fake_send(target, title, body, event):
        if len(sent) >= fail_after[0]:
            return "timed out"
        sent.append(title)
        return ""

    monkeypatch.setattr(notify, "send", fake_send)
    history = History(tmp_path / "history.sqlite")
    restore_tested(history)
    runs = [("backup", RunResult("files", "nas", Status.FAILED, "x")),
            ("check", RunResult("files", "nas", Status.CHECK_FAILED, "y"))]
    assert not alerts.delivered(settings, history, alerts.decide(settings, history, runs, NOW))
    assert sent == ["[offsite-backup] PROBLEM: backup failed, files on nas"]
    fail_after[0] = 99
    assert alerts.delivered(settings, history, alerts.decide(settings, history, runs, NOW))
    assert sent[1:] == ["[offsite-backup] PROBLEM: repository check failed, files on nas"]
