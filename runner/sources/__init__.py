"""The sources, in restore priority order. Adding a source is adding a module to this list."""

from __future__ import annotations

from types import ModuleType

from runner.settings import Settings
from runner.sources import files, minio, postgres, vault
from runner.sources.base import Payload, SourceError

SOURCES: dict[str, ModuleType] = {module.NAME: module for module in (vault, postgres, minio, files)}

__all__ = ["SOURCES", "Payload", "SourceError", "enabled", "get"]


def get(name: str) -> ModuleType:
    try:
        return SOURCES[name]
    except KeyError:
        raise ValueError(f"unknown source {name!r} (known: {', '.join(SOURCES)})") from None


def enabled(settings: Settings, names: tuple[str, ...] | list[str] = ()) -> list[str]:
    """The named sources (all enabled ones when none are named), in restore priority order."""
    for name in names:
        get(name)
    return [name for name, module in SOURCES.items()
            if (name in names if names else module.is_enabled(settings))]
