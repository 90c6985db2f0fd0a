"""Plain files and directories (configuration, documents): backed up as they are; restored to a
directory under their original paths; restore-tested against the snapshot's own listing."""

from __future__ import annotations

from runner.secrets.files import SecretFile
from runner.settings import Settings
from runner.sources.files.backup import NAME, plan, preflight, prepare, verify
from runner.sources.files.contents import show_snapshot
from runner.sources.files.restore import RESTORE_OPTIONS, restore
from runner.sources.files.restore_test import restore_test

TITLE = "plain files"

__all__ = ["NAME", "RESTORE_OPTIONS", "TITLE", "is_enabled", "plan", "preflight", "prepare", "restore", "restore_test",
           "secret_files", "show_snapshot", "verify"]


def is_enabled(settings: Settings) -> bool:
    return settings.sources.files.enabled and bool(settings.sources.files.paths)


def secret_files(settings: Settings) -> list[SecretFile]:
    return []  # the paths are read as they are; only the repository password is a secret
