"""One source backed up to each destination: preflight, quota, restic in a job container, record."""

from __future__ import annotations

from contextlib import nullcontext

from loguru import logger

from runner.destinations import Destination
from runner.engine import Engine
from runner.quota import ledger
from runner.repository import Repository, RepositoryError, opened, stored_figures
from runner.restic import BackupSummary
from runner.results import RunResult, Status
from runner.settings import Settings
from runner.sources import Payload, Source, SourceError


def back_up(settings: Settings, engine: Engine, source: Source, destinations: list[Destination]) -> list[RunResult]:
    try:
        source.preflight(settings, engine)
        with source.prepare(settings, engine) as payload:
            return [_to_destination(settings, engine, source, payload, destination) for destination in destinations]
    except SourceError as error:
        logger.error("{}: {}", source.NAME, error)
        return [RunResult(source.NAME, d.name, Status.FAILED, f"{source.NAME}: {error}") for d in destinations]


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
    try:
        source.verify(settings, payload, summary)
        sidecar_added, stats = repository.after_backup(summary.snapshot_id, payload.sidecar, [f"{name}-manifest"])
        added += sidecar_added
        figures.update(stored_figures(stats) if stats else {})
    except (SourceError, RepositoryError) as error:
        logger.error("{} -> {}: {}", name, destination, error)
        return RunResult(name, destination, Status.FAILED, f"{name}: {error}", summary.snapshot_id, stored.duration,
                         figures)
    finally:
        ledger(settings.paths.state_dir).record(destination, name, added)
    message = describe(summary, payload.figures)
    logger.info("{} -> {}: {}", name, destination, message)
    return RunResult(name, destination, Status.OK, message, summary.snapshot_id, stored.duration, figures)
