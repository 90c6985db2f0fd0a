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
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loguru import logger

from runner.destinations import Destination, configured
from runner.engine import Engine, JobError
from runner.repository import Repository, RepositoryError, opened
from runner.restic import Snapshot
from runner.results import RunResult, Status, unexpected
from runner.settings import Settings
from runner.units import duration_text
from runner.workspace import job_dir, remove_tree

if TYPE_CHECKING:
    from runner.sources.base import Source


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


def restore_test_destination(settings: Settings, source: str, forced: str | None = None) -> Destination:
    """Where `source`'s restore test reads from: `forced` (--destination) when given; else, of the rotation
    (restore_tests.destination alone when it is set, else every enabled destination), the one whose last
    restore test of the source is the oldest, from the run history (never tested first). When the history
    cannot be read, the first of the rotation (the history's own problem is alerted)."""
    from runner.monitoring.alerts import HISTORY_ERRORS
    from runner.monitoring.history import open_history
    from runner.monitoring.status import next_restore_test, restore_test_rotation

    if forced:
        return destination_for(settings, forced)
    rotation = restore_test_rotation(settings)
    if not rotation:
        raise RestoreError("no destination is enabled")
    try:
        runs = open_history(settings.paths.state_dir).runs(kind="restore-test", source=source)
    except (*HISTORY_ERRORS, RuntimeError) as error:
        logger.error("the run history cannot be read, so the restore test of {} reads from {}, the first "
                     "destination: {}", source, rotation[0], error)
        return destination_for(settings, rotation[0])
    last: dict[str, datetime] = {}
    for run in runs:  # newest first
        last.setdefault(run.destination, run.ended_at)
    return destination_for(settings, next_restore_test(rotation, last))


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
def fetched(request: RestoreRequest, source: str, work: Path | None = None,
            includes: Sequence[str] = ()) -> Iterator[tuple[Snapshot, Path]]:
    """The requested snapshot of `source`, restored into a working directory (by default in staging)
    that is removed afterwards, whatever happens. With `includes` (restic.include_pattern), only the
    paths matching them: the caller checks that what it needs came."""
    settings = request.settings
    work = work or settings.paths.staging_dir / f"restore-{source}"
    remove_tree(work)  # what an interrupted restore left
    try:
        with opened(settings, request.engine, request.destination, source) as repository:
            snapshot = repository.pick(source, request.snapshot)
            if includes:
                repository.restore_only(snapshot, work, includes)
            else:
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

    def text(self) -> str:
        """"fetch 12 s, load 1 min 3 s" for the log line."""
        return ", ".join(f"{name} {duration_text(seconds)}" for name, seconds in self.seconds.items())


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
    log("restore test of {} from {}: {} ({})", source, destination.name, message,
        trial.phases.text() or duration_text(time.monotonic() - started))
    return RunResult(source, destination.name, status, message, figures.get("snapshot_id"),
                     time.monotonic() - started, figures)


# Browsing: `runner snapshots` and `runner snapshots show` -------------------------------------------


@dataclass(frozen=True)
class Listed:
    """One snapshot as `runner snapshots` shows it: with its manifest (the sidecar snapshot tagged
    for:<key>, if any) and when a restore test last passed on it."""

    snapshot: Snapshot
    manifest: Snapshot | None
    tested: str | None  # ISO time of the last passed restore test; None: none passed (or the history is unreadable)


@dataclass(frozen=True)
class Listing:
    """What one repository holds: its snapshots, newest last, and the manifests stored beside them."""

    source: str
    destination: str
    location: str
    snapshots: tuple[Listed, ...] = ()
    manifests: tuple[Snapshot, ...] = ()  # sidecar snapshots (tagged for:<key>), not restorable on their own
    error: str = ""  # why the repository could not be listed

    @property
    def keeps_manifests(self) -> bool:
        return bool(self.manifests)

    def owner(self, manifest: Snapshot) -> str | None:
        """The id of the snapshot a manifest describes; None when that one is gone (prune forgets the manifest)."""
        return next((row.snapshot.id for row in self.snapshots
                     if row.snapshot.manifest_key == manifest.tag_value("for:")), None)


def passed_tests(settings: Settings) -> dict[tuple[str, str, str], str]:
    """(source, destination, snapshot id) -> when a restore test last passed on that snapshot, from the run
    history. Raises RestoreError when the history cannot be read."""
    from runner.monitoring.alerts import HISTORY_ERRORS
    from runner.monitoring.history import open_history

    try:
        runs = open_history(settings.paths.state_dir).runs(kind="restore-test")
    except (*HISTORY_ERRORS, RuntimeError) as error:
        raise RestoreError(f"the run history cannot be read, so which snapshots passed a restore test is not "
                           f"known: {error}") from None
    passed: dict[tuple[str, str, str], str] = {}
    for run in runs:  # newest first: the first one found is the last to pass
        if run.status == Status.OK.value and run.snapshot_id:
            when = run.ended_at.isoformat(timespec="seconds")
            passed.setdefault((run.source, run.destination, run.snapshot_id), when)
    return passed


def listing(settings: Settings, engine: Engine, destination: Destination, source: str,
            tested: Mapping[tuple[str, str, str], str]) -> Listing:
    """Every snapshot of one repository, with its manifest and restore test; a repository that cannot be
    read gives a Listing naming the error."""
    try:
        with opened(settings, engine, destination, source) as repository:
            found, location = repository.snapshots(), repository.location
    except RepositoryError as error:
        return Listing(source, destination.name, destination.describe(source), error=str(error))
    manifests = {snapshot.tag_value("for:"): snapshot for snapshot in found if snapshot.tag_value("for:")}
    rows = [Listed(snapshot, manifests.get(snapshot.manifest_key), tested.get((source, destination.name, snapshot.id)))
            for snapshot in sorted(found, key=lambda snapshot: snapshot.time) if not snapshot.tag_value("for:")]
    return Listing(source, destination.name, location, tuple(rows),
                   tuple(sorted(manifests.values(), key=lambda snapshot: snapshot.time)))


@dataclass(frozen=True)
class ShowRequest:
    """What `runner snapshots show` asks a source for: one snapshot, in a repository held open, and a working
    directory (removed afterwards) for what is fetched of it. Fetch only what is needed: one file
    (repository.dump) or some paths (repository.restore_only), never the whole snapshot."""

    settings: Settings
    engine: Engine
    repository: Repository
    snapshot: Snapshot
    work: Path
    prefix: str | None = None  # only what lies under this (a MinIO bucket/key prefix, a path)


@dataclass(frozen=True)
class Contents:
    """What a snapshot holds, in its source's own terms: a summary line, a table, and the same as data
    (for --json)."""

    summary: str
    columns: tuple[str, ...] = ()
    rows: tuple[tuple[str, ...], ...] = ()
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Shown:
    source: str
    destination: str
    location: str
    snapshot: Snapshot
    contents: Contents


def show(settings: Settings, engine: Engine, destination: Destination, sources: Sequence[Source], wanted: str,
         prefix: str | None = None) -> Shown:
    """The snapshot whose id starts with `wanted` (or the latest, for one source), looked for in each source's
    repository on `destination`, described by its source."""
    if wanted == "latest" and len(sources) != 1:
        raise RestoreError("'latest' needs --source: the latest snapshot of which source?")
    matches: list[tuple[Source, Snapshot]] = []
    unsearched = []
    for source in sources:
        try:
            with opened(settings, engine, destination, source.NAME) as repository:
                if wanted == "latest":
                    matches.append((source, repository.find(source.NAME)))
                else:
                    matches += [(source, snapshot) for snapshot in repository.snapshots(source.NAME)
                                if snapshot.id.startswith(wanted)]
        except RepositoryError as error:
            if len(sources) == 1:
                raise
            unsearched.append(f"{source.NAME} ({error})")
    if not matches:
        searched = ", ".join(source.NAME for source in sources)
        missed = f"; could not look in: {'; '.join(unsearched)}" if unsearched else ""
        raise RestoreError(f"no snapshot {wanted} in the {searched} repositories on {destination.name}{missed}")
    if len(matches) > 1:
        named = ", ".join(f"{source.NAME} {snapshot.short_id}" for source, snapshot in matches[:5])
        raise RestoreError(f"{wanted} is ambiguous: {len(matches)} snapshots start with it ({named}); give more of "
                           "the id, or --source")
    for missed in unsearched:
        logger.warning("could not look for {} in the repository of {}", wanted, missed)
    source, snapshot = matches[0]
    work = settings.paths.staging_dir / f"show-{source.NAME}"
    remove_tree(work)
    try:
        with opened(settings, engine, destination, source.NAME) as repository:
            contents = source.show_snapshot(ShowRequest(settings, engine, repository, snapshot,
                                                        job_dir(work, settings), prefix))
            location = repository.location
    finally:
        remove_tree(work)
    return Shown(source.NAME, destination.name, location, snapshot, contents)
