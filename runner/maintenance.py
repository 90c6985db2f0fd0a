"""Repository upkeep: `exec check` (verify) and `exec prune` (verify, then forget and prune).

Retention follows restic's definition: keep the most recent snapshot of each of the last
keep_daily days, keep_monthly months and keep_yearly years (the specification's "first backup of
each month" becomes the last one: one snapshot per month either way). Nothing is forgotten in a
repository with fewer than retention.minimum_snapshots snapshots, nor in one whose check failed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from loguru import logger

from runner import restic
from runner.destinations import Destination, DestinationUnavailable, RepositoryAccess, RepositoryMissing
from runner.engine import Engine
from runner.locking import clear_stale_locks, repository_lock, skipped_message
from runner.repositories import failure, restic_job, storage, unavailable
from runner.results import RunResult, Status
from runner.settings import Settings


@dataclass
class Outcome:
    """What one maintenance command did to one repository: runs by kind, in order."""

    runs: list[tuple[str, RunResult]] = field(default_factory=list)


def rotating_subset(settings: Settings, today: date | None = None) -> str:
    """This week's part of the data: over retention.check_weeks weeks, every part is read once."""
    weeks = settings.retention.check_weeks
    if weeks == 1:
        return "all"
    week = (today or date.today()).isocalendar().week
    return f"{week % weeks + 1}/{weeks}"


def maintain(settings: Settings, engine: Engine, destination: Destination, source: str, *, prune: bool,
             subset: str) -> Outcome:
    outcome = Outcome()
    kinds = ("check", "prune") if prune else ("check",)
    with repository_lock(settings, destination.name, source) as held:
        if not held:
            outcome.runs += [(kind, RunResult(source, destination.name, Status.SKIPPED, skipped_message(settings)))
                             for kind in kinds]
            return outcome
        try:
            destination.preflight()
            access = destination.access(source)
        except (DestinationUnavailable, RepositoryMissing) as error:
            outcome.runs += [(kind, unavailable(source, destination, error)) for kind in kinds]
            return outcome
        clear_stale_locks(settings, engine, access)
        checked = check(settings, engine, destination, access, subset)
        outcome.runs.append(("check", checked))
        if prune:
            if checked.status is Status.OK:
                outcome.runs.append(("prune", forget_and_prune(settings, engine, destination, access)))
            else:
                outcome.runs.append(("prune", RunResult(
                    source, destination.name, checked.status,
                    "nothing forgotten or pruned: the repository check did not pass")))
    return outcome


def check(settings: Settings, engine: Engine, destination: Destination, access: RepositoryAccess,
          subset: str) -> RunResult:
    result = engine.run(restic_job(access, "check", restic.check(access.repository, subset, settings.locks.retry_lock)))
    if result.ok:
        return RunResult(access.source, access.destination, Status.OK, f"check passed (data read: {subset})",
                         duration=result.duration, figures={"read_data_subset": subset})
    if result.timed_out or restic.outcome(result.exit_code) in (restic.Outcome.LOCKED, restic.Outcome.WRONG_PASSWORD,
                                                                 restic.Outcome.REPOSITORY_MISSING):
        return failure(engine, destination, access, result)
    problems = [line for line in result.output_tail if line.strip() and not line.startswith("{")][-6:]
    message = f"{access.location}: the repository check found errors (data read: {subset}): " + " | ".join(problems)
    logger.error(message)
    return RunResult(access.source, access.destination, Status.CHECK_FAILED, message, duration=result.duration,
                     figures={"read_data_subset": subset})


def _snapshots(engine: Engine, access: RepositoryAccess, tag: str) -> list[dict] | None:
    listing = engine.run(restic_job(access, "snapshots", restic.snapshots(access.repository, tags=[tag])))
    if not listing.ok:
        return None
    documents = restic.parse_output(listing.stdout).documents
    return documents[0] if documents and isinstance(documents[0], list) else []


def forget_and_prune(settings: Settings, engine: Engine, destination: Destination, access: RepositoryAccess) -> RunResult:
    source, retention, retry = access.source, settings.retention, settings.locks.retry_lock
    snapshots = _snapshots(engine, access, source)
    if snapshots is None:
        return RunResult(source, destination.name, Status.FAILED, f"{access.location}: cannot list the snapshots")
    if len(snapshots) < retention.minimum_snapshots:
        message = (f"nothing forgotten: only {len(snapshots)} snapshot(s), and at least "
                   f"{retention.minimum_snapshots} are always kept")
        logger.info("{} on {}: {}", source, destination.name, message)
        return RunResult(source, destination.name, Status.OK, message, figures=storage(engine, access))
    forgot = engine.run(restic_job(access, "forget", restic.forget(
        access.repository, daily=retention.keep_daily, monthly=retention.keep_monthly, yearly=retention.keep_yearly,
        tags=[source], retry_lock=retry)))
    if not forgot.ok:
        return failure(engine, destination, access, forgot)
    removed = [snapshot for group in _groups(forgot) for snapshot in group.get("remove") or []]
    for snapshot in removed:
        logger.info("forgot snapshot {} of {} taken {} on {}", snapshot["id"][:8], source, snapshot["time"][:19],
                    destination.name)
    kept_ids = {s["id"] for group in _groups(forgot) for s in group.get("keep") or []}
    orphans = [s["id"] for s in _snapshots(engine, access, f"{source}-manifest") or []
               if not any(tag.removeprefix("for:") in kept_ids for tag in s.get("tags", []) if tag.startswith("for:"))]
    if orphans:
        engine.run(restic_job(access, "forget-manifests", restic.forget_ids(access.repository, orphans, retry)))
    pruned = engine.run(restic_job(access, "prune", restic.prune(access.repository, retry)))
    if not pruned.ok:
        return failure(engine, destination, access, pruned)
    figures = storage(engine, access)
    message = (f"{len(removed)} snapshot(s) forgotten, {len(kept_ids)} kept; repository {figures.get('repository_bytes')} "
               f"bytes, deduplication {figures.get('deduplication_ratio')}:1")
    logger.info("{} on {}: {}", source, destination.name, message)
    return RunResult(source, destination.name, Status.OK, message, figures=figures,
                     removed=[{"id": s["id"], "time": s["time"]} for s in removed])


def _groups(result) -> list[dict]:
    documents = restic.parse_output(result.stdout).documents
    return documents[0] if documents and isinstance(documents[0], list) else []
