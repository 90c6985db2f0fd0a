"""Logging setup and the masking of secret values in everything the runner logs."""

from __future__ import annotations

import re
import shlex
import sys
from collections.abc import Iterable

from loguru import logger

MASK = "********"

_secrets: set[str] = set()
# Values after these words are masked even when the runner never saw the secret itself.
_ASSIGNMENT = re.compile(
    r"(?i)\b((?:[\w-]*(?:password|passwd|secret|token|passphrase|access[_-]?key|api[_-]?key))"
    r"[\"']?\s*[=:]\s*[\"']?)([^\s\"',;&]+)"
)
# A URL's password runs from the first ':' after the user name to the last '@' before the host (RFC 3986:
# the user information ends at the last '@' of the authority, which ends at the first '/', '?' or '#'),
# so a password holding '@' or ':' is masked whole.
_URL_CREDENTIALS = re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^/?#\s:@]+:)([^/?#\s]+)(@)")


def register_secret(value: str) -> None:
    """Mask this exact value wherever it would be logged from now on."""
    if value and len(value.strip()) >= 4:
        _secrets.add(value.strip())


def mask(text: str) -> str:
    for secret in sorted(_secrets, key=len, reverse=True):
        text = text.replace(secret, MASK)
    text = _URL_CREDENTIALS.sub(lambda m: m.group(1) + MASK + m.group(3), text)
    return _ASSIGNMENT.sub(lambda m: m.group(1) + MASK, text)


def contains_secret(text: str) -> bool:
    return any(secret in text for secret in _secrets)


def format_command(argv: Iterable[str]) -> str:
    return mask(shlex.join(argv))


def _mask_record(record) -> None:
    record["message"] = mask(record["message"])


def setup(level: str = "INFO", format: str = "text") -> None:
    """Log to stderr (which systemd sends to the journal): readable lines, or one JSON object per line."""
    logger.remove()
    logger.configure(patcher=_mask_record)
    # diagnose would print local variables
    if format == "json":
        logger.add(sys.stderr, serialize=True, level=level, backtrace=False, diagnose=False)
    else:
        logger.add(sys.stderr, colorize=None, level=level, backtrace=False, diagnose=False,
                   format="<green>{time:YYYY-MM-DD HH:mm:ss}</green> <level>{level: <7}</level> {message}")
