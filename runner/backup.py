"""One source backed up to each destination: preflight, quota, restic in a job container, record.

Whatever goes wrong, every destination of every source ends with a result: an error in one source
(or one destination) fails that one and the others go on.
"""

from __future__ import annotations

from contextlib import nullcontext

from loguru import logger

from runner.destinations import Destination
from runner.engine import Engine
from runner.locking import skipped_message, source_lock
from runner.quota import LedgerError, ledger
from runner.repository import Repository, RepositoryError, opened, stored_figures
from runner.restic import BackupSummary
from runner.results import RunResult, Status, unexpected
from runner.settings import Settings
from runner.sources import Payload, Source, SourceError


def back_up(settings: Settings, engine: Engine, source: Source, destinations: list[Destination]) -> list[RunResult]:
    """Stage the source once (holding its lock) and back it up to each destination."""
    results: list[RunResult] | None = None
    try:
        with source_lock(settings, source.NAME) as held:
            if not held:
                return [RunResult(source.NAME, d.name, Status.SKIPPED, skipped_message(settings))
                        for d in destinations]
            source.preflight(settings, engine)
            with source.prepare(settings, engine) as payload:
                results = [_to_destination(settings, engine, source, payload, d) for d in destinations]
    except Exception as error:  # contained: this source fails, the next one runs
        problem = str(error) if isinstance(error, SourceError) else unexpected(error)
        if results is not None:  # the uploads are done; only cleaning up the staging failed
            logger.error("{}: cleaning up after the backup failed: {}", source.NAME, problem)
            return results
        logger.error("{}: {}", source.NAME, problem)
        return [RunResult(source.NAME, d.name, Status.FAILED, f"{source.NAME}: {problem}") for d in destinations]
    return results


SHOWN_UNSAVED = 20  # unsaved items named in a result's message


def describe(summary: BackupSummary, figures: dict) -> str:
    parts = [f"snapshot {summary.snapshot_id[:8]}", f"{summary.bytes_processed} bytes processed",
             f"{summary.bytes_added} bytes added"]
    parts += [f"{key.replace('_', ' ')} {value}" for key, value in figures.items() if value is not None]
    return ", ".join(parts)


def _to_destination(settings: Settings, engine: Engine, source: Source, payload: Payload,
                    destination: Destination) -> RunResult:
    try:
        with opened(settings, engine, destination, source.NAME) as repository:
            return _over_quota(settings, destination, source.NAME) or _run_backup(source, payload, repository)
    except RepositoryError as error:
        log = logger.error if error.status.is_failure else logger.warning
        log("{} -> {}: {}", source.NAME, destination.name, error)
        return error.result(source.NAME, destination.name)
    except Exception as error:  # contained: this destination fails, the others go on
        message = f"{source.NAME}: {unexpected(error)}"
        logger.error("{} -> {}: {}", source.NAME, destination.name, message)
        return RunResult(source.NAME, destination.name, Status.FAILED, message)


def _over_quota(settings: Settings, destination: Destination, source: str) -> RunResult | None:
    if not destination.quota:
        return None
    try:
        check = ledger(settings.paths.state_dir).check(destination.name, source, destination.quota)
    except LedgerError as error:
        logger.error("{} -> {}: {}", source, destination.name, error)
        message = f"not backed up: today's uploads are unknown: {error}"
        return RunResult(source, destination.name, Status.FAILED, message)
    if not check.exceeded:
        return None
    message = (f"deferred: {check.uploaded_today} bytes uploaded today plus about {check.expected} expected "
               f"would pass the daily quota of {check.quota} bytes; it runs again tomorrow")
    logger.warning("{} -> {}: {}", source, destination.name, message)
    return RunResult(source, destination.name, Status.DEFERRED, message)


def _run_backup(source: Source, payload: Payload, repository: Repository) -> RunResult:
    settings, name, destination = repository.settings, source.NAME, repository.destination.name
    companion = payload.companion() if payload.companion else None
    try:
        with companion or nullcontext():
            stored = repository.backup(tags=[name], paths=payload.paths, command=payload.command,
                                       filename=payload.filename, excludes=payload.excludes, mounts=payload.mounts,
                                       networks=payload.networks, env=payload.env)
    except RepositoryError as error:
        if companion is not None and companion.problem:
            error.message += f" ({companion.problem})"
        raise
    summary = stored.summary
    added = summary.bytes_added
    figures = {**summary.raw, **payload.figures}
    status, message = Status.OK, describe(summary, payload.figures)
    try:
        source.verify(settings, payload, summary)
        sidecar_added, stats = repository.after_backup(summary.snapshot_id, payload.sidecar, [f"{name}-manifest"])
        added += sidecar_added
        figures.update(stored_figures(stats) if stats else {})
    except (SourceError, RepositoryError) as error:
        status, message = Status.FAILED, f"{name}: {error}"
    if status is Status.OK and payload.unsaved:
        more = f" and {len(payload.unsaved) - SHOWN_UNSAVED} more" if len(payload.unsaved) > SHOWN_UNSAVED else ""
        status = Status.PARTIAL
        message += (f"; {len(payload.unsaved)} item(s) of the source could not be backed up and are not in this "
                    f"snapshot: {'; '.join(payload.unsaved[:SHOWN_UNSAVED])}{more}")
    try:
        ledger(settings.paths.state_dir).record(destination, name, added)
    except (LedgerError, OSError) as error:
        message += f" (the upload ledger was not updated: {error})"
    (logger.info if status is Status.OK else logger.error)("{} -> {}: {}", name, destination, message)
    return RunResult(name, destination, status, message, summary.snapshot_id, stored.duration, figures)
