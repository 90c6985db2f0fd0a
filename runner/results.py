"""What a job run came to, for one source on one destination, and the command's exit code."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from loguru import logger

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_DEFERRED = 75  # EX_TEMPFAIL: nothing failed, but something was put off (quota, another run)


class Status(Enum):
    OK = "ok"
    PARTIAL = "partial"  # a snapshot was stored, but some of the source could not be in it
    FAILED = "failed"
    TIMED_OUT = "timed out"
    UNAVAILABLE = "destination unavailable"
    REPOSITORY_MISSING = "repository missing"
    DEFERRED = "deferred by quota"
    SKIPPED = "skipped by lock"
    CHECK_FAILED = "check failed"
    RESTORE_MISMATCH = "restore mismatch"

    @property
    def is_failure(self) -> bool:
        return self not in (Status.OK, Status.DEFERRED, Status.SKIPPED)


@dataclass
class RunResult:
    source: str
    destination: str
    status: Status
    message: str = ""
    snapshot_id: str | None = None
    duration: float = 0.0
    figures: dict[str, Any] = field(default_factory=dict)
    removed: list[dict] = field(default_factory=list)  # snapshots forgotten (prune): id, time


def unexpected(error: Exception) -> str:
    """An error nobody planned for, as a result's message (the traceback goes to the log at DEBUG)."""
    logger.opt(exception=error).debug("unexpected error")
    return f"unexpected {type(error).__name__}: {error}"


def exit_code(results: list[RunResult]) -> int:
    if any(result.status.is_failure for result in results):
        return EXIT_FAILED
    if any(result.status in (Status.DEFERRED, Status.SKIPPED) for result in results):
        return EXIT_DEFERRED
    return EXIT_OK
