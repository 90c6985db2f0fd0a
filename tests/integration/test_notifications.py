"""Alerts through Apprise to a real HTTP server (json://), alongside real SMTP mail; healthchecks.io pings."""

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from click.testing import CliRunner

from runner.cli import cli
from tests.integration.conftest import private_file, write_config
from tests.integration.test_monitoring import configure, smtp  # noqa: F401 (smtp is a fixture)

TOKEN = "apprise-hook-token-7f3a9c"
PING_UUID = "ping-uuid-5b1e2d7c"


class Receiver:
    """A local HTTP server recording every request: the POSTed JSON of notifications, the paths of pings."""

    def __init__(self, port: int = 0):
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                received.append(("POST", self.path, json.loads(body)))
                self._answer()

            def do_GET(self):
                received.append(("GET", self.path, None))
                self._answer()

            def _answer(self):
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"OK")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def posts(self):
        return [body for method, _, body in self.received if method == "POST"]

    def paths(self):
        return [path for method, path, _ in self.received if method == "GET"]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


def invoke(settings, tmp_path, *args, env=None):
    config = write_config(settings, tmp_path / "runner.toml")
    return CliRunner().invoke(cli, ["--config", str(config), *args], prog_name="runner", env=env)


def free_port() -> int:
    """A port nothing listens on (until a test starts a server there)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def mailing(smtp, tmp_path, settings, apprise_urls: list[str]) -> dict:  # noqa: F811
    credentials = private_file(tmp_path / "smtp-credentials", "alerts@example.org\nsmtp-secret-password\n", settings)
    urls = private_file(tmp_path / "apprise-urls", "# alert targets\n" + "\n".join(apprise_urls) + "\n", settings)
    return {"email_to": ["admin@example.org"], "smtp_host": "127.0.0.1", "smtp_port": smtp["port"],
            "smtp_ca_file": str(smtp["ca"]), "smtp_credentials_file": str(credentials), "apprise_urls_file": str(urls)}


def subjects(smtp):  # noqa: F811
    return [line for message in smtp["mailbox"].messages for line in message["content"].splitlines()
            if line.startswith("Subject:")]


def test_a_notification_when_a_problem_opens_and_one_when_it_resolves_with_the_mail(
        engine, settings, tmp_path, smtp, receiver):  # noqa: F811
    url = f"json://127.0.0.1:{receiver.port}/alerts/{TOKEN}"
    configured = configure(settings, tmp_path, alerts=mailing(smtp, tmp_path, settings, [url]),
                           monitoring={"success_rate_floor": 0})
    outputs = []
    for _ in range(2):  # no repository yet: each backup fails, the problem is announced once
        failed = invoke(configured, tmp_path, "exec", "backup", "files")
        assert failed.exit_code == 1
        outputs.append(failed.output)
    [problem] = receiver.posts()
    assert problem["title"] == "[offsite-backup] PROBLEM: backup failed, files on local"
    assert "source:      files" in problem["message"] and "destination: local" in problem["message"]
    assert "runner repo init" in problem["message"]  # the failure's own message: what to do
    assert problem["type"] == "failure"
    assert [path for method, path, _ in receiver.received] == [f"/alerts/{TOKEN}"]

    assert invoke(configured, tmp_path, "repo", "init").exit_code == 0
    ok = invoke(configured, tmp_path, "exec", "backup", "files")
    assert ok.exit_code == 0, ok.output
    outputs.append(ok.output)
    assert len(receiver.posts()) == 2
    resolved = receiver.posts()[1]
    assert resolved["title"] == "[offsite-backup] RESOLVED: backup failed, files on local"
    assert resolved["type"] == "success" and "backup succeeded again" in resolved["message"]
    assert subjects(smtp) == ["Subject: [offsite-backup] PROBLEM: backup failed, files on local",
                              "Subject: [offsite-backup] RESOLVED: backup failed, files on local"]
    history = (configured.paths.state_dir / "history.sqlite").read_bytes()
    for text in (*outputs, history.decode(errors="replace")):
        assert TOKEN not in text and "json://" not in text


def test_a_failing_target_is_retried_on_the_next_report_and_stops_neither_the_others_nor_the_mail(
        engine, settings, tmp_path, smtp, receiver):  # noqa: F811
    closed = free_port()
    targets = [f"json://127.0.0.1:{closed}/down/{TOKEN}", f"json://127.0.0.1:{receiver.port}/up/{TOKEN}"]
    configured = configure(settings, tmp_path, alerts=mailing(smtp, tmp_path, settings, targets),
                           monitoring={"success_rate_floor": 0})
    first = invoke(configured, tmp_path, "exec", "backup", "files")
    assert first.exit_code == 1
    assert "could not send 1 alert(s) to notification target 2 (json)" in first.output  # line 2: after the comment
    assert TOKEN not in first.output and f":{closed}" not in first.output
    assert len(smtp["mailbox"].messages) == 1
    assert [post["title"] for post in receiver.posts()] == ["[offsite-backup] PROBLEM: backup failed, files on local"]

    late = Receiver(closed)  # the target is back
    try:
        assert invoke(configured, tmp_path, "exec", "backup", "files").exit_code == 1
        assert [post["title"] for post in late.posts()] == ["[offsite-backup] PROBLEM: backup failed, files on local"]
        assert len(receiver.posts()) == 1 and len(smtp["mailbox"].messages) == 1  # not sent twice where it went out
        assert invoke(configured, tmp_path, "exec", "backup", "files").exit_code == 1
        assert len(late.posts()) == 1  # delivered everywhere now: not again
    finally:
        late.close()


def test_scheduled_backups_ping_start_then_success_or_fail(engine, settings, tmp_path, receiver):
    base = f"http://127.0.0.1:{receiver.port}/ping/{PING_UUID}"
    pings = private_file(tmp_path / "ping-urls", f"backup-files = {base}\nstatus = {base}-status\n", settings)
    configured = configure(settings, tmp_path, alerts={"ping_urls_file": str(pings)})
    unit = {"OFFSITE_BACKUP_UNIT": "offsite-backup-files.service"}

    failed = invoke(configured, tmp_path, "exec", "backup", "files", env=unit)
    assert failed.exit_code == 1  # no repository yet
    assert receiver.paths() == [f"/ping/{PING_UUID}/start", f"/ping/{PING_UUID}/fail"]
    assert PING_UUID not in failed.output

    assert invoke(configured, tmp_path, "repo", "init").exit_code == 0
    assert invoke(configured, tmp_path, "exec", "backup", "files").exit_code == 0  # by hand: no ping
    assert len(receiver.paths()) == 2
    ok = invoke(configured, tmp_path, "exec", "backup", "files", env=unit)
    assert ok.exit_code == 0, ok.output
    assert receiver.paths()[2:] == [f"/ping/{PING_UUID}/start", f"/ping/{PING_UUID}"]

    status = invoke(configured, tmp_path, "status", env={"OFFSITE_BACKUP_UNIT": "offsite-backup-status.service"})
    assert receiver.paths()[4:] == [f"/ping/{PING_UUID}-status/start",
                                    f"/ping/{PING_UUID}-status" + ("" if status.exit_code == 0 else "/fail")]


def test_urls_rendered_by_vault_agent_from_the_secret_catalog_are_used(engine, settings, tmp_path, receiver,
                                                                      testcontainers_env):
    """The whole path: the URLs put in Vault, the agent rendering the catalog's templates, a failed
    scheduled backup notified and pinged through them."""
    from runner.settings import Settings
    from runner.workspace import job_dir
    from tests.integration.services import OpenBao
    from tests.integration.test_secrets import Agent, stop_quietly, wait_for

    secrets_dir = job_dir(tmp_path / "secrets", settings)
    data = tmp_path / "data"
    data.mkdir()
    (data / "file.txt").write_text("content")
    bao, agent = OpenBao(settings).start(), None
    try:
        configured = Settings(
            paths={**settings.paths.model_dump(), "state_dir": tmp_path / "state", "secrets_dir": secrets_dir},
            secrets={"approle_dir": tmp_path / "approle", "render_interval": 2},
            destinations={"local": {"kind": "local", "path": str(tmp_path / "repo")}},
            sources={"files": {"paths": [data]}, "vault": {"enabled": False, "address": bao.url},
                     "postgres": {"enabled": False}, "minio": {"enabled": False}},
            alerts={"apprise_urls_file": secrets_dir / "apprise-urls", "ping_urls_file": secrets_dir / "ping-urls"})
        admin_token = tmp_path / "admin-token"
        admin_token.write_text(bao.root_token)
        bootstrap = invoke(configured, tmp_path, "vault", "bootstrap", "--token-file", str(admin_token))
        assert bootstrap.exit_code == 0, bootstrap.output
        assert "secret/offsite-backup/apprise" in bootstrap.output  # still to be provided
        bao.client.secrets.kv.v2.create_or_update_secret(path="offsite-backup/apprise", secret={
            "urls": f"# the team's webhook\njson://127.0.0.1:{receiver.port}/alerts/{TOKEN}"})
        bao.client.secrets.kv.v2.create_or_update_secret(path="offsite-backup/pings", secret={
            "urls": f"backup-files = http://127.0.0.1:{receiver.port}/ping/{PING_UUID}"})
        assert invoke(configured, tmp_path, "vault", "agent-config", "-o", str(tmp_path / "agent.hcl")).exit_code == 0
        agent = Agent(configured, tmp_path / "agent.hcl").start()
        rendered = [secrets_dir / "apprise-urls", secrets_dir / "ping-urls"]
        wait_for(lambda: all(path.exists() and path.stat().st_size for path in rendered),
                 "the agent did not render the URL files")
        assert all(oct(path.stat().st_mode & 0o777) == "0o400" for path in rendered)

        failed = invoke(configured, tmp_path, "exec", "backup", "files",
                        env={"OFFSITE_BACKUP_UNIT": "offsite-backup-files.service"})
        assert failed.exit_code == 1  # no repository
        [problem] = receiver.posts()
        assert problem["title"] == "[offsite-backup] PROBLEM: backup failed, files on local"
        assert receiver.paths() == [f"/ping/{PING_UUID}/start", f"/ping/{PING_UUID}/fail"]
        assert TOKEN not in failed.output and PING_UUID not in failed.output
    finally:
        for container in (agent, bao):
            stop_quietly(container)


def test_a_unit_whose_runner_never_reported_is_pinged_as_failed(settings, tmp_path, receiver):
    base = f"http://127.0.0.1:{receiver.port}/ping/{PING_UUID}"
    pings = private_file(tmp_path / "ping-urls", f"backup-files = {base}\n", settings)
    configured = configure(settings, tmp_path, alerts={"ping_urls_file": str(pings)})
    result = invoke(configured, tmp_path, "notify", "unit-failed", "offsite-backup-files.service")
    assert result.exit_code == 0, result.output
    assert "did not start" in result.output  # the alert, in the log
    assert receiver.paths() == [f"/ping/{PING_UUID}/fail"]


def test_a_test_alert_reaches_the_mail_and_every_target(settings, tmp_path, smtp, receiver):  # noqa: F811
    url = f"json://127.0.0.1:{receiver.port}/alerts/{TOKEN}"
    configured = configure(settings, tmp_path, alerts=mailing(smtp, tmp_path, settings, [url]))
    result = invoke(configured, tmp_path, "notify", "test")
    assert result.exit_code == 0, result.output
    assert subjects(smtp) == ["Subject: [offsite-backup] NOTICE: test alert, - on -"]
    [notice] = receiver.posts()
    assert notice["title"] == "[offsite-backup] NOTICE: test alert, - on -" and notice["type"] == "warning"

    broken = configure(settings, tmp_path, alerts=mailing(smtp, tmp_path, settings, [url, "json://127.0.0.1:1/x"]))
    failed = invoke(broken, tmp_path, "notify", "test")
    assert failed.exit_code == 1
    assert "notification target 3 (json)" in failed.output and len(receiver.posts()) == 2
