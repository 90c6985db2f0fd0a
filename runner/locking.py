"""The runner's own lock on a repository: a file lock per repository in the state directory, so
two runner jobs (from two timers, or a timer and a person) never work on one repository at once.
A second run waits `locks.wait`, then reports itself skipped. (restic's locks inside the repository
are the repository handle's business: runner/repository.py.)
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from loguru import logger

from runner.settings import Settings

POLL_SECONDS = 0.5


@contextmanager
def repository_lock(settings: Settings, destination: str, source: str) -> Iterator[bool]:
    """Hold the runner's lock on one repository; yields False if another job kept it past locks.wait."""
    directory = settings.paths.state_dir / "locks"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{destination}--{source}.lock"
    with open(path, "a+") as handle:
        deadline = time.monotonic() + settings.locks.wait
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    handle.seek(0)
                    holder = handle.read().strip() or "another runner job"
                    logger.warning("{} on {}: still held by {} after {} s", source, destination, holder,
                                   settings.locks.wait)
                    yield False
                    return
                time.sleep(POLL_SECONDS)
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} since {datetime.now(UTC).isoformat(timespec='seconds')}\n")
        handle.flush()
        try:
            yield True
        finally:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle, fcntl.LOCK_UN)


def skipped_message(settings: Settings) -> str:
    return f"skipped: another runner job worked on this repository for more than {settings.locks.wait} s"
