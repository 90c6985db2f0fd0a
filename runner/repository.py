"""One restic repository (a source on a destination): every restic command on it, run in a job
container, and its output returned as typed results.

`opened()` is the one way a job gets a repository: the runner's lock held, the destination
reachable, the repository present, stale locks of the runner's dead jobs removed. A restic command
that fails, or whose output is not what restic documents, raises RepositoryError with the status
and message the run reports; nothing here turns an unreadable answer into an empty one.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TypeVar

from loguru import logger

from runner import restic
from runner.destinations import (
    Destination,
    DestinationUnavailable,
    RepositoryAccess,
    RepositoryMissing,
    init_hint,
)
from runner.engine import LEGACY_JOB_HOSTNAME, Engine, JobResult, JobSpec, Mount, lock_owner
from runner.locking import repository_lock, skipped_message
from runner.results import RunResult, Status
from runner.settings import RetentionSettings, Settings
from runner.workspace import job_dir

DESTINATION_LABEL = "io.offsite-backup.destination"
SOURCE_LABEL = "io.offsite-backup.source"
SIDECAR = "/sidecar"  # where manifests made before backup-with-sidecar are, in their snapshots
RESTORE_TARGET = "/restore"
LISTING = "/listing"
NEW_PASSWORD = "/run/secrets/new-restic-password"
DUMPED = "/dumped"
# backup-with-sidecar's exit code when the backup's snapshot was stored and its sidecar was not.
SIDECAR_FAILED = 86
# Processes the unlock job starts and ends first, so that restic runs above the PIDs job containers use (a
# backup job's restic processes and their threads, which take PIDs too).
SPENT_PIDS = 256

Parsed = TypeVar("Parsed")
# Words that mark the lines of a failed job's own output worth quoting in its message.
ERROR_WORDS = ("error", "denied", "failed", "fatal", "no space", "not found", "refused")


class RepositoryError(Exception):
    """A repository could not be used, or a restic command on it failed: the status and message to report."""

    def __init__(self, status: Status, message: str, duration: float = 0.0):
        super().__init__(message)
        self.status = status
        self.message = message
        self.duration = duration

    def __str__(self) -> str:
        return self.message

    def result(self, source: str, destination: str) -> RunResult:
        return RunResult(source, destination, self.status, self.message, duration=self.duration)


class SnapshotNotFound(RepositoryError):
    def __init__(self, message: str):
        super().__init__(Status.FAILED, message)


@dataclass(frozen=True)
class Forgotten:
    kept: tuple[restic.Snapshot, ...]
    removed: tuple[restic.Snapshot, ...]


@dataclass(frozen=True)
class CheckOutcome:
    passed: bool
    problems: tuple[str, ...]  # what restic check reported, when it did not pass
    duration: float


@dataclass
class StoredBackup:
    summary: restic.BackupSummary
    duration: float
    sidecar: restic.BackupSummary | None = None  # the sidecar's snapshot, when one was stored
    sidecar_problem: str = ""  # why the sidecar was not stored, the backup's snapshot being stored
    measured: restic.Stats | None = None  # the repository after the backup, when measured

    @property
    def bytes_added(self) -> int:
        return self.summary.bytes_added + (self.sidecar.bytes_added if self.sidecar else 0)


class Repository:
    """The handle on one repository. Commands run as job containers through the engine."""

    def __init__(self, engine: Engine, destination: Destination, access: RepositoryAccess):
        self.engine = engine
        self.destination = destination
        self.access = access
        self.settings: Settings = destination.settings

    @property
    def source(self) -> str:
        return self.access.source

    @property
    def location(self) -> str:
        return self.access.location

    @property
    def _restic(self) -> restic.Repository:
        return self.access.repository

    # Running ------------------------------------------------------------------------------------

    def job(self, name: str, argv: Sequence[str], mounts: Iterable[Mount] = (), networks: Iterable[str] = (),
            env: Mapping[str, str] | None = None) -> JobSpec:
        access = self.access
        return JobSpec(
            name=f"{name}-{access.source}-{access.destination}",
            argv=tuple(argv),
            mounts=(*access.mounts, *mounts),
            networks=tuple(dict.fromkeys((*access.networks, *networks))),
            env={**access.env, **(env or {})},
            timeout=access.timeout,
            labels={DESTINATION_LABEL: access.destination, SOURCE_LABEL: access.source},
        )

    def _run(self, name: str, argv: Sequence[str], mounts: Iterable[Mount] = (), *, networks: Iterable[str] = (),
             env: Mapping[str, str] | None = None, progress: Callable[[str], str | None] | None = None,
             entrypoint: tuple[str, ...] | None = None, capabilities: tuple[str, ...] = ()) -> JobResult:
        spec = dataclasses.replace(self.job(name, argv, mounts, networks, env), progress=progress,
                                   entrypoint=entrypoint, capabilities=capabilities)
        result = self.engine.run(spec)
        if not result.ok:
            raise self.failure(result)
        return result

    def failure(self, result: JobResult) -> RepositoryError:
        """A failed restic job as an error whose message says what happened and what to do."""
        if result.timed_out:
            return RepositoryError(Status.TIMED_OUT, result.describe(), result.duration)
        assert result.exit_code is not None
        said = restic.parse_output([*result.stdout, *result.stderr_tail])  # restic reports errors on stderr
        detail = said.exit_error or "; ".join(said.errors[-3:]) or "\n".join(result.output_tail[-5:])
        if said.exit_error and said.text:  # what the command it ran said (pg_dumpall's error, ssh's...)
            errors = [line for line in said.text if any(word in line.lower() for word in ERROR_WORDS)]
            detail += f" ({' '.join((errors or said.text)[-3:])})"
        status = Status.FAILED
        outcome = restic.outcome(result.exit_code)
        if outcome is restic.Outcome.REPOSITORY_MISSING:
            status = Status.REPOSITORY_MISSING
            detail = f"no repository at {self.location}: {init_hint(self.access.destination, self.source)}"
        elif outcome is restic.Outcome.FATAL:
            diagnosis = self.destination.diagnose(self.engine, self.access)
            if diagnosis:
                detail += f" (diagnosis: {diagnosis})"
        message = f"{self.location}: {restic.explain(result.exit_code)}: {detail}"
        return RepositoryError(status, message, result.duration)

    def _parsed(self, parse: Callable[[list[str]], Parsed], lines: list[str], what: str) -> Parsed:
        try:
            return parse(lines)
        except restic.OutputError as error:
            message = f"{self.location}: restic's {what} could not be read: {error}"
            raise RepositoryError(Status.FAILED, message) from None

    # Existence ----------------------------------------------------------------------------------

    def exists(self) -> bool:
        """True when the repository opens with its password; False when there is none at the location."""
        probe = self.engine.run(self.job("probe", restic.cat_config(self._restic)))
        if probe.ok:
            return True
        if probe.exit_code is not None and restic.outcome(probe.exit_code) is restic.Outcome.REPOSITORY_MISSING:
            return False
        raise self.failure(probe)

    def init(self) -> float:
        """Create the repository (format 2, compressed); returns the seconds it took."""
        return self._run("init", restic.init(self._restic)).duration

    # Reading ------------------------------------------------------------------------------------

    def snapshots(self, tag: str | None = None) -> list[restic.Snapshot]:
        result = self._run("snapshots", restic.snapshots(self._restic, tags=[tag] if tag else []))
        return self._parsed(restic.parse_snapshots, result.stdout, "snapshot list")

    def find(self, tag: str, wanted: str = "latest",
             listing: Sequence[restic.Snapshot] | None = None) -> restic.Snapshot:
        """The newest snapshot with this tag, or the one whose id starts with `wanted`; looked up in `listing` (all
        the repository's snapshots, from snapshots()) when given, which saves a job per lookup."""
        found = self.snapshots(tag) if listing is None else [snapshot for snapshot in listing if tag in snapshot.tags]
        if wanted != "latest":
            found = [snapshot for snapshot in found if snapshot.id.startswith(wanted)]
        if not found:
            raise SnapshotNotFound(f"no {tag} snapshot {'' if wanted == 'latest' else wanted + ' '}in {self.location}")
        return max(found, key=lambda snapshot: snapshot.time)

    def pick(self, tag: str, wanted: str = "latest") -> restic.Snapshot:
        """Like find, but an id prefix that several snapshots share is refused rather than resolved to the
        newest of them: a restore must get the snapshot that was meant."""
        if wanted == "latest":
            return self.find(tag)
        listing = self.snapshots(tag)
        found = [snapshot for snapshot in listing if snapshot.id.startswith(wanted)]
        if len(found) > 1:
            shown = ", ".join(f"{snapshot.short_id} of {snapshot.time[:19]}" for snapshot in found[:5])
            raise RepositoryError(Status.FAILED, f"{wanted} is ambiguous in {self.location}: {len(found)} {tag} "
                                  f"snapshots start with it ({shown}); give more of the id")
        return self.find(tag, wanted, listing)

    def stats(self, mode: str = "raw-data") -> restic.Stats:
        """Size and snapshot count; takes no lock, so it never writes."""
        result = self._run(f"stats-{mode}", restic.stats(self._restic, mode))
        return self._parsed(restic.parse_stats, result.stdout, "statistics")

    def storage(self, logical: bool = True) -> dict:
        """Size, snapshot count, compression and (with `logical`, which walks every snapshot)
        deduplication, as the figures of a run."""
        figures = stored_figures(self.stats())
        if logical:
            figures["logical_bytes"] = self.stats("restore-size").total_size
            if figures["logical_bytes"] and figures.get("uncompressed_bytes"):
                figures["deduplication_ratio"] = _round(figures["logical_bytes"] / figures["uncompressed_bytes"])
        return figures

    def ls(self, snapshot: restic.Snapshot, work: Path) -> list[restic.Node]:
        """Every node of the snapshot. The listing can be large: the job writes it to a file in `work`."""
        job_dir(work, self.settings)
        argv = ["sh", "-c", 'exec "$@" > "$0"', f"{LISTING}/nodes.json", *restic.ls(self._restic, snapshot.id)]
        self._run("ls", argv, (Mount(work, LISTING, read_only=False),))
        return self._parsed(restic.parse_ls, (work / "nodes.json").read_text().splitlines(), "listing")

    def restore(self, snapshot: restic.Snapshot, target: Path, verify: bool = False) -> int:
        """Restore the whole snapshot into `target`; return the bytes restored. With `verify`, restic
        reads every restored file back and checks it against the repository."""
        job_dir(target, self.settings)
        self._run("restore", restic.restore(self._restic, snapshot.id, RESTORE_TARGET, verify=verify),
                  (Mount(target, RESTORE_TARGET, read_only=False),), progress=restic.restore_progress)
        return sum(p.stat().st_size for p in target.rglob("*") if p.is_file())

    def restore_only(self, snapshot: restic.Snapshot, target: Path, includes: Sequence[str]) -> int:
        """Restore only the paths matching `includes` (restic.include_pattern) into `target`, with the
        directories above them; return the bytes restored. A pattern matching nothing restores nothing: the
        caller checks that what it needs is there."""
        if not includes:
            raise ValueError("restore_only needs at least one pattern")
        job_dir(target, self.settings)
        argv = restic.restore(self._restic, snapshot.id, RESTORE_TARGET, includes=includes)
        self._run("restore", argv, (Mount(target, RESTORE_TARGET, read_only=False),), progress=restic.restore_progress)
        return sum(p.stat().st_size for p in target.rglob("*") if p.is_file())

    def dump(self, snapshot: restic.Snapshot, path: str, work: Path) -> Path:
        """One file of the snapshot (`path` inside it), written to `work` under its own name; returns where.
        A path the snapshot does not hold fails (restic says so)."""
        job_dir(work, self.settings)
        name = PurePosixPath(path).name
        argv = ["sh", "-c", 'exec "$@" > "$0"', f"{DUMPED}/{name}", *restic.dump(self._restic, snapshot.id, path)]
        self._run("dump", argv, (Mount(work, DUMPED, read_only=False),))
        return work / name

    def check(self, subset: str) -> CheckOutcome:
        """`restic check`, reading `subset` of the data too. Errors it finds in the repository are an
        outcome; a check that cannot run (locked, wrong password, timed out...) or whose report
        cannot be read raises."""
        result = self.engine.run(self.job("check", restic.check(self._restic, subset, self.settings.locks.retry_lock)))
        if result.timed_out or result.exit_code not in (0, 1):
            raise self.failure(result)
        try:
            report = restic.parse_check(result.stdout)
        except restic.OutputError as error:
            if not result.ok:  # no report: restic stopped before checking (e.g. it could not open the repository)
                raise self.failure(result) from None
            raise RepositoryError(Status.FAILED, f"{self.location}: restic's check report could not be read: {error}",
                                  result.duration) from None
        if result.ok and report.errors == 0:
            return CheckOutcome(True, (), result.duration)
        said = [line for line in result.stderr_tail if line.strip()][-4:]
        packs = f"broken packs: {', '.join(p[:8] for p in report.broken_packs)}" if report.broken_packs else ""
        problems = [f"{report.errors} error(s)", *report.messages[:3], *said, *filter(None, [packs])]
        return CheckOutcome(False, tuple(problems), result.duration)

    # Writing ------------------------------------------------------------------------------------

    def backup(self, *, tags: Sequence[str], paths: Sequence[str] = (), command: Sequence[str] = (),
               filename: str = "", excludes: Sequence[str] = (), mounts: Iterable[Mount] = (),
               networks: Iterable[str] = (), env: Mapping[str, str] | None = None,
               host: str | None = None, capabilities: Sequence[str] = (), sidecar: str = "",
               measure: bool = False) -> StoredBackup:
        """One snapshot of `paths`, or of `command`'s output saved as `filename`, recorded as taken on
        `host` (default: restic.host).

        `sidecar`: a file the backup writes in its container (a manifest of the dump), stored once the
        backup succeeded as a second snapshot, tagged <first tag>-manifest and for:<key>, the first one
        being tagged run:<key>; its restic process runs alongside the backup's, in the same container
        (backup-with-sidecar), so that opening the repository costs no time after the backup. `measure`: the
        repository's statistics afterwards, in the same container."""
        host, retry = host or self.settings.restic.host, self.settings.locks.retry_lock
        key = secrets.token_hex(8) if sidecar else ""
        tags = [*tags, f"run:{key}"] if key else list(tags)
        if command:
            argv = restic.backup_from_command(self._restic, command, filename=filename, host=host, tags=tags,
                                              retry_lock=retry)
        else:
            argv = restic.backup(self._restic, paths, host=host, tags=tags, excludes=excludes, retry_lock=retry)
        if sidecar or measure:
            beside = restic.backup_from_command(
                self._restic, restic.release_sidecar(sidecar), filename=PurePosixPath(sidecar).name, host=host,
                tags=[f"{tags[0]}-manifest", f"for:{key}"], retry_lock=retry) if sidecar else []
            argv = restic.with_sidecar(argv, beside, restic.stats(self._restic) if measure else [])
        spec = dataclasses.replace(self.job("backup", argv, mounts, networks, env), progress=restic.backup_progress,
                                   capabilities=tuple(capabilities))
        result = self.engine.run(spec)
        sidecar_failed = bool(sidecar) and result.exit_code == SIDECAR_FAILED and not result.timed_out
        if not result.ok and not sidecar_failed:
            raise self.failure(result)
        summary = self._parsed(restic.parse_backup, result.stdout, "backup summary")
        stored = StoredBackup(summary, result.duration)
        if sidecar_failed:
            said = [line for line in result.stderr_tail if restic.WITH_SIDECAR in line][-1:] or result.output_tail[-2:]
            stored.sidecar_problem = f"the snapshot {summary.snapshot_id[:8]} was stored, but its manifest could " \
                                     f"not be: {' '.join(said)}"
        elif sidecar:
            stored.sidecar = self._parsed(restic.parse_sidecar, result.stdout, "manifest summary")
        if measure:
            try:
                stored.measured = restic.parse_stats(result.stdout)
            except restic.OutputError as error:
                logger.warning("{}: the repository's size is unknown after this backup: {}", self.location, error)
        return stored

    def forget(self, retention: RetentionSettings, tag: str, dry_run: bool = False) -> Forgotten:
        """Apply the retention policy to the snapshots with this tag (nothing is pruned yet); the
        newest retention.minimum_snapshots are always kept. `dry_run`: what it would forget, changing nothing."""
        result = self._run("forget", restic.forget(
            self._restic, daily=retention.keep_daily, monthly=retention.keep_monthly, yearly=retention.keep_yearly,
            last=retention.minimum_snapshots, tags=[tag], retry_lock=self.settings.locks.retry_lock, dry_run=dry_run))
        groups = self._parsed(restic.parse_forget, result.stdout, "forget report")
        return Forgotten(tuple(s for g in groups for s in g.keep), tuple(s for g in groups for s in g.remove))

    def forget_ids(self, ids: Sequence[str]) -> None:
        self._run("forget-ids", restic.forget_ids(self._restic, ids, self.settings.locks.retry_lock))

    def prune(self) -> None:
        self._run("prune", restic.prune(self._restic, self.settings.locks.retry_lock))

    # Keys ---------------------------------------------------------------------------------------

    def keys(self) -> list[restic.Key]:
        result = self._run("key-list", restic.key_list(self._restic))
        return self._parsed(restic.parse_keys, result.stdout, "key list")

    def current_key(self) -> restic.Key:
        """The key the password file opens."""
        return next(key for key in self.keys() if key.current)

    def add_key(self, new_password_file: Path) -> None:
        """Add a key for the password in `new_password_file` (a private file on this host, mounted)."""
        self._run("key-add", restic.key_add(self._restic, NEW_PASSWORD), (Mount(new_password_file, NEW_PASSWORD),))

    def remove_key(self, key_id: str) -> None:
        self._run("key-remove", restic.key_remove(self._restic, key_id))

    def with_password(self, password_file: Path) -> Repository:
        """The same repository, opened with the password in another file."""
        mounts = tuple(Mount(password_file, mount.target) if mount.target == self._restic.password_file else mount
                       for mount in self.access.mounts)
        return Repository(self.engine, self.destination, dataclasses.replace(self.access, mounts=mounts))

    # Locks --------------------------------------------------------------------------------------

    def locks(self) -> list[restic.Lock]:
        result = self._run("locks", restic.locks_report(self._restic))
        return self._parsed(restic.parse_locks, result.stdout, "lock list")

    def clear_stale_locks(self) -> list[restic.Lock]:
        """Remove the locks of this runner's dead jobs; return them. Call only while holding the
        runner's lock on the repository.

        A killed job leaves its lock behind, and restic does not skip stale locks when it takes a
        new one. Every job container has a host name of its own, which restic writes into its locks
        and the container carries as a label: a lock of this installation (host name starting with
        engine.lock_owner) whose container is gone or has ended belongs to a dead job and is removed
        at once; a lock whose job still runs is never touched, nor is anyone else's (a person
        running restic on a laptop: jobs wait for it with `--retry-lock`). Locks of the single host
        name older runner versions used count as dead once older than locks.stale_after.

        `restic unlock` (never `--remove-all`) removes only locks restic itself finds stale: written
        on its own host by a process that no longer exists (or older than 30 minutes). So the unlock
        job runs under the dead job's host name, in a fresh container that uses up the low PIDs
        first: to restic, exactly the dead job's locks are then stale.
        """
        local = self.access.local_path
        if local is not None and not any((local / "locks").glob("*")):
            return []  # a repository on this host without a single lock: nothing to look at
        try:
            locks = self.locks()
        except RepositoryError as error:
            logger.warning("could not list the locks of {}: {}", self.location, error)
            return []
        stale = [lock for lock in locks if self._dead(lock)]
        for lock in locks:
            if lock not in stale:
                logger.info("lock {} on {} from {} ({}) belongs to a live job or to someone else: left alone",
                            lock.id[:8], self.location, lock.hostname, lock.time.isoformat(timespec="seconds"))
        removed = []
        spend = f'i=0; while [ $i -lt {SPENT_PIDS} ]; do /bin/true; i=$((i+1)); done; exec "$@"'
        for hostname in dict.fromkeys(lock.hostname for lock in stale):
            job = dataclasses.replace(self.job("unlock", ["-c", spend, "unlock", *restic.unlock(self._restic)]),
                                      entrypoint=("/bin/sh",), hostname=hostname)
            result = self.engine.run(job)
            if not result.ok:
                logger.error("restic unlock on {} failed: {}", self.location, self.failure(result))
                continue
            for lock in (lock for lock in stale if lock.hostname == hostname):
                logger.warning("removed stale restic lock {} on {} (taken {} by a runner job that no longer runs)",
                               lock.id[:8], self.location, lock.time.isoformat(timespec="seconds"))
                removed.append(lock)
        return removed

    def _dead(self, lock: restic.Lock) -> bool:
        if lock.hostname.startswith(lock_owner(self.settings)):
            return not self.engine.job_alive(lock.hostname)
        return lock.hostname == LEGACY_JOB_HOSTNAME and lock.age() >= self.settings.locks.stale_after


def stored_figures(stats: restic.Stats) -> dict:
    """What the repository stores, as a run's figures."""
    return {"repository_bytes": stats.total_size, "uncompressed_bytes": stats.uncompressed_size,
            "compression_ratio": _round(stats.compression_ratio),
            "compression_space_saving": _round(stats.compression_space_saving), "snapshots": stats.snapshots}


def _round(value: float | None) -> float | None:
    return round(value, 2) if isinstance(value, (int, float)) else None


def unavailable(error: DestinationUnavailable | RepositoryMissing) -> RepositoryError:
    status = Status.REPOSITORY_MISSING if isinstance(error, RepositoryMissing) else Status.UNAVAILABLE
    return RepositoryError(status, str(error))


@contextmanager
def opened(settings: Settings, engine: Engine, destination: Destination, source: str) -> Iterator[Repository]:
    """A repository ready for a job: the runner's lock on it held (waiting locks.wait at most), the
    destination reachable, the repository present, stale locks of the runner's dead jobs removed.
    Raises RepositoryError (skipped, destination unavailable, repository missing)."""
    with repository_lock(settings, destination.name, source) as held:
        if not held:
            raise RepositoryError(Status.SKIPPED, skipped_message(settings))
        repository = reached(engine, destination, source)
        repository.clear_stale_locks()
        yield repository


def reached(engine: Engine, destination: Destination, source: str) -> Repository:
    """The repository with its destination's preflight passed, without any lock: for reading only
    (dry runs). Raises RepositoryError (destination unavailable, repository missing)."""
    try:
        destination.preflight()
        return Repository(engine, destination, destination.access(source))
    except (DestinationUnavailable, RepositoryMissing) as error:
        raise unavailable(error) from None
