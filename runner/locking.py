"""The runner's own locks, files in the state directory: one per repository, so two runner jobs
(from two timers, or a timer and a person) never work on one repository at once, and one per source,
held while a backup stages the source (the Vault snapshot, the MinIO mirror, the manifests) and
uploads it. A second run waits `locks.wait`, then reports itself skipped. (restic's locks inside
the repository are the repository handle's business: runner/repository.py.)
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from typing import IO

from loguru import logger

from runner.settings import Settings

POLL_SECONDS = 0.5


def repository_lock(settings: Settings, destination: str, source: str) -> AbstractContextManager[bool]:
    """Hold the runner's lock on one repository; yields False if another job kept it past locks.wait."""
    return _lock(settings, f"{destination}--{source}", f"{source} on {destination}")


def source_lock(settings: Settings, source: str) -> AbstractContextManager[bool]:
    """Hold the runner's lock on one source's staging; yields False if another backup kept it past locks.wait."""
    return _lock(settings, f"source--{source}", f"{source}'s staging")


@contextmanager
def _lock(settings: Settings, name: str, what: str) -> Iterator[bool]:
    directory = settings.paths.state_dir / "locks"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.lock"
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
                    logger.warning("{}: still held by {} after {} s", what, holder, settings.locks.wait)
                    yield False
                    return
                time.sleep(POLL_SECONDS)
        _note(handle, f"pid {os.getpid()} since {datetime.now(UTC).isoformat(timespec='seconds')}\n")
        try:
            yield True
        finally:
            _note(handle, "")
            fcntl.flock(handle, fcntl.LOCK_UN)


def _note(handle: IO[str], text: str) -> None:
    """Who holds the lock, for the message of a run that waited in vain; the lock holds without it."""
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(text)
        handle.flush()
    except OSError as error:
        logger.warning("could not note the lock's holder in {}: {}", handle.name, error)


def skipped_message(settings: Settings) -> str:
    return f"skipped: another runner job worked on this repository for more than {settings.locks.wait} s"
