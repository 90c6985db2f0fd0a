"""Getting data back, for every source: the destination to read from, a snapshot fetched into a
working directory that is removed whatever happens, restored files put in place, phases timed;
and the frame every restore test runs in. What a restore or restore test does with the data is
the source's own (runner/sources/<name>/restore.py and restore_test.py).

Restore order after a disaster: Vault (it holds every other credential), then PostgreSQL, then
MinIO, then plain files. Each restore refuses to overwrite a non-empty target without `force`; a
forced one moves what was there aside instead of mixing with or deleting it. Each ends with the
next step to take.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loguru import logger

from runner.destinations import Destination, configured
from runner.engine import Engine, JobError
from runner.repository import Repository, RepositoryError, opened
from runner.restic import Snapshot
from runner.results import RunResult, Status, unexpected
from runner.settings import Settings
from runner.workspace import job_dir, remove_tree


class RestoreError(Exception):
    """The restore cannot be done as asked (target in use, a step failed); the message says why."""


class Mismatch(Exception):
    """The restored data differs from what was backed up."""


def destination_for(settings: Settings, name: str | None) -> Destination:
    try:
        chosen = configured(settings, [name] if name else [])
    except ValueError as error:
        raise RestoreError(str(error)) from None
    if not chosen:
        raise RestoreError("no destination is enabled")
    return chosen[0]


@dataclass(frozen=True)
class RestoreRequest:
    """What a person asked `runner restore <source>` for: the common options, and the source's own."""

    settings: Settings
    engine: Engine
    destination: Destination
    snapshot: str  # "latest", or the first characters of a snapshot id
    force: bool
    options: dict[str, Any] = field(default_factory=dict)


@contextmanager
def fetched(request: RestoreRequest, source: str, work: Path | None = None) -> Iterator[tuple[Snapshot, Path]]:
    """The requested snapshot of `source`, restored into a working directory (by default in staging)
    that is removed afterwards, whatever happens."""
    settings = request.settings
    work = work or settings.paths.staging_dir / f"restore-{source}"
    remove_tree(work)  # what an interrupted restore left
    try:
        with opened(settings, request.engine, request.destination, source) as repository:
            snapshot = repository.find(source, request.snapshot)
            repository.restore(snapshot, work)
        yield snapshot, work
    finally:
        remove_tree(work)


def put_in_place(restored: Path, target: Path) -> Path | None:
    """Move a completely restored tree to `target` by renaming (no second copy of the data, no extra
    disk space). A target that already holds files (a forced restore) is first moved aside, whole, to
    `<target>.before-restore-<UTC time>` beside it: nothing is deleted, and nothing of the old contents
    stays mixed in with the restored tree. Returns where the old contents went (None if there were
    none). What is moved into place becomes the runner's."""
    _refuse_mount_point(target)
    aside = None
    if target.exists() and any(target.iterdir()):
        aside = moved_aside_name(target)
        try:
            target.rename(aside)
        except OSError as error:
            raise RestoreError(f"cannot move the old contents of {target} aside to {aside}: {error}") from None
    elif target.exists():
        target.rmdir()
    try:
        restored.replace(target)
    except OSError as error:
        if aside is not None:
            aside.rename(target)  # the old contents back where they were
        raise RestoreError(f"cannot move the restored tree to {target}: {error}") from None
    _adopt(target)
    return aside


def moved_aside_name(target: Path) -> Path:
    """A free name beside `target` for its old contents: <target>.before-restore-<UTC time>[-N]."""
    base = target.with_name(f"{target.name}.before-restore-{datetime.now(UTC):%Y%m%dT%H%M%SZ}")
    candidate, number = base, 1
    while os.path.lexists(candidate):
        number += 1
        candidate = base.with_name(f"{base.name}-{number}")
    return candidate


def _is_real_dir(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()


def _adopt(path: Path) -> None:
    for each in (path, *(path.rglob("*") if _is_real_dir(path) else ())):
        os.lchown(each, os.getuid(), os.getgid())


def _refuse_mount_point(target: Path) -> None:
    if os.path.ismount(target):
        raise RestoreError(f"{target} is a mount point, which a restored tree cannot replace: restore into a "
                           "directory inside it")


def refuse_non_empty(target: Path, force: bool) -> None:
    _refuse_mount_point(target)
    if target.exists() and any(target.iterdir()) and not force:
        raise RestoreError(f"{target} is not empty; use --force to move its contents aside (to "
                           f"{target.name}.before-restore-<UTC time>, beside it) and restore in its place")


class Phases:
    """Seconds per phase of a restore (fetch, load, verify...): the data for RTO planning."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def timed(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            self.seconds[name] = round(time.monotonic() - started, 2)


@dataclass(frozen=True)
class Verified:
    """What a passed restore test proved, and its figures (snapshot_id, restored_bytes, ...)."""

    message: str
    figures: dict[str, Any]


@dataclass
class Trial:
    """One restore test of one source: where to read, where to work, the phases it times."""

    settings: Settings
    engine: Engine
    destination: Destination
    source: str
    work: Path
    phases: Phases = field(default_factory=Phases)

    def repository(self) -> AbstractContextManager[Repository]:
        """The source's repository, opened (and locked) for as long as the `with` lasts."""
        return opened(self.settings, self.engine, self.destination, self.source)


def run_test(settings: Settings, engine: Engine, source: str, test: Callable[[Trial], Verified],
             destination: Destination) -> RunResult:
    """Run one source's restore test in a working directory of its own, removed afterwards; a
    difference is a 'restore mismatch', anything that stops the test a failure."""
    work = job_dir(settings.paths.staging_dir / f"restore-test-{source}-{secrets.token_hex(3)}", settings)
    trial = Trial(settings, engine, destination, source, work)
    started = time.monotonic()
    status, figures = Status.OK, {}
    try:
        verified = test(trial)
        message, figures = verified.message, verified.figures
    except Mismatch as error:
        status, message = Status.RESTORE_MISMATCH, f"restore test failed: {error}"
    except (RestoreError, RepositoryError, JobError) as error:
        status, message = Status.FAILED, f"restore test could not run: {error}"
    except Exception as error:  # contained: this test fails, the next one runs
        status, message = Status.FAILED, f"restore test could not run: {unexpected(error)}"
    finally:
        remove_tree(work)
    figures = {**figures, "phase_seconds": trial.phases.seconds}
    log = logger.info if status is Status.OK else logger.error
    log("restore test of {} from {}: {} ({})", source, destination.name, message, trial.phases.seconds)
    return RunResult(source, destination.name, status, message, figures.get("snapshot_id"),
                     time.monotonic() - started, figures)
