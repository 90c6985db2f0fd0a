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
from runner.destinations import Destination
from runner.engine import Engine
from runner.repository import Repository, RepositoryError, opened, reached
from runner.results import RunResult, Status, unexpected
from runner.settings import Settings

SHOWN = 10  # snapshots named in a dry run's message (--json lists them all)


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
    kinds = ["check", "prune"] if prune else ["check"]
    try:
        with opened(settings, engine, destination, source) as repository:
            checked = check(repository, subset)
            outcome.runs.append(("check", checked))
            kinds.remove("check")
            if prune:
                outcome.runs.append(("prune", forget_and_prune(repository) if checked.status is Status.OK else
                                     RunResult(source, destination.name, checked.status,
                                               "nothing forgotten or pruned: the repository check did not pass")))
    except RepositoryError as error:
        outcome.runs += [(kind, error.result(source, destination.name)) for kind in kinds]
    except Exception as error:  # contained: this repository fails, the others go on
        message = unexpected(error)
        logger.error("{} on {}: {}", source, destination.name, message)
        outcome.runs += [(kind, RunResult(source, destination.name, Status.FAILED, message)) for kind in kinds]
    return outcome


def check(repository: Repository, subset: str) -> RunResult:
    source, destination = repository.source, repository.destination.name
    try:
        checked = repository.check(subset)
    except RepositoryError as error:
        return error.result(source, destination)
    figures = {"read_data_subset": subset}
    if checked.passed:
        return RunResult(source, destination, Status.OK, f"check passed (data read: {subset})",
                         duration=checked.duration, figures=figures)
    message = (f"{repository.location}: the repository check found errors (data read: {subset}): "
               + " | ".join(checked.problems))
    logger.error(message)
    return RunResult(source, destination, Status.CHECK_FAILED, message, duration=checked.duration, figures=figures)


def forget_and_prune(repository: Repository) -> RunResult:
    source, destination = repository.source, repository.destination.name
    retention = repository.settings.retention
    try:
        listing = repository.snapshots()  # one job for the snapshots and the manifests' snapshots
        snapshots = tagged(listing, source)
        if len(snapshots) < retention.minimum_snapshots:
            message = (f"nothing forgotten: only {len(snapshots)} snapshot(s), and at least "
                       f"{retention.minimum_snapshots} are always kept")
            logger.info("{} on {}: {}", source, destination, message)
            return RunResult(source, destination, Status.OK, message, figures=repository.storage())
        forgotten = repository.forget(retention, source)
        for snapshot in forgotten.removed:
            logger.info("forgot snapshot {} of {} taken {} on {}", snapshot.short_id, source, snapshot.time[:19],
                        destination)
        kept = {snapshot.manifest_key for snapshot in forgotten.kept}
        orphans = [manifest.id for manifest in tagged(listing, f"{source}-manifest")
                   if manifest.tag_value("for:") not in kept]
        if orphans:
            repository.forget_ids(orphans)
        repository.prune()
        figures = repository.storage()
    except RepositoryError as error:
        return error.result(source, destination)
    message = (f"{len(forgotten.removed)} snapshot(s) forgotten, {len(kept)} kept; repository "
               f"{figures.get('repository_bytes')} bytes, deduplication {figures.get('deduplication_ratio')}:1")
    logger.info("{} on {}: {}", source, destination, message)
    return RunResult(source, destination, Status.OK, message, figures=figures,
                     removed=[{"id": s.id, "time": s.time} for s in forgotten.removed])


def tagged(listing: list[restic.Snapshot], tag: str) -> list[restic.Snapshot]:
    """The snapshots of a listing that carry the tag (as `restic snapshots --tag` would list them)."""
    return [snapshot for snapshot in listing if tag in snapshot.tags]


def preview(settings: Settings, engine: Engine, destination: Destination, source: str) -> RunResult:
    """What `exec prune` would forget in this repository (restic's own dry run), changing nothing: no
    lock is taken, no check is run, nothing is recorded."""
    retention = settings.retention
    try:
        repository = reached(engine, destination, source)
        listing = repository.snapshots()
        snapshots = tagged(listing, source)
        if len(snapshots) < retention.minimum_snapshots:
            return RunResult(source, destination.name, Status.OK, f"would forget nothing: only {len(snapshots)} "
                             f"snapshot(s), and at least {retention.minimum_snapshots} are always kept")
        plan = repository.forget(retention, source, dry_run=True)
        kept = {snapshot.manifest_key for snapshot in plan.kept}
        manifests = [manifest.id for manifest in tagged(listing, f"{source}-manifest")
                     if manifest.tag_value("for:") not in kept]
    except RepositoryError as error:
        return error.result(source, destination.name)
    shown = ", ".join(f"{s.short_id} of {s.time[:10]}" for s in plan.removed[:SHOWN])
    more = f" and {len(plan.removed) - SHOWN} more" if len(plan.removed) > SHOWN else ""
    message = (f"would forget {len(plan.removed)} of {len(snapshots)} snapshot(s){': ' + shown if shown else ''}"
               f"{more}; keep {len(kept)}" + (f"; and {len(manifests)} manifest snapshot(s)" if manifests else ""))
    return RunResult(source, destination.name, Status.OK, message, figures={
        "forget": [{"id": s.id, "time": s.time} for s in plan.removed],
        "keep": [{"id": s.id, "time": s.time} for s in plan.kept], "forget_manifests": manifests})
