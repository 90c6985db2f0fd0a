"""Every repository (one per source per destination): `repo init` creates the missing ones, `repo list`
says what each holds. Neither takes the runner's locks: init only adds, list only reads."""

from __future__ import annotations

from dataclasses import dataclass

from loguru import logger

from runner.destinations import Destination, DestinationUnavailable, RepositoryMissing
from runner.engine import Engine
from runner.repository import Repository, RepositoryError, unavailable
from runner.results import RunResult, Status


def init(engine: Engine, destinations: list[Destination], sources: list[str]) -> list[RunResult]:
    """Create the repositories that do not exist yet; existing ones are left alone."""
    results = []
    for destination in destinations:
        try:
            destination.preflight()
        except DestinationUnavailable as error:
            results += [unavailable(error).result(source, destination.name) for source in sources]
            continue
        results += [_init_one(engine, destination, source) for source in sources]
    return results


def _init_one(engine: Engine, destination: Destination, source: str) -> RunResult:
    try:
        try:
            repository = Repository(engine, destination, destination.access(source, create=True))
        except (DestinationUnavailable, RepositoryMissing) as error:
            raise unavailable(error) from None
        if repository.exists():
            return RunResult(source, destination.name, Status.OK, f"{repository.location}: already initialized")
        duration = repository.init()
    except RepositoryError as error:
        return error.result(source, destination.name)
    logger.info("initialized repository {}", repository.location)
    return RunResult(source, destination.name, Status.OK, f"{repository.location}: initialized", duration=duration)


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
    state = RepositoryState(destination.name, source, destination.describe(source), problem or "ok")
    if problem:
        return state
    try:
        repository = Repository(engine, destination, destination.access(source))
    except RepositoryMissing:
        state.state = "not initialized"
        return state
    except DestinationUnavailable as error:
        state.state = f"unusable: {error}"
        return state
    try:
        stats = repository.stats()
    except RepositoryError as error:
        state.state = "not initialized" if error.status is Status.REPOSITORY_MISSING else error.message
        return state
    state.snapshots, state.stored_bytes, state.uncompressed_bytes = (stats.snapshots, stats.total_size,
                                                                      stats.uncompressed_size)
    return state
