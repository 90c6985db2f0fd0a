"""What every source module offers, and what it hands to the backup: a Payload.

A source module has NAME and four functions:
    is_enabled(settings) -> bool
    preflight(settings, engine) -> None       raise SourceError when the source cannot be backed up now
    prepare(settings, engine) -> context manager yielding a Payload; whatever it staged is
                                              removed on exit, success or failure
    verify(settings, payload, summary) -> None raise SourceError when restic's summary looks wrong
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.engine import Mount


class SourceError(Exception):
    """The source cannot be backed up (unhealthy, unreachable, misconfigured)."""


@dataclass(frozen=True)
class Payload:
    """What restic backs up in the job container: paths, or the stdout of a command."""

    mounts: tuple[Mount, ...] = ()
    paths: tuple[str, ...] = ()
    command: tuple[str, ...] = ()
    filename: str = ""  # name of the command's output inside the snapshot
    excludes: tuple[str, ...] = ()
    networks: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    # A host directory the backup job fills (e.g. a manifest of the dump); after a successful
    # snapshot it is backed up as a second snapshot tagged with the first one's id.
    sidecar: Path | None = None
    # Runs beside each backup job (e.g. feeding a dump made with `podman exec` into it). Its
    # context value may carry a `problem` string explaining a failure.
    companion: Callable[[], AbstractContextManager] | None = None
    figures: dict[str, Any] = field(default_factory=dict)  # what preparing measured
