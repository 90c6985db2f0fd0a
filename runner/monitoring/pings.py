"""Start, success and failure pings in the healthchecks.io convention, one check per scheduled job.

alerts.ping_urls_file (a secret file: the URLs carry a token) holds one 'JOB = BASE-URL' line per job:
backup-<source>, check, prune, restore-test, copy, status. A job started by its systemd unit fetches
BASE-URL/start when it begins, then BASE-URL when it succeeded or BASE-URL/fail when it failed, so
the checker notices a job that failed, hung (a start without an end) or never ran; a unit whose
runner died without reporting is pinged as failed by `runner notify unit-failed`. Runs by hand ping
nothing: a manual `runner status` must not hide a timer that stopped firing. A ping that fails is
logged, never fatal, and names the job, not the URL.
"""

from __future__ import annotations

import re

import requests
from loguru import logger

from runner.monitoring.notify import scrubbed
from runner.secrets.files import SecretFileError, check_secret_file
from runner.settings import Settings
from runner.sources import SOURCES

JOBS = (*(f"backup-{source}" for source in SOURCES), "check", "prune", "restore-test", "copy", "status")
LINE = re.compile(r"^\s*([a-z0-9-]+)\s*=\s*(https?://\S+)\s*$")


class PingFileError(ValueError):
    """The ping URLs file has a line that is not 'JOB = BASE-URL'; the message names the file and line."""


def base_urls(settings: Settings) -> dict[str, str]:
    """Each job's base ping URL from alerts.ping_urls_file ({} when it is not set). Raises
    SecretFileError or PingFileError; neither quotes a URL."""
    path = settings.alerts.ping_urls_file
    if path is None:
        return {}
    check_secret_file(settings, path, "ping URLs file (alerts.ping_urls_file)")
    urls: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip() or line.strip().startswith("#"):
            continue
        match = LINE.match(line)
        if not match:
            raise PingFileError(f"{path} line {number}: not 'JOB = BASE-URL' with an http(s) URL")
        job, url = match.groups()
        if job not in JOBS:
            raise PingFileError(f"{path} line {number}: unknown job {job!r} (known: {', '.join(JOBS)})")
        urls[job] = url.rstrip("/")
    return urls


def job_of_unit(unit: str) -> str | None:
    """The job a Quadlet unit runs (offsite-backup-vault.service: backup-vault), None for other units."""
    name = unit.removesuffix(".service").removeprefix("offsite-backup-")
    job = f"backup-{name}" if name in SOURCES else name
    return job if job in JOBS else None


class Pings:
    """The pings of one runner invocation: none unless a systemd unit started it (`unit`)."""

    def __init__(self, settings: Settings, unit: str):
        self.urls: dict[str, str] = {}
        if not unit:
            return
        try:
            self.urls = base_urls(settings)
        except (OSError, SecretFileError, PingFileError) as error:
            logger.error("no pings are sent: {}", error)

    def start(self, job: str) -> None:
        self._ping(job, "/start")

    def finish(self, job: str, failed: bool) -> None:
        self._ping(job, "/fail" if failed else "")

    def _ping(self, job: str, suffix: str) -> None:
        base = self.urls.get(job)
        if not base:
            return
        what = {"/start": "start", "/fail": "failure", "": "success"}[suffix]
        try:
            requests.get(base + suffix, timeout=10).raise_for_status()
            logger.debug("pinged the {} of {}", what, job)
        except requests.RequestException as error:
            logger.warning("the {} ping of {} failed: {}", what, job, scrubbed(str(error), base + suffix))
