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
        "smtp_ca_file": str(smtp["ca"]), "smtp_credentials_file": str(credentials)},
        monitoring={"success_rate_floor": 0})  # the failures' own alert only, not the low success rate's
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


DESTINATIONS = ("local", "nas", "gdrive")
MiB = 1024 * 1024


def synthetic_history(settings: Settings) -> History:
    """40 nights of backups of three sources to three destinations, weekly prunes, restore tests every two
    weeks (minio's never passed: overdue), some trouble."""
    history = History(settings.paths.state_dir / "history.sqlite")
    rng = random.Random(7)
    start = datetime.now(UTC) - timedelta(days=40)
    sizes = {"vault": 80 * MiB, "postgres": 360 * MiB, "minio": 2048 * MiB}
    for day in range(40):
        for source, size in sizes.items():
            for offset, destination in enumerate(DESTINATIONS):
                status = Status.FAILED if (day, source, destination) == (17, "minio", "local") else Status.OK
                read = int(size * rng.uniform(0.995, 1.005))
                result = RunResult(source, destination, status, "synthetic",
                                   duration=60 + 40 * offset + rng.uniform(0, 120),
                                   figures={"total_bytes_processed": read, "repository_bytes": int(size * 3)})
                history.record("backup", result, ended_at=start + timedelta(days=day, hours=2 + offset))
                if day % 7 == 6:
                    history.record("prune", RunResult(source, destination, Status.OK, "pruned", duration=30, figures={
                        "deduplication_ratio": 8 + offset + day / 5 + rng.uniform(0, 1),
                        "repository_bytes": int(size * 3)}),
                        ended_at=start + timedelta(days=day, hours=4 + offset))
            if day % 14 == 13:
                status = Status.RESTORE_MISMATCH if source == "minio" else Status.OK
                history.record("restore-test", RunResult(source, "local", status, "restored",
                                                          duration=100 + rng.uniform(0, 300)),
                               ended_at=start + timedelta(days=day, hours=5))
    history.open_alert("backup:minio:local", "backup failed", "minio", "local", "synthetic failure")
    history.resolve_alert("backup:minio:local", "succeeded again")
    return history


def test_dashboard_renders_in_chromium(tmp_path, settings):
    if not shutil.which("chromium"):
        pytest.fail("chromium is not installed (scripts/test installs it)")
    # the restore tests visit the three destinations in turn: each is due every 3 x 10 days
    configured = Settings(paths={**settings.paths.model_dump(), "state_dir": tmp_path / "state"},
                          destinations={name: {"kind": "local", "path": str(tmp_path / name)} for name in DESTINATIONS},
                          sources={"files": {"enabled": False}}, monitoring={"restore_test_every": 10 * 86400})
    history = synthetic_history(configured)
    assert len(history.runs()) >= 30
    page = dashboard.write(configured, history, tmp_path / "dashboard.html")
    html = page.read_text()
    assert "<script" not in html and "http://" not in html and "https://" not in html  # self-contained

    # The page has no script; a copy with a measuring script tells what the browser laid out.
    measured = tmp_path / "measured.html"
    measured.write_text(html.replace("</body>", MEASURE + "</body>"))
    dom = chromium(["--dump-dom", "--window-size=1280,1000", measured.as_uri()])
    report = json.loads(re.search(r'data-report="([^"]*)"', dom).group(1).replace("&quot;", '"'))

    # the status table: a row per source and destination, with the success rates and the overdue restore test
    assert len(report["status"]) == 3 * len(DESTINATIONS)
    assert report["statusHead"][-3:] == ["backups ok, 30 days", "backups ok, 90 days", "last restore test"]
    rows = {(row[0], row[1]): row for row in report["status"]}
    assert rows["minio", "local"][2] == "attention" and rows["minio", "local"][-3:-1] == ["96.6%", "97.5%"]
    assert rows["minio", "local"][-1].startswith("restore mismatch") and rows["minio", "local"][-1].endswith("overdue")
    assert rows["postgres", "local"][-3:-1] == ["100%", "100%"] and "overdue" not in rows["postgres", "local"][-1]
    assert rows["postgres", "nas"][6].endswith("MiB")

    # a chart of each measure for each source, every destination drawn and named, nothing outside its chart
    charts = {(chart["source"], chart["name"]): chart for chart in report["charts"]}
    assert set(charts) == {(source, name) for source in ("vault", "postgres", "minio")
                           for name in ("size", "duration", "deduplication", "restore")}
    for where, chart in charts.items():
        assert chart["width"] > 300 and chart["height"] > 150, where
        assert chart["outside"] == [], where
        if where[1] != "restore":  # restore tests read from one destination
            assert sorted(chart["legend"]) == sorted(DESTINATIONS), where
            assert chart["lines"] == len(DESTINATIONS) and chart["length"] > 300, where
    assert charts["vault", "restore"]["legend"] == ["local"] and charts["vault", "restore"]["lines"] == 1
    assert charts["minio", "restore"]["text"] == "no successful restore test yet"  # each failed

    # the axes are in human units: 360 MiB backups on a MiB axis near 360, durations in minutes, ratios
    size_axis = axis_values(charts["postgres", "size"]["yLabels"], "MiB")
    assert 340 < min(size_axis) and max(size_axis) < 380 and len(size_axis) >= 3, charts["postgres", "size"]
    assert 1.9 < min(axis_values(charts["minio", "size"]["yLabels"], "GiB")) < 2.1
    assert axis_values(charts["vault", "duration"]["yLabels"], "min")
    assert axis_values(charts["postgres", "deduplication"]["yLabels"], "×")
    assert all(re.fullmatch(r"[A-Z][a-z]{2} \d\d", label) for label in charts["vault", "size"]["xLabels"])
    assert report["alertRows"] >= 2

    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "dashboard.png"
    chromium(["--screenshot=" + str(screenshot), f"--window-size=1280,{report['pageHeight'] + 40}", page.as_uri()])
    assert screenshot.stat().st_size > 20_000


def axis_values(labels: list[str], unit: str) -> list[float]:
    """The numbers of an axis's labels, each of which must be in this unit."""
    assert labels and all(label.endswith(unit) for label in labels), (unit, labels)
    return [float(label.removesuffix(unit)) for label in labels]


MEASURE = """<script>
const inside = (box, outer) => box.left >= outer.left - 1 && box.right <= outer.right + 1 &&
  box.top >= outer.top - 1 && box.bottom <= outer.bottom + 1;
const texts = (svg, selector) => [...svg.querySelectorAll(selector)].map(t => t.textContent.trim()).filter(t => t);
const charts = [];
for (const figure of document.querySelectorAll("figure[data-chart]")) {
  const svg = figure.querySelector("svg") || figure.querySelector(".no-data");
  const box = svg.getBoundingClientRect();
  const lines = [...svg.querySelectorAll(".series path.line")];
  const labels = [...svg.querySelectorAll(".legends text, .axis text")];
  charts.push({name: figure.dataset.chart, source: figure.dataset.source, width: box.width, height: box.height,
    lines: lines.length, length: lines.reduce((sum, line) => sum + line.getTotalLength(), 0),
    legend: texts(svg, ".legends .legend text"), yLabels: texts(svg, ".axis.y .guides text"),
    xLabels: texts(svg, ".axis.x .guides text"), text: svg.matches(".no-data") ? svg.textContent.trim() : "",
    outside: labels.filter(t => t.textContent.trim() && !inside(t.getBoundingClientRect(), box))
                   .map(t => t.textContent)});
}
const cells = row => [...row.querySelectorAll("th, td")].map(cell => cell.innerText.replace(/\\s+/g, " ").trim());
document.body.dataset.report = JSON.stringify({charts,
  status: [...document.querySelectorAll("#status tbody tr")].map(cells),
  statusHead: cells(document.querySelector("#status thead tr")),
  alertRows: document.querySelectorAll("#alerts tbody tr").length,
  pageHeight: document.documentElement.scrollHeight});
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
