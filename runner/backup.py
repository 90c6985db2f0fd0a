"""One source backed up to each destination: preflight, quota, restic in a job container, record."""

from __future__ import annotations

from loguru import logger

from runner import restic, sources
from runner.destinations import Destination, DestinationUnavailable, RepositoryMissing
from runner.engine import Engine
from runner.quota import ledger
from runner.repositories import failure, restic_job, unavailable
from runner.results import RunResult, Status
from runner.settings import Settings
from runner.sources import Payload, SourceError


def back_up(settings: Settings, engine: Engine, source: str, destinations: list[Destination]) -> list[RunResult]:
    module = sources.get(source)
    try:
        module.preflight(settings)
        with module.prepare(settings, engine) as payload:
            return [_to_destination(settings, engine, module, payload, destination) for destination in destinations]
    except SourceError as error:
        logger.error("{}: {}", source, error)
        return [RunResult(source, d.name, Status.FAILED, f"{source}: {error}") for d in destinations]


def backup_argv(settings: Settings, repository: restic.Repository, source: str, payload: Payload) -> list[str]:
    host, tags = settings.restic.host, [source]
    if payload.command:
        return restic.backup_from_command(repository, payload.command, filename=payload.filename, host=host, tags=tags)
    return restic.backup(repository, payload.paths, host=host, tags=tags, excludes=payload.excludes)


def _to_destination(settings: Settings, engine: Engine, module, payload: Payload, destination: Destination) -> RunResult:
    source = module.NAME
    try:
        destination.preflight()
        access = destination.access(source)
    except (DestinationUnavailable, RepositoryMissing) as error:
        logger.error("{} -> {}: {}", source, destination.name, error)
        return unavailable(source, destination, error)

    uploads = ledger(settings.paths.state_dir)
    if destination.quota:
        check = uploads.check(destination.name, source, destination.quota)
        if check.exceeded:
            message = (f"deferred: {check.uploaded_today} bytes uploaded today plus about {check.expected} expected "
                       f"would pass the daily quota of {check.quota} bytes; it runs again tomorrow")
            logger.warning("{} -> {}: {}", source, destination.name, message)
            return RunResult(source, destination.name, Status.DEFERRED, message)

    argv = backup_argv(settings, access.repository, source, payload)
    result = engine.run(restic_job(access, "backup", argv, payload.mounts, payload.networks))
    if not result.ok:
        outcome = failure(engine, destination, access, result)
        logger.error("{} -> {}: {}", source, destination.name, outcome.message)
        return outcome
    summary = restic.parse_output(result.stdout).summary or {}
    added = summary.get("data_added_packed", summary.get("data_added", 0))
    uploads.record(destination.name, source, added)
    try:
        module.verify(settings, summary)
    except SourceError as error:
        return RunResult(source, destination.name, Status.FAILED, f"{source}: {error}",
                         summary.get("snapshot_id"), result.duration, summary)
    message = f"snapshot {summary.get('snapshot_id', '?')[:8]}, {added} bytes added"
    logger.info("{} -> {}: {}", source, destination.name, message)
    return RunResult(source, destination.name, Status.OK, message, summary.get("snapshot_id"), result.duration, summary)
