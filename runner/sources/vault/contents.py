"""What `runner snapshots show` says of a Vault snapshot: the raft index and term and the cluster's
servers, from the snapshot file's meta.json, with its sums verified (the snapshot holds only that file)."""

from __future__ import annotations

from typing import Any

from runner.restoring import Contents, RestoreError, ShowRequest
from runner.sources.base import SourceError
from runner.sources.vault.backup import INSIDE, SNAPSHOT, verify_snapshot
from runner.units import size_text


def show_snapshot(request: ShowRequest) -> Contents:
    if request.prefix:
        raise RestoreError("--prefix applies to MinIO and plain files snapshots, not to Vault")
    file = request.repository.dump(request.snapshot, f"{INSIDE}/{SNAPSHOT}", request.work)
    try:
        meta = verify_snapshot(file)
    except SourceError as error:
        raise RestoreError(f"snapshot {request.snapshot.short_id} is damaged: {error}") from None
    return describe(meta, file.stat().st_size)


def describe(meta: dict[str, Any], size: int) -> Contents:
    configuration = meta.get("Configuration")
    servers = configuration.get("Servers") if isinstance(configuration, dict) else None
    addresses = [str(server.get("Address") or server.get("ID")) for server in servers or [] if isinstance(server, dict)]
    rows = (("raft index", str(meta.get("Index"))), ("raft term", str(meta.get("Term"))),
            ("snapshot id", str(meta.get("ID"))), ("size", size_text(size)),
            ("servers", ", ".join(addresses) or "-"))
    summary = (f"a raft snapshot at index {meta.get('Index')}, term {meta.get('Term')}, {size_text(size)}; its "
               "SHA256SUMS verified")
    data = {"raft_index": meta.get("Index"), "raft_term": meta.get("Term"), "snapshot_bytes": size,
            "servers": addresses, "meta": meta}
    return Contents(summary, ("", ""), rows, data)
