"""Alerts: decided after every run, written to the log, mailed over SMTP, and pinged.

A problem (a failing job, a put-off backup, a source past its RPO, a failed restore test) is
announced once when it starts and once when it is resolved, however many runs it lasts: open
problems are kept in the history. A backup whose size jumps is announced each time it happens.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage

import requests
from loguru import logger

from runner.monitoring.history import History
from runner.monitoring.status import overview, size_change
from runner.results import RunResult, Status
from runner.secrets.catalog import smtp_credentials_file
from runner.secrets.files import SecretFileError, check_secret_file
from runner.settings import Settings

PUT_OFF = (Status.DEFERRED, Status.SKIPPED)


@dataclass(frozen=True)
class Alert:
    event: str  # "PROBLEM", "RESOLVED" or "NOTICE"
    kind: str
    source: str
    destination: str
    message: str

    @property
    def subject(self) -> str:
        return f"[offsite-backup] {self.event}: {self.kind}, {self.source} on {self.destination}"


def _kind_of_failure(kind: str, result: RunResult) -> str:
    if kind == "restore-test":
        return "restore test failed"
    if result.status is Status.CHECK_FAILED:
        return "repository check failed"
    return f"{kind} failed"


def decide(settings: Settings, history: History, runs: list[tuple[str, RunResult]],
           now: datetime | None = None) -> list[Alert]:
    """The alerts these runs (already in the history) call for, updating the open problems."""
    alerts: list[Alert] = []

    def open_(key, kind, result_or_pair, message):
        source, destination = result_or_pair
        if history.open_alert(key, kind, source, destination, message):
            alerts.append(Alert("PROBLEM", kind, source, destination, message))

    def resolve(key, message):
        alert = history.resolve_alert(key, message)
        if alert:
            alerts.append(Alert("RESOLVED", alert["kind"], alert["source"], alert["destination"], message))

    for kind, result in runs:
        where = (result.source, result.destination)
        key = f"{kind}:{result.source}:{result.destination}"
        if result.status.is_failure:
            open_(key, _kind_of_failure(kind, result), where, result.message)
        elif result.status in PUT_OFF:
            open_(f"{key}:put-off", f"{kind} {result.status.value}", where, result.message)
        else:
            resolve(key, f"{kind} succeeded again: {result.message}")
            resolve(f"{key}:put-off", f"{kind} ran: {result.message}")
            if kind == "backup":
                alerts += _size_anomaly(settings, history, result)

    now = now or datetime.now(UTC)
    for state in overview(settings, history, now):
        key = f"rpo:{state.source}:{state.destination}"
        where = (state.source, state.destination)
        if state.within_rpo:
            resolve(key, f"a backup succeeded {state.age_hours} h ago, within the RPO")
        elif _overdue(settings, history, state, now):
            since = f"last success {state.age_hours} h ago" if state.last_success else "no successful backup yet"
            open_(key, "recovery point objective missed", where,
                  f"{since}; the RPO is {settings.monitoring.rpo / 3600:g} h")
    if runs:
        alerts += resolve_unit_alerts(history)
    for alert in alerts:
        (logger.info if alert.event == "RESOLVED" else logger.warning)("alert {}: {}", alert.subject, alert.message)
    return alerts


def _overdue(settings: Settings, history: History, state, now: datetime) -> bool:
    """Past the RPO, counting a never-successful source from its first run."""
    if state.last_success:
        return True
    first = history.runs(kind="backup", source=state.source, destination=state.destination)
    return bool(first) and (now - first[-1].started_at).total_seconds() > settings.monitoring.rpo


def _size_anomaly(settings: Settings, history: History, result: RunResult) -> list[Alert]:
    successes = [run for run in history.runs(kind="backup", source=result.source, destination=result.destination)
                 if run.status == Status.OK.value]
    if len(successes) < 2:
        return []
    change = size_change(successes[0], successes[1])
    if change is None or abs(change) <= settings.monitoring.size_change:
        return []
    message = (f"the backup processed {successes[0].bytes_processed} bytes, {change:+.0%} against the previous "
               f"successful one ({successes[1].bytes_processed} bytes)")
    key = f"size:{result.source}:{result.destination}"
    history.notice(key, "backup size anomaly", result.source, result.destination, message)
    return [Alert("NOTICE", "backup size anomaly", result.source, result.destination, message)]


def unit_failed(settings: Settings, unit: str, within: int) -> list[Alert]:
    """A systemd unit of the runner failed; alert unless the runner recorded its runs itself."""
    history = History(settings.paths.state_dir / "history.sqlite")
    recent = [run for run in history.runs(limit=20)
              if (datetime.now(UTC) - run.ended_at).total_seconds() <= within]
    if recent:
        logger.info("{} failed after recording its runs: their alerts were decided then", unit)
        return []
    message = (f"systemd unit {unit} failed without recording any run: the runner could not start, or was "
               f"killed or timed out. See `journalctl -u {unit}`.")
    alerts = []
    if history.open_alert(f"unit:{unit}", "runner did not run", unit, "-", message):
        alerts.append(Alert("PROBLEM", "runner did not run", unit, "-", message))
        logger.error("alert: {}", message)
    send(settings, alerts)
    return alerts


def resolve_unit_alerts(history: History) -> list[Alert]:
    """Runs were recorded again: the runner runs."""
    resolved = []
    for key in [key for key in history.open_alerts() if key.startswith("unit:")]:
        alert = history.resolve_alert(key, "the runner recorded runs again")
        if alert is None:  # resolved meanwhile by another run
            continue
        resolved.append(Alert("RESOLVED", alert["kind"], alert["source"], alert["destination"],
                              "the runner recorded runs again"))
    return resolved


def send(settings: Settings, alerts: list[Alert]) -> None:
    """Mail each alert; a mail that cannot be sent is logged, never fatal."""
    config = settings.alerts
    if not alerts or not config.email_to:
        return
    try:
        with smtplib.SMTP(config.smtp_host, config.smtp_port, timeout=30) as smtp:
            if config.starttls:
                context = ssl.create_default_context(cafile=str(config.smtp_ca_file) if config.smtp_ca_file else None)
                smtp.starttls(context=context)
            if config.smtp_login:
                path = smtp_credentials_file(settings)
                check_secret_file(settings, path, "SMTP credentials file")
                user, password = (path.read_text().splitlines() + ["", ""])[:2]
                smtp.login(user.strip(), password.strip())
            for alert in alerts:
                smtp.send_message(_mail(settings, alert))
        logger.info("mailed {} alert(s) to {}", len(alerts), ", ".join(config.email_to))
    except (OSError, smtplib.SMTPException, SecretFileError) as error:
        logger.error("could not mail {} alert(s) through {}:{}: {}", len(alerts), config.smtp_host,
                     config.smtp_port, error)


def _mail(settings: Settings, alert: Alert) -> EmailMessage:
    mail = EmailMessage()
    mail["Subject"] = alert.subject
    mail["From"] = settings.alerts.email_from
    mail["To"] = ", ".join(settings.alerts.email_to)
    mail.set_content(
        f"{alert.event}: {alert.kind}\n\nsource:      {alert.source}\ndestination: {alert.destination}\n"
        f"host:        {socket.gethostname()}\ntime:        {datetime.now(UTC):%Y-%m-%d %H:%M} UTC\n\n"
        f"{alert.message}\n\n`runner status` shows the state of every source; "
        "the runbook is docs/disaster-recovery.md.\n")
    return mail


def ping(settings: Settings, runs: list[tuple[str, RunResult]]) -> None:
    """The dead man's switch: one URL after a clean run, another after a failed one."""
    failed = any(result.status.is_failure for _, result in runs)
    url = settings.alerts.failure_ping_url if failed else settings.alerts.success_ping_url
    if not url or not runs:
        return
    try:
        requests.get(url, timeout=10).raise_for_status()
    except requests.RequestException as error:
        logger.warning("ping to {} failed: {}", url, error)
