"""One source backed up to each destination: preflight, quota, restic in a job container, record.

Whatever goes wrong, every destination of every source ends with a result: an error in one source
(or one destination) fails that one and the others go on.
"""

from __future__ import annotations

import sqlite3
from contextlib import nullcontext
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from loguru import logger

from runner.destinations import Destination, init_hint
from runner.engine import Engine
from runner.hooks import HookError, SourceHooks
from runner.locking import skipped_message, source_lock
from runner.monitoring.history import open_history
from runner.quota import LedgerError, ledger, quota_deferral
from runner.repository import Repository, RepositoryError, opened, reached, stored_figures
from runner.restic import BackupSummary
from runner.results import RunResult, Status, unexpected
from runner.settings import Settings
from runner.sources import Payload, Source, SourceError
from runner.units import size_text


def back_up(settings: Settings, engine: Engine, source: Source, destinations: list[Destination]) -> list[RunResult]:
    """Holding the source's lock: its before hooks, the source staged once and backed up to each destination,
    then its on_error and after hooks (runner/hooks.py), which run whatever happened before them."""
    try:
        with source_lock(settings, source.NAME) as held:
            if not held:
                return [RunResult(source.NAME, d.name, Status.SKIPPED, skipped_message(settings))
                        for d in destinations]
            hooks = SourceHooks(settings, engine, source.NAME)
            results: list[RunResult] | None = None
            try:
                hooks.recover()
                hooks.before()
                results = _staged_and_uploaded(settings, engine, source, destinations)
            except HookError as error:
                results = [RunResult(source.NAME, d.name, Status.FAILED, f"{source.NAME}: {error}")
                           for d in destinations]
            finally:  # also when the runner is stopped (SIGTERM) or a bug raised: containers are started again
                problems = hooks.finish(failed=results is None or any(r.status.is_failure for r in results))
            return _with_hooks(results, problems, hooks.notes)
    except Exception as error:  # contained: this source fails, the next one runs
        problem = unexpected(error)
        logger.error("{}: {}", source.NAME, problem)
        return [RunResult(source.NAME, d.name, Status.FAILED, f"{source.NAME}: {problem}") for d in destinations]


def _staged_and_uploaded(settings: Settings, engine: Engine, source: Source,
                         destinations: list[Destination]) -> list[RunResult]:
    results: list[RunResult] | None = None
    try:
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


def _with_hooks(results: list[RunResult], problems: list[str], notes: list[str]) -> list[RunResult]:
    """The results, each failed when an on_error or after hook failed (a snapshot may be stored, but a
    service may be left down or unresumed), with what the hooks had to say."""
    for result in results:
        if notes:
            result.message += f" ({'; '.join(notes)})"
        if problems:
            stored = f"snapshot {result.snapshot_id[:8]} was stored, but " if result.snapshot_id else ""
            result.status = Status.FAILED if result.status is not Status.SKIPPED else result.status
            result.message += f"; {stored}{'; '.join(problems)}"
    return results


def dry_run(settings: Settings, engine: Engine, source: Source, destinations: list[Destination]) -> list[RunResult]:
    """What `exec backup` would do, from every preflight it runs (the source's hooks' containers and URL files,
    the source's, each destination's, the repository's, the quota), with nothing staged, locked, uploaded,
    recorded, and no hook run."""
    try:
        hook_problems = SourceHooks(settings, engine, source.NAME).check()
        if hook_problems:
            raise SourceError("; ".join(hook_problems))
        source.preflight(settings, engine)
        plan = source.plan(settings, engine)
    except Exception as error:  # contained: this source fails, the next one is still looked at
        problem = str(error) if isinstance(error, SourceError) else unexpected(error)
        return [RunResult(source.NAME, d.name, Status.FAILED, f"{source.NAME}: {problem}") for d in destinations]
    return [_would_store(settings, engine, source.NAME, plan, destination) for destination in destinations]


def _would_store(settings: Settings, engine: Engine, source: str, plan: str, destination: Destination) -> RunResult:
    try:
        repository = reached(engine, destination, source)
        if not repository.exists():
            raise RepositoryError(Status.REPOSITORY_MISSING,
                                  f"no repository at {repository.location}: {init_hint(destination.name, source)}")
    except RepositoryError as error:
        return error.result(source, destination.name)
    except Exception as error:  # contained: this destination fails, the others are still looked at
        return RunResult(source, destination.name, Status.FAILED, f"{source}: {unexpected(error)}")
    deferred = quota_deferral(settings.paths.state_dir, destination, source, "not backed up")
    if deferred is not None:
        return replace(deferred, message=f"would be {deferred.message}")
    return RunResult(source, destination.name, Status.OK, f"would back up {plan} to {repository.location}")


SHOWN_UNSAVED = 20  # unsaved items named in a result's message
MEASURED_WITHIN = timedelta(days=7)
LOOKED_AT = 200  # runs of a repository looked through for its last measurement


def describe(summary: BackupSummary, figures: dict) -> str:
    """'snapshot 1a2b3c4d: 2.2 MiB read, 120.6 KiB added', then the source's own figures, sizes in human units
    (the raw numbers stay in the run's figures)."""

    def figure(key: str, value) -> str:
        name = key.replace("_", " ")
        if key.endswith("_bytes") and isinstance(value, int | float):
            return f"{name.removesuffix(' bytes')} size {size_text(value)}"
        if key.endswith("_sha256") and isinstance(value, str):
            return f"{name} {value[:12]}"
        return f"{name} {' '.join(map(str, value)) if isinstance(value, list | tuple) else value}"

    parts = [f"{size_text(summary.bytes_processed)} read", f"{size_text(summary.bytes_added)} added"]
    parts += [figure(key, value) for key, value in figures.items() if value is not None and value != []]
    return f"snapshot {summary.snapshot_id[:8]}: " + ", ".join(parts)


def _to_destination(settings: Settings, engine: Engine, source: Source, payload: Payload,
                    destination: Destination) -> RunResult:
    try:
        with opened(settings, engine, destination, source.NAME) as repository:
            return (quota_deferral(settings.paths.state_dir, destination, source.NAME, "not backed up")
                    or _run_backup(source, payload, repository))
    except RepositoryError as error:
        log = logger.error if error.status.is_failure else logger.warning
        log("{} -> {}: {}", source.NAME, destination.name, error)
        return error.result(source.NAME, destination.name)
    except Exception as error:  # contained: this destination fails, the others go on
        message = f"{source.NAME}: {unexpected(error)}"
        logger.error("{} -> {}: {}", source.NAME, destination.name, message)
        return RunResult(source.NAME, destination.name, Status.FAILED, message)


def _run_backup(source: Source, payload: Payload, repository: Repository) -> RunResult:
    settings, name, destination = repository.settings, source.NAME, repository.destination.name
    companion = payload.companion() if payload.companion else None
    measure = needs_measuring(settings, name, destination)
    try:
        with companion or nullcontext():
            stored = repository.backup(tags=[name], paths=payload.paths, command=payload.command,
                                       filename=payload.filename, excludes=payload.excludes, mounts=payload.mounts,
                                       networks=payload.networks, env=payload.env,
                                       capabilities=payload.capabilities, sidecar=payload.sidecar, measure=measure)
    except RepositoryError as error:
        if companion is not None and companion.problem:
            error.message += f" ({companion.problem})"
        raise
    summary = stored.summary
    figures = {**summary.raw, **payload.figures}
    if stored.sidecar:
        figures.update(manifest_snapshot=stored.sidecar.snapshot_id, manifest_added_packed=stored.sidecar.bytes_added)
    figures.update(stored_figures(stored.measured) if stored.measured else {})
    status, message = Status.OK, describe(summary, payload.figures)
    try:
        source.verify(settings, payload, summary)
        if stored.sidecar_problem:
            raise RepositoryError(Status.FAILED, stored.sidecar_problem)
    except (SourceError, RepositoryError) as error:
        status, message = Status.FAILED, f"{name}: {error}"
    if status is Status.OK and payload.unsaved:
        more = f" and {len(payload.unsaved) - SHOWN_UNSAVED} more" if len(payload.unsaved) > SHOWN_UNSAVED else ""
        status = Status.PARTIAL
        message += (f"; {len(payload.unsaved)} item(s) of the source could not be backed up and are not in this "
                    f"snapshot: {'; '.join(payload.unsaved[:SHOWN_UNSAVED])}{more}")
    try:
        ledger(settings.paths.state_dir).record(destination, name, stored.bytes_added)
    except (LedgerError, OSError) as error:
        message += f" (the upload ledger was not updated: {error})"
    (logger.info if status is Status.OK else logger.error)("{} -> {}: {}", name, destination, message)
    return RunResult(name, destination, status, message, summary.snapshot_id, stored.duration, figures)


def needs_measuring(settings: Settings, source: str, destination: str) -> bool:
    """Whether a backup also measures its repository (restic stats, alongside it): when no run measured it within
    MEASURED_WITHIN. Between measurements the repository's size is the last one plus what backups stored since
    (monitoring/status.py), and the weekly prune measures it anyway."""
    try:
        runs = open_history(settings.paths.state_dir).runs(source=source, destination=destination, limit=LOOKED_AT)
    except (sqlite3.Error, OSError) as error:
        logger.warning("the run history cannot be read ({}): the repository is measured", error)
        return True
    measured = next((run for run in runs if run.stored_bytes is not None), None)
    return measured is None or datetime.now(UTC) - measured.ended_at > MEASURED_WITHIN
