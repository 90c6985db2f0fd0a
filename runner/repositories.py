"""Repositories: one per source per destination. Initializing, listing, and running restic on one."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from loguru import logger

from runner import restic
from runner.destinations import Destination, DestinationUnavailable, RepositoryAccess, RepositoryMissing, init_hint
from runner.engine import Engine, JobResult, JobSpec, Mount
from runner.results import RunResult, Status

DESTINATION_LABEL = "io.offsite-backup.destination"
SOURCE_LABEL = "io.offsite-backup.source"


def restic_job(access: RepositoryAccess, job: str, argv: list[str], mounts: tuple[Mount, ...] = (),
               networks: tuple[str, ...] = (), env: Mapping[str, str] | None = None) -> JobSpec:
    return JobSpec(
        name=f"{job}-{access.source}-{access.destination}",
        argv=tuple(argv),
        mounts=(*access.mounts, *mounts),
        networks=tuple(dict.fromkeys((*access.networks, *networks))),
        env={**access.env, **(env or {})},
        timeout=access.timeout,
        labels={DESTINATION_LABEL: access.destination, SOURCE_LABEL: access.source},
    )


def failure(engine: Engine, destination: Destination, access: RepositoryAccess, result: JobResult) -> RunResult:
    """A failed restic job as a result whose message says what happened and what to do."""
    if result.timed_out:
        return RunResult(access.source, access.destination, Status.TIMED_OUT, result.describe(), duration=result.duration)
    said = restic.parse_output(result.stdout)
    detail = said.exit_error or "; ".join(said.errors[-3:]) or "\n".join(result.output_tail[-5:])
    status = Status.FAILED
    if restic.outcome(result.exit_code) is restic.Outcome.REPOSITORY_MISSING:
        status = Status.REPOSITORY_MISSING
        detail = f"no repository at {access.location}: {init_hint(access.destination, access.source)}"
    elif restic.outcome(result.exit_code) is restic.Outcome.FATAL:
        diagnosis = destination.diagnose(engine, access)
        if diagnosis:
            detail += f" (diagnosis: {diagnosis})"
    message = f"{access.location}: {restic.explain(result.exit_code)}: {detail}"
    return RunResult(access.source, access.destination, status, message, duration=result.duration)


def unavailable(source: str, destination: Destination, error: Exception) -> RunResult:
    status = Status.REPOSITORY_MISSING if isinstance(error, RepositoryMissing) else Status.UNAVAILABLE
    return RunResult(source, destination.name, status, str(error))


def init(engine: Engine, destinations: list[Destination], sources: list[str]) -> list[RunResult]:
    """Create the repositories that do not exist yet; existing ones are left alone."""
    results = []
    for destination in destinations:
        try:
            destination.preflight()
        except DestinationUnavailable as error:
            results += [unavailable(source, destination, error) for source in sources]
            continue
        for source in sources:
            results.append(_init_one(engine, destination, source))
    return results


def _init_one(engine: Engine, destination: Destination, source: str) -> RunResult:
    try:
        access = destination.access(source, create=True)
    except (DestinationUnavailable, RepositoryMissing) as error:
        return unavailable(source, destination, error)
    probe = engine.run(restic_job(access, "probe", restic.cat_config(access.repository)))
    if probe.ok:
        return RunResult(source, destination.name, Status.OK, f"{access.location}: already initialized")
    if restic.outcome(probe.exit_code) is not restic.Outcome.REPOSITORY_MISSING:
        return failure(engine, destination, access, probe)
    created = engine.run(restic_job(access, "init", restic.init(access.repository)))
    if not created.ok:
        return failure(engine, destination, access, created)
    logger.info("initialized repository {}", access.location)
    return RunResult(source, destination.name, Status.OK, f"{access.location}: initialized",
                     duration=created.duration)


@dataclass
class RepositoryState:
    destination: str
    source: str
    location: str
    state: str  # "ok", "not initialized", "unreachable: ...", "wrong password", ...
    snapshots: int | None = None
    stored_bytes: int | None = None
    uncompressed_bytes: int | None = None


def describe(engine: Engine, destinations: list[Destination], sources: list[str]) -> list[RepositoryState]:
    states = []
    for destination in destinations:
        try:
            destination.preflight()
            problem = None
        except DestinationUnavailable as error:
            problem = f"unreachable: {error}"
        for source in sources:
            states.append(_describe_one(engine, destination, source, problem))
    return states


def _describe_one(engine: Engine, destination: Destination, source: str, problem: str | None) -> RepositoryState:
    location = destination.describe(source)
    if problem:
        return RepositoryState(destination.name, source, location, problem)
    try:
        access = destination.access(source)
    except RepositoryMissing:
        return RepositoryState(destination.name, source, location, "not initialized")
    except DestinationUnavailable as error:
        return RepositoryState(destination.name, source, location, f"unusable: {error}")
    result = engine.run(restic_job(access, "stats", restic.stats(access.repository)))
    if not result.ok:
        if result.exit_code is not None and restic.outcome(result.exit_code) is restic.Outcome.REPOSITORY_MISSING:
            return RepositoryState(destination.name, source, location, "not initialized")
        return RepositoryState(destination.name, source, location, failure(engine, destination, access, result).message)
    figures = next((d for d in restic.parse_output(result.stdout).documents if isinstance(d, dict)), {})
    return RepositoryState(destination.name, source, location, "ok", figures.get("snapshots_count"),
                           figures.get("total_size"), figures.get("total_uncompressed_size"))


def storage(engine: Engine, access: RepositoryAccess, logical: bool = True) -> dict:
    """Size, snapshot count, compression and (with `logical`, which walks every snapshot)
    deduplication of a repository, from `restic stats`."""
    figures = {}
    for mode in ("raw-data", "restore-size") if logical else ("raw-data",):
        result = engine.run(restic_job(access, f"stats-{mode}", restic.stats(access.repository, mode)))
        documents = restic.parse_output(result.stdout).documents if result.ok else []
        data = documents[0] if documents and isinstance(documents[0], dict) else {}
        if mode == "raw-data":
            figures.update(stored_figures(data))
        else:
            figures["logical_bytes"] = data.get("total_size")
    if figures.get("logical_bytes") and figures.get("uncompressed_bytes"):
        figures["deduplication_ratio"] = _round(figures["logical_bytes"] / figures["uncompressed_bytes"])
    return figures


def stored_figures(raw_data: dict) -> dict:
    """The figures of `restic stats --mode raw-data`: what the repository stores."""
    return {"repository_bytes": raw_data.get("total_size"), "uncompressed_bytes": raw_data.get("total_uncompressed_size"),
            "compression_ratio": _round(raw_data.get("compression_ratio")),
            "compression_space_saving": _round(raw_data.get("compression_space_saving")),
            "snapshots": raw_data.get("snapshots_count")}


def _round(value) -> float | None:
    return round(value, 2) if isinstance(value, (int, float)) else None
