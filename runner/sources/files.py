"""Plain files and directories (configuration, documents): the paths, mounted read-only under /data."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from runner.engine import Mount
from runner.settings import Settings
from runner.sources.base import Payload, SourceError

NAME = "files"
ROOT = "/data"


def is_enabled(settings: Settings) -> bool:
    return settings.sources.files.enabled and bool(settings.sources.files.paths)


def inside(path: Path) -> str:
    return ROOT + str(path)


def preflight(settings: Settings, engine) -> None:
    missing = [str(p) for p in settings.sources.files.paths if not p.exists()]
    if missing:
        raise SourceError(f"sources.files.paths: {', '.join(missing)} do(es) not exist")


@contextmanager
def prepare(settings: Settings, engine):
    paths = settings.sources.files.paths
    yield Payload(
        mounts=tuple(Mount(path, inside(path)) for path in paths),
        paths=tuple(inside(path) for path in paths),
        excludes=tuple(settings.sources.files.excludes),
    )


def verify(settings: Settings, payload: Payload, summary: dict) -> None:
    if not summary.get("total_files_processed"):
        raise SourceError("the snapshot contains no files: check sources.files.paths and their permissions")
