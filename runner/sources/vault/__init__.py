"""Vault (or OpenBao) raft storage: a snapshot through the API, verified, then backed up; restored
as a snapshot file for `vault operator raft snapshot restore`; restore-tested in a throwaway server."""

from __future__ import annotations

from runner.secrets.files import SecretFile
from runner.settings import Settings
from runner.sources.vault.backup import NAME, plan, preflight, prepare, token_file, verify
from runner.sources.vault.contents import show_snapshot
from runner.sources.vault.restore import RESTORE_OPTIONS, restore
from runner.sources.vault.restore_test import restore_test

TITLE = "Vault"

__all__ = ["NAME", "RESTORE_OPTIONS", "TITLE", "is_enabled", "plan", "preflight", "prepare", "restore", "restore_test",
           "secret_files", "show_snapshot", "verify"]


def is_enabled(settings: Settings) -> bool:
    return settings.sources.vault.enabled


def secret_files(settings: Settings) -> list[SecretFile]:
    # Not a stored secret: the agent's own token, which may read sys/storage/raft/snapshot.
    return [SecretFile(token_file(settings), "", (), "",
                       "The agent's own token reads sys/storage/raft/snapshot: the runner's Vault snapshot token.",
                       agent_token=True)]
