"""What `runner snapshots show` says of a PostgreSQL snapshot: its databases and tables with their row
counts, read from the manifest stored beside the dump (the small sidecar snapshot tagged for:<key>);
the dump itself is not fetched."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from runner.repository import SIDECAR, SnapshotNotFound
from runner.restic import Snapshot
from runner.restoring import Contents, RestoreError, ShowRequest
from runner.sources.postgres.backup import MANIFEST, NAME
from runner.units import size_text


def show_snapshot(request: ShowRequest) -> Contents:
    if request.prefix:
        raise RestoreError("--prefix applies to MinIO and plain files snapshots, not to PostgreSQL")
    repository, snapshot = request.repository, request.snapshot
    try:
        sidecar = repository.find(f"for:{snapshot.manifest_key}")
    except SnapshotNotFound:
        raise RestoreError(f"{NAME} snapshot {snapshot.short_id} has no manifest beside it, so what it holds is "
                           f"known only by restoring it (e.g. `runner restore postgres --snapshot {snapshot.short_id} "
                           "--database NAME --to-file FILE`)") from None
    return describe(read_manifest(repository.dump(sidecar, manifest_path(sidecar), request.work)))


def manifest_path(sidecar: Snapshot) -> str:
    """Where the manifest is in its snapshot: /postgres-manifest.json, or /sidecar/postgres-manifest.json in
    one stored before backups stored it alongside the dump."""
    return f"{SIDECAR}/{MANIFEST}" if SIDECAR in sidecar.paths else f"/{MANIFEST}"


def read_manifest(path: Path) -> dict[str, Any]:
    """A manifest written by dump-with-manifest; RestoreError when it is not one."""
    try:
        manifest = json.loads(path.read_text())
        databases = manifest["databases"]
        valid = isinstance(databases, dict) and all(
            isinstance(tables, dict) and all(isinstance(figures.get("rows"), int) for figures in tables.values())
            for tables in databases.values())
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise RestoreError(f"the snapshot's manifest cannot be read: {error}") from None
    if not valid:
        raise RestoreError("the snapshot's manifest is not one dump-with-manifest writes (databases, tables, rows)")
    return dict(manifest)


def describe(manifest: dict[str, Any]) -> Contents:
    databases: dict[str, dict[str, Any]] = manifest["databases"]
    rows = tuple((database, table, f"{figures['rows']:,}") for database, tables in sorted(databases.items())
                 for table, figures in sorted(tables.items()))
    total = sum(figures["rows"] for tables in databases.values() for figures in tables.values())
    size = f"; the dump is {size_text(manifest['dump_bytes'])}" if isinstance(manifest.get("dump_bytes"), int) else ""
    summary = (f"{len(databases)} databases, {len(rows)} tables, {total:,} rows, as the manifest recorded them at "
               f"backup time{size} (databases without tables are not listed)")
    data = {"databases": {database: {table: figures["rows"] for table, figures in sorted(tables.items())}
                          for database, tables in sorted(databases.items())},
            "dump_bytes": manifest.get("dump_bytes")}
    return Contents(summary, ("database", "table", "rows"), rows, data)
