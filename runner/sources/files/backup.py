"""The backup of plain files: the paths, mounted read-only under /data, so the snapshot holds
/data/<original absolute path> with each file's content, mode, owner and times."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from runner.engine import Engine, Mount
from runner.restic import BackupSummary
from runner.settings import Settings
from runner.sources.base import Payload, SourceError

NAME = "files"
ROOT = "/data"
# The job reads files whatever their permissions (root's 0600 configuration too), through read-only mounts.
READ_EVERYTHING = ("DAC_READ_SEARCH",)


def inside(path: Path) -> str:
    return ROOT + str(path)


def preflight(settings: Settings, engine: Engine) -> None:
    """Every path exists, and is one a job may read: explicitly named paths under /etc and /home are, but
    never /etc or /home whole, the host's password hashes, Podman's socket and storage, or the runner's
    own secrets (engine.data_refusal)."""
    missing = [str(p) for p in settings.sources.files.paths if not p.exists()]
    if missing:
        raise SourceError(f"sources.files.paths: {', '.join(missing)} do(es) not exist")
    refused = [f"{path}: {why}" for path in settings.sources.files.paths
               if (why := engine.data_refusal(path))]
    if refused:
        raise SourceError("sources.files.paths: refusing to back up " + "; ".join(refused))


def plan(settings: Settings, engine: Engine) -> str:
    """What a backup would read (for `exec backup --dry-run`)."""
    config = settings.sources.files
    excluded = f", excluding {', '.join(config.excludes)}" if config.excludes else ""
    return f"{', '.join(map(str, config.paths))} as they are{excluded}"


@contextmanager
def prepare(settings: Settings, engine: Engine) -> Iterator[Payload]:
    paths = settings.sources.files.paths
    yield Payload(
        mounts=tuple(Mount(path, inside(path)) for path in paths),
        paths=tuple(inside(path) for path in paths),
        excludes=tuple(settings.sources.files.excludes),
        capabilities=READ_EVERYTHING,
    )


def verify(settings: Settings, payload: Payload, summary: BackupSummary) -> None:
    if not summary.files_processed:
        raise SourceError("the snapshot contains no files: check sources.files.paths and their permissions")
