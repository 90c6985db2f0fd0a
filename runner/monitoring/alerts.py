"""Alerts: decided after every run, written to the log, mailed over SMTP and sent through Apprise.

A problem (a failing job, a put-off backup, a source past its RPO, a restore test failed or overdue,
a runner unit that failed without reporting) is announced once when it starts and once when it is
resolved, however many runs it lasts: open problems are kept in the history. One that could not be
sent on a channel (the mail, an Apprise target) stays marked unmailed and goes out on that channel
with the next report. A backup whose size jumps is announced each time it happens. When the history
itself cannot be used, every failure is sent anyway, with an alert about the history: sending never
depends on recording.
"""

from __future__ import annotations

import functools
import smtplib
import socket
import sqlite3
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage

from loguru import logger

from runner.logs import mask
from runner.monitoring import notify
from runner.monitoring.history import History, open_history
from runner.monitoring.status import (
    RepositoryStatus,
    overview,
    recovery_kind,
    restore_test_allowance,
    size_change,
)
from runner.results import RunResult, Status
from runner.secrets.catalog import smtp_credentials_file
from runner.secrets.files import SecretFileError, check_secret_file
from runner.settings import Settings
from runner.units import size_text

PUT_OFF = (Status.DEFERRED, Status.SKIPPED)
# What a broken history raises: a damaged or locked database, a full or read-only disk.
HISTORY_ERRORS = (sqlite3.Error, OSError)


@dataclass(frozen=True)
class Alert:
    event: str  # "PROBLEM", "RESOLVED" or "NOTICE"
    kind: str
    source: str
    destination: str
    message: str
    key: str = ""  # the open problem it announces (PROBLEM), marked mailed once sent

    @property
    def subject(self) -> str:
        return f"[offsite-backup] {self.event}: {self.kind}, {self.source} on {self.destination}"


def _kind_of_failure(kind: str, result: RunResult) -> str:
    if kind == "restore-test":
        return "restore test failed"
    if result.status is Status.CHECK_FAILED:
        return "repository check failed"
    if result.status is Status.PARTIAL:
        return f"{kind} incomplete"
    return f"{kind} failed"


class _Problems:
    """Opening and resolving problems in the history, collecting the alerts that calls for."""

    def __init__(self, history: History):
        self.history = history
        self.alerts: list[Alert] = []

    def open(self, key: str, kind: str, where: tuple[str, str], message: str) -> None:
        source, destination = where
        if self.history.open_alert(key, kind, source, destination, message):
            self.alerts.append(Alert("PROBLEM", kind, source, destination, message, key))

    def resolve(self, key: str, message: str) -> None:
        alert = self.history.resolve_alert(key, message)
        if alert:
            self.alerts.append(Alert("RESOLVED", alert["kind"], alert["source"], alert["destination"], message))


def decide(settings: Settings, history: History, runs: list[tuple[str, RunResult]],
           now: datetime | None = None, unit: str = "") -> list[Alert]:
    """The alerts these runs (already in the history) call for, updating the open problems; `unit`
    is the systemd unit that started this runner, which has now reported. Problems still unmailed
    from an earlier report are included."""
    problems = _Problems(history)
    for kind, result in runs:
        where = (result.source, result.destination)
        key = f"{kind}:{result.source}:{result.destination}"
        if kind == "prune" and result.status is Status.CHECK_FAILED:
            continue  # it did not run because the check failed: the check's own alert says so
        if result.status.is_failure:
            problems.open(key, _kind_of_failure(kind, result), where, result.message)
        elif result.status in PUT_OFF:
            problems.open(f"{key}:put-off", f"{kind} {result.status.value}", where, result.message)
        else:
            problems.resolve(key, f"{kind} succeeded again: {result.message}")
            problems.resolve(f"{key}:put-off", f"{kind} ran: {result.message}")
            if kind == "backup":
                problems.alerts += _size_anomaly(settings, history, result)
        if kind == "backup":
            _uncovered_buckets(history, result, problems)

    now = now or datetime.now(UTC)
    for state in overview(settings, history, now):
        key = f"rpo:{state.source}:{state.destination}"
        where = (state.source, state.destination)
        if state.within_rpo:
            problems.resolve(key, f"a backup succeeded {state.age_hours} h ago, within the RPO")
        elif _overdue(settings, history, state, now):
            since = f"last success {state.age_hours} h ago" if state.last_success else "no successful backup yet"
            problems.open(key, "recovery point objective missed", where,
                          f"{since}; the RPO is {settings.monitoring.rpo / 3600:g} h")
        _restore_test_due(settings, state, problems)
        _success_rate(settings, state, problems)
    if unit:
        problems.resolve(f"unit:{unit}", "the unit ran and reported again")
    alerts = problems.alerts
    fresh = {alert.key for alert in alerts}
    alerts += [Alert("PROBLEM", row["kind"], row["source"], row["destination"], row["message"], row["key"])
               for row in history.unmailed_alerts() if row["key"] not in fresh]
    for alert in alerts:
        (logger.info if alert.event == "RESOLVED" else logger.warning)("alert {}: {}", alert.subject, alert.message)
    return alerts


def _restore_test_due(settings: Settings, state: RepositoryStatus, problems: _Problems) -> None:
    if state.restore_test_overdue is None:
        return
    key = f"restore-test-due:{state.source}:{state.destination}"
    if not state.restore_test_overdue:
        problems.resolve(key, "a restore test passed")
        return
    every = restore_test_allowance(settings) / 86400
    last = (f"the last passed one ran {state.last_restore_test_at:%Y-%m-%d}"
            if state.last_restore_test == "ok" and state.last_restore_test_at else "none has passed yet")
    problems.open(key, "restore test overdue", (state.source, state.destination),
                  f"no restore test passed in the last {every:g} days ({last}): run "
                  f"`runner exec restore-test {state.source} --destination {state.destination}`")


def _success_rate(settings: Settings, state: RepositoryStatus, problems: _Problems) -> None:
    key = f"success-rate:{state.source}:{state.destination}"
    if not state.below_success_floor:
        problems.resolve(key, f"backups succeeded {state.success_rate_30d:.1%} of the time over 30 days"
                         if state.success_rate_30d is not None else "no backup ran in 30 days")
        return
    problems.open(key, "backup success rate low", (state.source, state.destination),
                  f"backups succeeded {state.success_rate_30d:.1%} of the time over the last 30 days, under the "
                  f"{settings.monitoring.success_rate_floor:.1%} floor (90 days: {state.success_rate_90d:.1%})")


def without_history(settings: Settings, runs: list[tuple[str, RunResult]], error: Exception) -> list[Alert]:
    """When the history cannot be used: every failure, undeduplicated, and the history's own problem."""
    path = settings.paths.state_dir / "history.sqlite"
    alerts = [Alert("PROBLEM", "run history unusable", "-", "-",
                    f"{path}: {error}. Runs are not recorded and alerts not deduplicated until it is repaired or "
                    "moved aside (a new one is then created); `runner status` cannot report.")]
    alerts += [Alert("PROBLEM", _kind_of_failure(kind, result), result.source, result.destination, result.message)
               for kind, result in runs if result.status.is_failure]
    for alert in alerts:
        logger.error("alert {}: {}", alert.subject, alert.message)
    return alerts


def _overdue(settings: Settings, history: History, state, now: datetime) -> bool:
    """Past the RPO, counting a never-successful source from its first run."""
    if state.last_success:
        return True
    first = history.runs(kind=recovery_kind(settings, state.destination), source=state.source,
                         destination=state.destination)
    return bool(first) and (now - first[-1].started_at).total_seconds() > settings.monitoring.rpo


def _uncovered_buckets(history: History, result: RunResult, problems: _Problems) -> None:
    """A NOTICE once per bucket no backup covers (sources.minio.buckets leaves it out); forgotten once
    it is covered or gone, so that it is noticed again if it comes back."""
    uncovered = set(result.figures.get("uncovered_buckets") or [])
    if "uncovered_buckets" not in result.figures:
        return
    for key in [key for key in history.open_alerts() if key.startswith(f"uncovered:{result.source}:")]:
        if key.rsplit(":", 1)[1] not in uncovered:
            history.resolve_alert(key, "the bucket is backed up now, or gone")
    for bucket in sorted(uncovered):
        key = f"uncovered:{result.source}:{bucket}"
        message = (f"bucket {bucket} on the S3 server is not in sources.{result.source}.buckets: no backup covers it. "
                   f"Add it to the list, or leave it out knowingly.")
        kind = f"bucket {bucket} not backed up"
        if history.open_alert(key, kind, result.source, "-", message):
            problems.alerts.append(Alert("NOTICE", kind, result.source, "-", message, key))


def _size_anomaly(settings: Settings, history: History, result: RunResult) -> list[Alert]:
    successes = [run for run in history.runs(kind="backup", source=result.source, destination=result.destination)
                 if run.status == Status.OK.value]
    if len(successes) < 2:
        return []
    change = size_change(successes[0], successes[1])
    if change is None or abs(change) <= settings.monitoring.size_change:
        return []
    message = (f"the backup read {size_text(successes[0].bytes_processed)}, {change:+.0%} against the previous "
               f"successful one ({size_text(successes[1].bytes_processed)})")
    key = f"size:{result.source}:{result.destination}"
    history.notice(key, "backup size anomaly", result.source, result.destination, message)
    return [Alert("NOTICE", "backup size anomaly", result.source, result.destination, message)]


def unit_failed(settings: Settings, unit: str, within: int) -> list[Alert]:
    """A systemd unit of the runner failed: alert unless its runner got to report (its failures were
    alerted then). It did when its last invocation, started within `within` seconds, ended."""
    now = datetime.now(UTC)
    history: History | None = None
    last = None
    try:
        history = open_history(settings.paths.state_dir)
        last = history.last_invocation(unit)
    except HISTORY_ERRORS as error:
        history = None
        logger.error("the run history cannot be read: {}", error)
    started = datetime.fromisoformat(last["started_at"]) if last else None
    recent = started is not None and (now - started).total_seconds() <= within
    if last and recent and last["ended_at"]:
        logger.info("{} failed after its runner reported (exit code {}): alerted then", unit, last["exit_code"])
        return []
    if recent and started:
        what = (f"its runner started at {started:%Y-%m-%d %H:%M} UTC and never finished reporting: it was "
                "killed, timed out or crashed")
    else:
        what = "its runner did not start (configuration, image, Podman or the history)"
    message = f"systemd unit {unit} failed: {what}. See `journalctl -u {unit}`."
    alert = Alert("PROBLEM", "runner did not report", unit, "-", message, f"unit:{unit}")
    if history is not None:
        try:
            announced = not history.open_alert(alert.key, alert.kind, unit, "-", message)
            if announced and alert.key not in {row["key"] for row in history.unmailed_alerts()}:
                return []
        except HISTORY_ERRORS as error:
            history = None
            logger.error("the run history cannot be written: {}", error)
    logger.error("alert: {}", message)
    delivered(settings, history, [alert])
    return [alert]


def delivered(settings: Settings, history: History | None, alerts: list[Alert]) -> bool:
    """Send the alerts on every channel: mail, and each Apprise target of alerts.apprise_urls_file. A
    problem is noted as delivered on each channel it went out on, and as mailed (not to be resent)
    once every channel has it; a channel that failed gets it again with the next report. One channel
    failing never stops the others. True when every channel has every alert."""
    if not alerts:
        return True
    keys = [alert.key for alert in alerts if alert.key]
    done: dict[str, set[str]] = {}
    if history is not None and keys:
        try:
            done = history.delivered_on(keys)
        except HISTORY_ERRORS as error:
            logger.error("could not read from the history where the alerts went out already: {}", error)
    complete = True
    for channel, deliver in _channels(settings):
        batch = [alert for alert in alerts if channel not in done.get(alert.key, set())]
        if not batch:
            continue
        went = deliver(batch)
        complete = complete and len(went) == len(batch)
        if history is not None and (sent := [alert.key for alert in went if alert.key]):
            try:
                history.mark_delivered(sent, channel)
            except HISTORY_ERRORS as error:
                logger.error("could not note in the history that the alerts went out on {}: {}", channel, error)
    if history is not None and keys and complete:
        try:
            history.mark_mailed(keys)
        except HISTORY_ERRORS as error:
            logger.error("could not note in the history that the alerts were mailed: {}", error)
    return complete


Deliver = Callable[[list[Alert]], list[Alert]]  # sends what it can, returns the alerts that went out


def _channels(settings: Settings) -> list[tuple[str, Deliver]]:
    """(name, deliver) for the mail and each Apprise target; an unreadable URLs file is one failing channel."""
    channels: list[tuple[str, Deliver]] = [("mail", lambda batch: batch if send(settings, batch) else [])]
    try:
        found = notify.targets(settings)
    except (OSError, SecretFileError) as error:
        def unreadable(batch: list[Alert], reason: str = str(error)) -> list[Alert]:
            logger.error("could not send {} alert(s) through Apprise: {} (they go out again with the next report)",
                         len(batch), reason)
            return []
        return [*channels, ("apprise", unreadable)]
    return channels + [(target.channel, functools.partial(_notify, target)) for target in found]


def _notify(target: notify.Target, alerts: list[Alert]) -> list[Alert]:
    """One notification per alert, until one fails (the target is then likely down: the rest wait too)."""
    for number, alert in enumerate(alerts):
        reason = notify.send(target, alert.subject, _text(alert), alert.event)
        if reason:
            logger.error("could not send {} alert(s) to {}: {} (they go out again with the next report)",
                         len(alerts) - number, target.label, reason)
            return alerts[:number]
    logger.info("sent {} alert(s) to {}", len(alerts), target.label)
    return alerts


def send(settings: Settings, alerts: list[Alert]) -> bool:
    """Mail each alert; True when they went out (or there is nobody to mail: the log has them). A mail
    that cannot be sent is logged, never fatal."""
    config = settings.alerts
    if not alerts or not config.email_to:
        return True
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
        return True
    except (OSError, smtplib.SMTPException, SecretFileError) as error:
        logger.error("could not mail {} alert(s) through {}:{}: {} (they go out again with the next report)",
                     len(alerts), config.smtp_host, config.smtp_port, error)
        return False


def _mail(settings: Settings, alert: Alert) -> EmailMessage:
    mail = EmailMessage()
    mail["Subject"] = alert.subject
    mail["From"] = settings.alerts.email_from
    mail["To"] = ", ".join(settings.alerts.email_to)
    mail.set_content(_text(alert))
    return mail


def _text(alert: Alert) -> str:
    """What a mail or a notification says about the alert."""
    return (f"{alert.event}: {alert.kind}\n\nsource:      {alert.source}\ndestination: {alert.destination}\n"
            f"host:        {socket.gethostname()}\ntime:        {datetime.now(UTC):%Y-%m-%d %H:%M} UTC\n\n"
            f"{mask(alert.message)}\n\n`runner status` shows the state of every source; "
            "the runbook is docs/disaster-recovery.md.\n")

