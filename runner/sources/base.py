"""What every source module offers, and what it hands to the backup: a Payload.

A source module has NAME and four functions:
    is_enabled(settings) -> bool
    preflight(settings) -> None             raise SourceError when the source cannot be backed up now
    prepare(settings, engine) -> context manager yielding a Payload (staging is cleaned on exit)
    verify(settings, summary) -> None       raise SourceError when restic's summary looks wrong
"""

from __future__ import annotations

from dataclasses import dataclass

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
