"""PostgreSQL: every database with pg_dumpall streamed into restic with a per-table manifest;
restored by loading the dump with psql; restore-tested in a throwaway server, table by table."""

from __future__ import annotations

from runner.secrets.files import SecretFile, kv_value
from runner.settings import Settings
from runner.sources.postgres.backup import NAME, pgpass_file, plan, preflight, prepare, verify
from runner.sources.postgres.contents import show_snapshot
from runner.sources.postgres.restore import RESTORE_OPTIONS, restore
from runner.sources.postgres.restore_test import restore_test

TITLE = "PostgreSQL"

__all__ = ["NAME", "RESTORE_OPTIONS", "TITLE", "is_enabled", "plan", "preflight", "prepare", "restore", "restore_test",
           "secret_files", "show_snapshot", "verify"]

# pgpass needs ':' and '\' escaped in the password
_PGPASS_PASSWORD = '{{ .Data.data.password | replaceAll "\\\\" "\\\\\\\\" | replaceAll ":" "\\\\:" }}'


def is_enabled(settings: Settings) -> bool:
    return settings.sources.postgres.enabled


def secret_files(settings: Settings) -> list[SecretFile]:
    if settings.sources.postgres.mode != "network":  # exec mode: pg_dumpall runs as a local user in the container
        return []
    return [SecretFile(pgpass_file(settings), "postgres", ("user", "password"),
                       f"*:*:*:{kv_value('user')}:{_PGPASS_PASSWORD}\n", "PostgreSQL pgpass file")]
