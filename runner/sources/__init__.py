"""The sources, in restore priority order. Adding a source is adding its package (runner/sources/<name>/:
backup, restore, restore test, secret files; see base.Source) and a line here."""

from __future__ import annotations

from runner.settings import Settings
from runner.sources import files, minio, postgres, vault
from runner.sources.base import Payload, Source, SourceError

_IN_RESTORE_ORDER: tuple[Source, ...] = (vault, postgres, minio, files)
SOURCES: dict[str, Source] = {source.NAME: source for source in _IN_RESTORE_ORDER}

__all__ = ["SOURCES", "Payload", "Source", "SourceError", "enabled", "get"]


def get(name: str) -> Source:
    try:
        return SOURCES[name]
    except KeyError:
        raise ValueError(f"unknown source {name!r} (known: {', '.join(SOURCES)})") from None


def enabled(settings: Settings, names: tuple[str, ...] | list[str] = ()) -> list[str]:
    """The named sources (all enabled ones when none are named), in restore priority order."""
    for name in names:
        get(name)
    return [name for name, source in SOURCES.items()
            if (name in names if names else source.is_enabled(settings))]
