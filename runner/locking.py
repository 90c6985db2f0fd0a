"""Two kinds of locks around every restic job on a repository.

1. The runner's own lock: a file lock per repository in the state directory, so two runner jobs
   (from two timers, or a timer and a person) never work on one repository at once. A second run
   waits `locks.wait`, then reports itself skipped.

2. restic's locks inside the repository. A job that was killed leaves its lock behind, and restic
   does not skip stale locks when it takes a new one. While holding the runner's lock (so no runner
   job is alive for the repository), the runner looks at the repository's locks; one that a runner
   job wrote (host name JOB_HOSTNAME) and that is older than `locks.stale_after` is removed with
   `restic unlock` (never `--remove-all`).

   `restic unlock` removes only locks restic itself finds stale: older than 30 minutes, or written
   on the same host by a process that no longer exists. Every job container has the same host
   name and runs restic as a low PID under tini; the unlock job runs in a fresh container where
   the low PIDs are free (it uses a few up first), so restic sees exactly the dead jobs' locks as
   stale. Locks from other hosts (a person running restic on a laptop) are never touched: the job
   waits for them (`--retry-lock`) and then fails with restic's lock status.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone

from loguru import logger

from runner import restic
from runner.destinations import RepositoryAccess
from runner.engine import JOB_HOSTNAME, Engine
from runner.settings import Settings

POLL_SECONDS = 0.5
# Processes the unlock job starts and ends first, so that restic runs above the PIDs job containers use.
SPENT_PIDS = 64


@contextmanager
def repository_lock(settings: Settings, destination: str, source: str):
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
        handle.write(f"pid {os.getpid()} since {datetime.now(timezone.utc).isoformat(timespec='seconds')}\n")
        handle.flush()
        try:
            yield True
        finally:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle, fcntl.LOCK_UN)


def skipped_message(settings: Settings) -> str:
    return f"skipped: another runner job worked on this repository for more than {settings.locks.wait} s"


@dataclass(frozen=True)
class ResticLock:
    id: str
    time: datetime
    hostname: str
    pid: int
    exclusive: bool

    def age(self) -> float:
        return (datetime.now(timezone.utc) - self.time).total_seconds()


def parse_locks(lines: list[str]) -> list[ResticLock]:
    locks, current, body = [], None, []
    for line in [*lines, "lock -"]:
        if line.startswith("lock "):
            if current and body:
                data = json.loads("\n".join(body))
                locks.append(ResticLock(current, _parse_time(data["time"]), data.get("hostname", ""),
                                        int(data.get("pid", 0)), bool(data.get("exclusive"))))
            current, body = line.split(None, 1)[1].strip(), []
        elif line.strip():
            body.append(line)
    return locks


def _parse_time(value: str) -> datetime:
    # restic writes nanoseconds; Python takes microseconds
    return datetime.fromisoformat(re.sub(r"(\.\d{6})\d+", r"\1", value).replace("Z", "+00:00"))


def clear_stale_locks(settings: Settings, engine: Engine, access: RepositoryAccess) -> list[ResticLock]:
    """Remove the locks of this runner's dead jobs; return them. Call only while holding repository_lock."""
    from runner.repositories import restic_job

    if access.local_path is not None and not any((access.local_path / "locks").glob("*")):
        return []  # a repository on this host without a single lock: nothing to look at
    report = engine.run(restic_job(access, "locks", restic.locks_report(access.repository)))
    if not report.ok:
        logger.warning("could not list the locks of {}: {}", access.location, " ".join(report.output_tail[-2:]))
        return []
    locks = parse_locks(report.stdout)
    stale = [lock for lock in locks if lock.hostname == JOB_HOSTNAME and lock.age() >= settings.locks.stale_after]
    for lock in locks:
        if lock not in stale:
            logger.info("lock {} on {} from {} ({}) is not this runner's stale lock: left alone", lock.id[:8],
                        access.location, lock.hostname, lock.time.isoformat(timespec="seconds"))
    if not stale:
        return []
    spend = f'i=0; while [ $i -lt {SPENT_PIDS} ]; do /bin/true; i=$((i+1)); done; exec "$@"'
    job = restic_job(access, "unlock", ["-c", spend, "unlock", *restic.unlock(access.repository)])
    result = engine.run(dataclasses.replace(job, entrypoint=("/bin/sh",)))
    if not result.ok:
        logger.error("restic unlock on {} failed: {}", access.location, " ".join(result.output_tail[-2:]))
        return []
    for lock in stale:
        logger.warning("removed stale restic lock {} on {} (taken {} by a runner job that no longer runs)",
                       lock.id[:8], access.location, lock.time.isoformat(timespec="seconds"))
    return stale
