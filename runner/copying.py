"""Copies between destinations (`runner exec copy`): every snapshot of a source's repository on one
destination that the same source's repository on another does not hold yet, copied with `restic copy`
in one job container that reaches both, so a site is filled without reading the sources again.

The copy gets ids of its own; restic records the backup's id as the copy's `original`
(restic.Snapshot.backup_id); the tags that link a snapshot with its manifest are copied with them
(restic.Snapshot.manifest_key). After the copy, every snapshot of the origin must be found in the target
by the backup's id, or the copy failed, whatever restic said.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from dataclasses import dataclass

from loguru import logger

from runner import restic
from runner.destinations import PASSWORD, Destination, configured
from runner.engine import Engine, JobSpec, Mount
from runner.quota import LedgerError, ledger, quota_deferral
from runner.repository import Repository, RepositoryError, opened, stored_figures
from runner.results import RunResult, Status, unexpected
from runner.settings import Settings
from runner.units import size_text

# Where the origin's files go in the job container when the target already uses the same path for others.
ORIGIN_ROOT = "/origin"
ORIGIN_PASSWORD = "/run/secrets/origin-restic-password"


class CopyError(Exception):
    """The copy cannot be done as asked (a bad pair of destinations); the message says why."""


@dataclass(frozen=True)
class Route:
    origin: Destination
    target: Destination

    def __str__(self) -> str:
        return f"{self.origin.name} -> {self.target.name}"


def routes(settings: Settings, origin: str | None = None, target: str | None = None) -> list[Route]:
    """The copies to make: from `origin` to `target` when both are given, else into every enabled destination
    with copy_from, each from its origin; a destination copied from another copy comes after it."""
    if bool(origin) != bool(target):
        raise CopyError("give both --from and --to, or neither (then every destination with copy_from is filled)")
    if origin and target:
        if origin == target:
            raise CopyError(f"--from and --to both name {origin}: a repository cannot be copied into itself")
        try:
            pair = configured(settings, [origin, target])
        except ValueError as error:
            raise CopyError(str(error)) from None
        by_name = {destination.name: destination for destination in pair}
        return [Route(by_name[origin], by_name[target])]
    enabled = {destination.name: destination for destination in configured(settings)}
    filled = [name for name, destination in enabled.items() if destination.config.copy_from]

    def depth(name: str) -> int:  # how many copies lie between the destination and a backed-up one
        steps = 0
        while enabled[name].config.copy_from in enabled and steps <= len(enabled):
            name, steps = enabled[name].config.copy_from, steps + 1
        return steps

    return [Route(enabled[enabled[name].config.copy_from], enabled[name]) for name in sorted(filled, key=depth)]


def combined_job(target: Repository, origin: Repository, name: str = "copy") -> JobSpec:
    """One job container reaching both repositories, running restic copy into `target` from `origin`.

    Both destinations' mounts, networks and environment are combined. The origin's password goes to a path of
    its own; any other file of the origin's that would land where the target has a different one is mounted
    under ORIGIN_ROOT instead, and the origin's location, options and environment follow it. restic applies
    extended options (-o) and the environment to both repositories alike: where the two set the same one
    differently (two NAS, two Drive remotes), the pair is refused (CopyError)."""
    to, of = target.access, origin.access
    taken = {mount.target: mount for mount in to.mounts}
    moved: dict[str, str] = {}
    mounts: list[Mount] = []
    for mount in of.mounts:
        if mount.target == PASSWORD:
            mounts.append(dataclasses.replace(mount, target=ORIGIN_PASSWORD))
        elif mount.target not in taken:
            mounts.append(mount)
        elif taken[mount.target] != mount:  # the same host path at the same place (the cache) is shared
            moved[mount.target] = ORIGIN_ROOT + mount.target
            mounts.append(dataclasses.replace(mount, target=moved[mount.target]))
    location = _moved(of.repository.location, moved)
    options = _merged(_options(to.repository.options), _options(_moved(o, moved) for o in of.repository.options),
                      "extended option", to.destination, of.destination)
    env = _merged(dict(to.env), {key: _moved(value, moved) for key, value in of.env.items()},
                  "environment variable", to.destination, of.destination)
    repository = dataclasses.replace(
        to.repository, options=tuple(f"{key}={value}" for key, value in options.items()),
        limit_upload_kib=_lowest(to.repository.limit_upload_kib, of.repository.limit_upload_kib),
        limit_download_kib=_lowest(to.repository.limit_download_kib, of.repository.limit_download_kib))
    argv = restic.copy(repository, location, ORIGIN_PASSWORD, target.settings.locks.retry_lock)
    job = target.job(name, argv, mounts, of.networks)
    default = target.settings.jobs.timeout
    return dataclasses.replace(job, env=env, timeout=max(to.timeout or default, of.timeout or default))


def _moved(text: str, moved: dict[str, str]) -> str:
    for old, new in moved.items():
        text = re.sub(rf"(?<![\w./-]){re.escape(old)}(?![\w.-])", new, text)
    return text


def _options(options: Iterable[str]) -> dict[str, str]:
    return {key: value for key, _, value in (option.partition("=") for option in options)}


def _merged(into: dict[str, str], origin: dict[str, str], what: str, target: str, source: str) -> dict[str, str]:
    clashes = sorted(key for key in into.keys() & origin.keys() if into[key] != origin[key])
    if clashes:
        raise CopyError(f"restic copy applies each {what} to both repositories, and {source} and {target} need "
                        f"{', '.join(clashes)} set differently: copy through a destination of another kind, or "
                        "back the sources up to both")
    return {**into, **origin}


def _lowest(*limits: int | None) -> int | None:
    return min((limit for limit in limits if limit), default=None)


def copy(settings: Settings, engine: Engine, route: Route, source: str) -> RunResult:
    """Copy what `source`'s repository on the route's target lacks from its origin, holding the runner's lock
    on both; the result is the target's. Never raises: a failure is the result."""
    try:
        return _copy(settings, engine, route, source)
    except (RepositoryError, CopyError, LedgerError) as error:
        status = error.status if isinstance(error, RepositoryError) else Status.FAILED
        message = f"copy from {route.origin.name}: {error}"
    except Exception as error:  # contained: this copy fails, the next one runs
        status, message = Status.FAILED, f"copy from {route.origin.name}: {unexpected(error)}"
    (logger.error if status.is_failure else logger.warning)("{} {}: {}", source, route, message)
    return RunResult(source, route.target.name, status, message)


def _copy(settings: Settings, engine: Engine, route: Route, source: str) -> RunResult:
    # the locks are taken in name order, so that two copies in opposite directions never wait on each other
    first, second = sorted((route.origin, route.target), key=lambda destination: destination.name)
    with opened(settings, engine, first, source) as one, opened(settings, engine, second, source) as other:
        origin, target = (one, other) if first is route.origin else (other, one)
        deferred = quota_deferral(settings.paths.state_dir, route.target, source, "not copied")
        if deferred:
            return deferred
        offered = origin.snapshots()
        before = target.snapshots()
        stored_before = target.stats().total_size
        job = combined_job(target, origin)
        result = engine.run(job)
        if not result.ok:
            raise target.failure(result)
        after = target.snapshots()
        stats = target.stats()
    missing = {s.backup_id for s in offered} - {s.backup_id for s in after}
    if missing:
        shown = ", ".join(sorted(backup_id[:8] for backup_id in missing)[:5])
        raise CopyError(f"restic copy ended without an error, but {len(missing)} snapshot(s) of {origin.location} "
                        f"are not in {target.location}: {shown}")
    held = {s.id for s in before}
    copied = [s for s in after if s.id not in held]
    added = max(0, stats.total_size - stored_before)
    try:
        ledger(settings.paths.state_dir).record(route.target.name, source, added)
        noted = ""
    except (LedgerError, OSError) as error:
        noted = f" (the upload ledger was not updated: {error})"
    manifests = sum(1 for s in copied if s.tag_value("for:"))
    if copied:
        message = (f"{len(copied) - manifests} snapshot(s)" + (f" and {manifests} manifest(s)" if manifests else "")
                   + f" copied from {route.origin.name}, {size_text(added)} added; {len(after)} in {target.location}")
    else:
        message = f"nothing new: all {len(offered)} snapshot(s) of {route.origin.name} were in {target.location}"
    logger.info("{} {}: {}", source, route, message + noted)
    newest = max(copied, key=lambda s: s.time, default=None)
    figures = {**stored_figures(stats), "copied": len(copied), "copied_manifests": manifests,
               "data_added_packed": added, "origin": route.origin.name, "copied_ids": [s.id for s in copied]}
    return RunResult(source, route.target.name, Status.OK, message + noted, newest.id if newest else None,
                     result.duration, figures)


def backed_up(destinations: list[Destination]) -> list[Destination]:
    """The destinations a backup writes to: one filled by copying (copy_from) is left out, and the log says so."""
    for destination in destinations:
        if destination.config.copy_from:
            logger.info("{} is filled by copying from {} (`runner exec copy`), not by backups of the sources: left "
                        "out", destination.name, destination.config.copy_from)
    return [destination for destination in destinations if not destination.config.copy_from]
