"""Alerts beyond mail, through Apprise: ntfy, Gotify, Matrix, Slack, Telegram, Discord, JSON webhooks...

The targets' URLs carry tokens, so they come from a secret file (alerts.apprise_urls_file, one URL
a line, rendered by Vault Agent), never from the configuration. A target is named by its line and
scheme (`apprise-2`, json), never by its URL: that name is what the history records as the channel
an alert went out on. Apprise's own log never reaches ours (its messages can quote a URL's parts):
a failure's reason is taken from it with every part of the URL masked.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlsplit

from runner.logs import MASK, register_secret
from runner.secrets.files import check_secret_file
from runner.settings import Settings

LOG_PREFIX = re.compile(r"^\S+ \S+ - [A-Z]+ - ")  # LogCapture's time and level
NOTIFY_TYPES = {"PROBLEM": "failure", "RESOLVED": "success", "NOTICE": "warning"}


@dataclass(frozen=True)
class Target:
    line: int
    url: str

    @property
    def channel(self) -> str:
        return f"apprise-{self.line}"

    @property
    def label(self) -> str:
        return f"notification target {self.line} ({self.scheme})"

    @property
    def scheme(self) -> str:
        return self.url.split("://", 1)[0].lower() if "://" in self.url else "no scheme"

    def scrub(self, text: str) -> str:
        return scrubbed(text, self.url)


def scrubbed(text: str, url: str) -> str:
    """The text with the URL and each of its parts masked."""
    for part in sorted(url_parts(url), key=len, reverse=True):
        text = text.replace(part, MASK)
    return text


def url_parts(url: str) -> set[str]:
    """The URL, its user, password, host, path segments and query values: any may be the secret."""
    parts = {url}
    try:
        split = urlsplit(url)
        parts |= {split.username or "", split.password or "", split.hostname or "", split.netloc}
        parts |= {unquote(segment) for segment in split.path.split("/")} | set(split.path.split("/"))
        parts |= {value for _, value in parse_qsl(split.query)}
    except ValueError:
        pass
    return {part for part in parts if len(part) >= 3}


def targets(settings: Settings) -> list[Target]:
    """The Apprise targets in alerts.apprise_urls_file (none when it is not set); raises
    SecretFileError when the file is missing, readable by others or unrendered."""
    path = settings.alerts.apprise_urls_file
    if path is None:
        return []
    check_secret_file(settings, path, "Apprise URLs file (alerts.apprise_urls_file)")
    found = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        url = line.strip()
        if url and not url.startswith("#"):
            found.append(Target(number, url))
            for part in url_parts(url):
                if len(part) >= 8 and not re.fullmatch(r"[\d.]+|[a-z]+", part):  # tokens, not '127.0.0.1' or 'hooks'
                    register_secret(part)
    return found


def send(target: Target, title: str, body: str, event: str) -> str:
    """Send one notification; '' when it went out, else the reason (masked)."""
    import apprise  # only when there is something to send: importing it takes a while

    # Apprise logs to the standard library's logging; nothing of it may reach stderr or the journal.
    quiet = logging.getLogger(apprise.LOGGER_NAME)
    quiet.propagate = False
    if not quiet.handlers:
        quiet.addHandler(logging.NullHandler())
    notifier = apprise.Apprise(asset=apprise.AppriseAsset(storage_mode="memory", secure_logging=True))
    if not notifier.add(target.url):
        return f"Apprise does not accept the URL on line {target.line} (is '{target.scheme}' a service it knows?)"
    reasons: list[str] = []
    with apprise.LogCapture(level=logging.WARNING) as captured:
        try:
            result = notifier.notify(body=body, title=title, notify_type=NOTIFY_TYPES.get(event, "info"))
        except Exception as error:  # a plugin's bug must not stop the other channels
            return target.scrub(f"Apprise failed: {type(error).__name__}: {error}")
        reasons = [LOG_PREFIX.sub("", line) for line in captured.getvalue().splitlines() if line.strip()]
    if result:
        return ""
    return target.scrub("; ".join(reasons[-3:]) or "Apprise reported a failure without a reason")
