"""Alerts over a real SMTP server, metrics from a real backup, the dashboard in a real browser."""

import json
import os
import random
import re
import shutil
import socket
import ssl
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from runner.cli import cli
from runner.monitoring import dashboard, metrics
from runner.monitoring.history import History
from runner.results import RunResult, Status
from runner.settings import Settings
from tests.conftest import PROJECT_ROOT
from tests.integration.conftest import private_file, write_config

ARTIFACTS = PROJECT_ROOT / "test-artifacts"


class Mailbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append({"login": session.auth_data if session.authenticated else None,
                              "tls": session.ssl is not None, "content": envelope.content.decode(errors="replace")})
        return "250 OK"


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = auth_data.login == b"alerts@example.org" and auth_data.password == b"smtp-secret-password"
    return AuthResult(success=ok, auth_data=auth_data.login)


@pytest.fixture
def smtp(tmp_path):
    """aiosmtpd on loopback, requiring STARTTLS (a self-signed certificate) and a login."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port, tls_context=context, require_starttls=True,
                            authenticator=authenticator, auth_require_tls=True)
    controller.start()
    yield {"mailbox": mailbox, "port": port, "ca": cert}
    controller.stop()


def configure(base: Settings, tmp_path, **overrides) -> Settings:
    data = tmp_path / "data"
    data.mkdir(mode=0o755, exist_ok=True)
    (data / "file.bin").write_bytes(os.urandom(200_000))
    private_file(tmp_path / "password", "monitoring test password", base)
    return Settings(
        paths={**base.paths.model_dump(), "state_dir": tmp_path / "state"},
        destinations={"local": {"kind": "local", "path": str(tmp_path / "repo"),
                                "password_file": str(tmp_path / "password")}},
        sources={"files": {"paths": [data]}, **{s: {"enabled": False} for s in ("vault", "postgres", "minio")}},
        **overrides)


def invoke(settings, tmp_path, *args):
    config = write_config(settings, tmp_path / "runner.toml")
    return CliRunner().invoke(cli, ["--config", str(config), *args], prog_name="runner")


def test_one_mail_when_a_problem_starts_and_one_when_it_ends(engine, settings, tmp_path, smtp):
    credentials = private_file(tmp_path / "smtp-credentials", "alerts@example.org\nsmtp-secret-password\n", settings)
    configured = configure(settings, tmp_path, alerts={
        "email_to": ["admin@example.org"], "smtp_host": "127.0.0.1", "smtp_port": smtp["port"],
        "smtp_ca_file": str(smtp["ca"]), "smtp_credentials_file": str(credentials)})
    for _ in range(3):  # no repository yet: each backup fails
        assert invoke(configured, tmp_path, "exec", "backup", "files").exit_code == 1
    assert len(smtp["mailbox"].messages) == 1
    problem = smtp["mailbox"].messages[0]
    assert problem["tls"] and problem["login"] == b"alerts@example.org"
    assert "Subject: [offsite-backup] PROBLEM: backup failed, files on local" in problem["content"]
    assert "runner repo init" in problem["content"]
    assert invoke(configured, tmp_path, "repo", "init").exit_code == 0
    ok = invoke(configured, tmp_path, "exec", "backup", "files")
    assert ok.exit_code == 0, ok.output
    assert len(smtp["mailbox"].messages) == 2
    assert "Subject: [offsite-backup] RESOLVED: backup failed, files on local" in smtp["mailbox"].messages[1]["content"]
    assert "smtp-secret-password" not in ok.output


def test_metrics_of_a_real_backup(engine, settings, tmp_path):
    configured = configure(settings, tmp_path)
    assert invoke(configured, tmp_path, "repo", "init").exit_code == 0
    result = invoke(configured, tmp_path, "exec", "backup", "files", "--json")
    assert result.exit_code == 0, result.output
    [run] = json.loads(result.stdout)
    text = metrics.metrics_file(configured).read_text()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    where = (("destination", "local"), ("source", "files"))
    job = (("destination", "local"), ("kind", "backup"), ("source", "files"))
    assert samples[("offsite_backup_last_run_success", job)] == 1
    assert samples[("offsite_backup_last_bytes_processed", where)] == run["figures"]["total_bytes_processed"] == 200_000
    assert samples[("offsite_backup_last_bytes_added", where)] == run["figures"]["data_added_packed"]
    assert samples[("offsite_backup_repository_size_bytes", where)] == run["figures"]["repository_bytes"] > 0
    assert samples[("offsite_backup_repository_snapshots", where)] == 1
    assert samples[("offsite_backup_within_rpo", where)] == 1
    assert 0 < samples[("offsite_backup_last_duration_seconds", job)] < 600
    ended = datetime.now(UTC).timestamp()
    assert ended - 120 < samples[("offsite_backup_last_success_timestamp_seconds", job)] <= ended
    assert samples[("offsite_backup_quota_limit_bytes", (("destination", "local"),))] == 0


def synthetic_history(settings: Settings) -> History:
    """40 nights of backups of three sources, weekly prunes, monthly restore tests, some trouble."""
    history = History(settings.paths.state_dir / "history.sqlite")
    rng = random.Random(7)
    start = datetime.now(UTC) - timedelta(days=40)
    sizes = {"vault": 80e6, "postgres": 600e6, "minio": 2e9}
    for day in range(40):
        for source, size in sizes.items():
            sizes[source] = size * rng.uniform(0.99, 1.03)
            status = Status.FAILED if (day, source) == (17, "minio") else Status.OK
            result = RunResult(source, "local", status, "synthetic", duration=60 + rng.uniform(0, 120),
                               figures={"total_bytes_processed": int(sizes[source]),
                                        "repository_bytes": int(sizes[source] * 3)})
            history.record("backup", result, ended_at=start + timedelta(days=day, hours=2))
            if day % 7 == 6:
                history.record("prune", RunResult(source, "local", Status.OK, "pruned", duration=30, figures={
                    "deduplication_ratio": 8 + day / 5 + rng.uniform(0, 1),
                    "repository_bytes": int(sizes[source] * 3)}),
                    ended_at=start + timedelta(days=day, hours=4))
            if day % 14 == 13:
                history.record("restore-test", RunResult(source, "local", Status.OK, "restored",
                                                          duration=100 + rng.uniform(0, 300)),
                               ended_at=start + timedelta(days=day, hours=5))
    history.open_alert("backup:minio:local", "backup failed", "minio", "local", "synthetic failure")
    history.resolve_alert("backup:minio:local", "succeeded again")
    return history


def test_dashboard_renders_in_chromium(tmp_path, settings):
    if not shutil.which("chromium"):
        pytest.fail("chromium is not installed (scripts/test installs it)")
    configured = Settings(paths={**settings.paths.model_dump(), "state_dir": tmp_path / "state"},
                          destinations={"local": {"kind": "local"}}, sources={"files": {"enabled": False}})
    history = synthetic_history(configured)
    assert len(history.runs()) >= 30
    page = dashboard.write(configured, history, tmp_path / "dashboard.html")
    html = page.read_text()
    assert "<script" not in html and "http://" not in html and "https://" not in html  # self-contained

    # The page has no script; a copy with a measuring script tells what the browser laid out.
    measured = tmp_path / "measured.html"
    measured.write_text(html.replace("</body>", MEASURE + "</body>"))
    dom = chromium(["--dump-dom", measured.as_uri()])
    report = json.loads(re.search(r'data-report="([^"]*)"', dom).group(1).replace("&quot;", '"'))
    assert report["statusRows"] == 3
    assert set(report["charts"]) == {"size", "duration", "deduplication", "restore"}
    for name, chart in report["charts"].items():
        assert chart["width"] > 300 and chart["height"] > 100, name
        assert chart["lines"] == 3 and chart["length"] > 100, name  # one line per source, actually drawn
    assert report["alertRows"] >= 2

    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "dashboard.png"
    chromium(["--screenshot=" + str(screenshot), "--window-size=1280,1400", page.as_uri()])
    assert screenshot.stat().st_size > 20_000


MEASURE = """<script>
const charts = {};
for (const svg of document.querySelectorAll("svg.chart")) {
  const box = svg.getBoundingClientRect();
  const lines = [...svg.querySelectorAll("polyline.series")];
  charts[svg.dataset.chart] = {width: box.width, height: box.height, lines: lines.length,
    length: lines.reduce((sum, line) => sum + line.getTotalLength(), 0)};
}
document.body.dataset.report = JSON.stringify({charts,
  statusRows: document.querySelectorAll("#status tbody tr").length,
  alertRows: document.querySelectorAll("#alerts tbody tr").length});
</script>"""


def chromium(arguments: list[str]) -> str:
    profile = Path(os.environ.get("TMPDIR", "/tmp")) / f"chromium-profile-{os.getpid()}"
    result = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", "--allow-file-access-from-files", *arguments],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout
