"""What a source is: the Source protocol every source package satisfies, and the Payload its
backup hands to restic.

A source package (runner/sources/<name>/) holds its backup (backup.py: preflight, prepare, verify),
its restore (restore.py: what `runner restore <name>` does), its restore test (restore_test.py), what
`runner snapshots show` says of a snapshot (contents.py) and the secret files it needs; its __init__
re-exports what the protocol names. The registry
(runner/sources/__init__.py) lists the packages in restore priority order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from runner.engine import Engine, Mount

if TYPE_CHECKING:
    import click

    from runner.restic import BackupSummary
    from runner.restoring import Contents, RestoreRequest, ShowRequest, Trial, Verified
    from runner.secrets.files import SecretFile
    from runner.settings import Settings


class SourceError(Exception):
    """The source cannot be backed up (unhealthy, unreachable, misconfigured)."""


class Companion(Protocol):
    """Runs beside a backup job (e.g. feeding it a dump made with `podman exec`); `problem` explains
    a failure once it has exited."""

    problem: str

    def __enter__(self) -> Companion: ...

    def __exit__(self, *exc: object) -> bool | None: ...


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
    capabilities: tuple[str, ...] = ()  # the backup job's (engine.JOB_CAPABILITIES)
    # A file the backup job writes (e.g. a manifest of the dump), as the job sees it: once the backup succeeded
    # it is stored as a second snapshot, linked to the first (Repository.backup).
    sidecar: str = ""
    companion: Callable[[], Companion] | None = None
    figures: dict[str, Any] = field(default_factory=dict)  # what preparing measured
    # What the source holds but could not be staged ("what: why"): the snapshot is stored without
    # it, and the run is reported partial, naming it.
    unsaved: tuple[str, ...] = ()


@runtime_checkable
class Source(Protocol):
    """What a source package provides."""

    @property
    def NAME(self) -> str:
        """The name in commands, tags and repository paths."""
        ...

    @property
    def TITLE(self) -> str:
        """As a person names it."""
        ...

    @property
    def RESTORE_OPTIONS(self) -> Sequence[click.Parameter]:
        """`runner restore <NAME>`'s own options."""
        ...

    def is_enabled(self, settings: Settings) -> bool: ...

    def secret_files(self, settings: Settings) -> list[SecretFile]:
        """The files Vault Agent renders for this source's jobs."""
        ...

    def preflight(self, settings: Settings, engine: Engine) -> None:
        """Raise SourceError when the source cannot be backed up now."""
        ...

    def prepare(self, settings: Settings, engine: Engine) -> AbstractContextManager[Payload]:
        """What to back up; whatever was staged for it is removed on exit, success or failure."""
        ...

    def verify(self, settings: Settings, payload: Payload, summary: BackupSummary) -> None:
        """Raise SourceError when restic's summary of the stored snapshot looks wrong."""
        ...

    def restore(self, request: RestoreRequest) -> str:
        """What `runner restore <NAME>` does; returns what was restored and the next step.
        Raises RestoreError."""
        ...

    def restore_test(self, trial: Trial) -> Verified:
        """Restore the latest snapshot somewhere isolated and compare it with what was backed up.
        Raises Mismatch on a difference, RestoreError when the test cannot run."""
        ...

    def plan(self, settings: Settings, engine: Engine) -> str:
        """What a backup would read, for `exec backup --dry-run`, in a line; read-only, after preflight.
        Raises SourceError."""
        ...

    def show_snapshot(self, request: ShowRequest) -> Contents:
        """What `runner snapshots show` prints: what one snapshot holds, in the source's own terms, from as
        little of it as can tell (a manifest, one file, a listing). Raises RestoreError."""
        ...
