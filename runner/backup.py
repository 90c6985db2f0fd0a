"""One source backed up to each destination: preflight, quota, restic in a job container, record."""

from __future__ import annotations

import shlex
from contextlib import nullcontext

from loguru import logger

from runner import restic, sources
from runner.destinations import Destination, DestinationUnavailable, RepositoryAccess, RepositoryMissing
from runner.engine import Engine, Mount
from runner.locking import clear_stale_locks, repository_lock, skipped_message
from runner.quota import ledger
from runner.repositories import failure, restic_job, stored_figures, unavailable
from runner.results import RunResult, Status
from runner.settings import Settings
from runner.sources import Payload, SourceError

SIDECAR = "/sidecar"


def back_up(settings: Settings, engine: Engine, source: str, destinations: list[Destination]) -> list[RunResult]:
    module = sources.get(source)
    try:
        module.preflight(settings, engine)
        with module.prepare(settings, engine) as payload:
            return [_to_destination(settings, engine, module, payload, destination) for destination in destinations]
    except SourceError as error:
        logger.error("{}: {}", source, error)
        return [RunResult(source, d.name, Status.FAILED, f"{source}: {error}") for d in destinations]


def backup_argv(settings: Settings, repository: restic.Repository, source: str, payload: Payload) -> list[str]:
    host, tags, retry = settings.restic.host, [source], settings.locks.retry_lock
    if payload.command:
        return restic.backup_from_command(repository, payload.command, filename=payload.filename, host=host,
                                          tags=tags, retry_lock=retry)
    return restic.backup(repository, payload.paths, host=host, tags=tags, excludes=payload.excludes, retry_lock=retry)


def describe(summary: dict, figures: dict) -> str:
    parts = [f"snapshot {summary.get('snapshot_id', '?')[:8]}",
             f"{summary.get('total_bytes_processed', 0)} bytes processed",
             f"{summary.get('data_added_packed', summary.get('data_added', 0))} bytes added"]
    parts += [f"{key.replace('_', ' ')} {value}" for key, value in figures.items() if value is not None]
    return ", ".join(parts)


def _to_destination(settings: Settings, engine: Engine, module, payload: Payload, destination: Destination) -> RunResult:
    source = module.NAME
    with repository_lock(settings, destination.name, source) as held:
        if not held:
            return RunResult(source, destination.name, Status.SKIPPED, skipped_message(settings))
        try:
            destination.preflight()
            access = destination.access(source)
        except (DestinationUnavailable, RepositoryMissing) as error:
            logger.error("{} -> {}: {}", source, destination.name, error)
            return unavailable(source, destination, error)
        deferred = _over_quota(settings, destination, source)
        if deferred:
            return deferred
        clear_stale_locks(settings, engine, access)
        return _run_backup(settings, engine, module, payload, destination, access)


def _over_quota(settings: Settings, destination: Destination, source: str) -> RunResult | None:
    if not destination.quota:
        return None
    check = ledger(settings.paths.state_dir).check(destination.name, source, destination.quota)
    if not check.exceeded:
        return None
    message = (f"deferred: {check.uploaded_today} bytes uploaded today plus about {check.expected} expected "
               f"would pass the daily quota of {check.quota} bytes; it runs again tomorrow")
    logger.warning("{} -> {}: {}", source, destination.name, message)
    return RunResult(source, destination.name, Status.DEFERRED, message)


def _run_backup(settings: Settings, engine: Engine, module, payload: Payload, destination: Destination,
                access: RepositoryAccess) -> RunResult:
    source = module.NAME
    job = restic_job(access, "backup", backup_argv(settings, access.repository, source, payload),
                     payload.mounts, payload.networks, payload.env)
    with payload.companion() if payload.companion else nullcontext() as companion:
        result = engine.run(job)
    if not result.ok:
        outcome = failure(engine, destination, access, result)
        problem = getattr(companion, "problem", "")
        if problem:
            outcome.message += f" ({problem})"
        logger.error("{} -> {}: {}", source, destination.name, outcome.message)
        return outcome

    summary = restic.parse_output(result.stdout).summary or {}
    snapshot = summary.get("snapshot_id")
    added = summary.get("data_added_packed", summary.get("data_added", 0))
    figures = {**summary, **payload.figures}
    try:
        module.verify(settings, payload, summary)
        sidecar_added, stored = _after_snapshot(settings, engine, access, payload, source, snapshot)
        added += sidecar_added
        figures.update(stored)
    except SourceError as error:
        logger.error("{} -> {}: {}", source, destination.name, error)
        return RunResult(source, destination.name, Status.FAILED, f"{source}: {error}", snapshot, result.duration, figures)
    finally:
        ledger(settings.paths.state_dir).record(destination.name, source, added)
    message = describe(summary, payload.figures)
    logger.info("{} -> {}: {}", source, destination.name, message)
    return RunResult(source, destination.name, Status.OK, message, snapshot, result.duration, figures)


SIDECAR_FAILED = 86


def _after_snapshot(settings: Settings, engine: Engine, access: RepositoryAccess, payload: Payload, source: str,
                    snapshot: str) -> tuple[int, dict]:
    """In one job container: back up the sidecar directory (if any) as a second snapshot tagged with
    the first one's id, then measure the repository. Returns (bytes the sidecar added, figures)."""
    steps, mounts = [], ()
    if payload.sidecar:
        sidecar = restic.backup(access.repository, [SIDECAR], host=settings.restic.host,
                                tags=[f"{source}-manifest", f"for:{snapshot}"])
        steps.append(f"{shlex.join(sidecar)} || exit {SIDECAR_FAILED}")
        mounts = (Mount(payload.sidecar, SIDECAR),)
    steps.append(f"{shlex.join(restic.stats(access.repository))} || true")
    result = engine.run(restic_job(access, "after-backup", ["sh", "-c", "; ".join(steps)], mounts))
    if result.exit_code == SIDECAR_FAILED or result.timed_out:
        raise SourceError(f"the snapshot {snapshot[:8]} was stored, but its manifest could not be: "
                          + " ".join(result.output_tail[-2:]))
    said = restic.parse_output(result.stdout)
    measured = next((d for d in said.documents if isinstance(d, dict) and "total_size" in d), {})
    return (said.summary or {}).get("data_added_packed", 0) if payload.sidecar else 0, stored_figures(measured)
