"""`runner restore vault`: the raft snapshot written to a file, its sums verified, ready for
`vault operator raft snapshot restore`."""

from __future__ import annotations

import shutil
from pathlib import Path

import click

from runner.restoring import RestoreError, RestoreRequest, fetched
from runner.sources.base import SourceError
from runner.sources.vault.backup import INSIDE, NAME, SNAPSHOT, verify_snapshot

RESTORE_OPTIONS = [
    click.Option(["--output", "-o"], required=True, type=click.Path(path_type=Path, dir_okay=False),
                 help="File to write the raft snapshot to."),
]


def restore(request: RestoreRequest) -> str:
    """Write a Vault raft snapshot to a file, its sums verified, ready for
    `vault operator raft snapshot restore -force FILE`."""
    output: Path = request.options["output"]
    if output.exists() and not request.force:
        raise RestoreError(f"{output} exists; use --force to replace it")
    with fetched(request, NAME) as (snapshot, work):
        restored = work / INSIDE.lstrip("/") / SNAPSHOT
        try:
            meta = verify_snapshot(restored)
        except SourceError as error:
            raise RestoreError(f"snapshot {snapshot.short_id} is damaged: {error}") from None
        output.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(restored, output)
        output.chmod(0o600)
    return (f"wrote Vault snapshot {snapshot.short_id} of {snapshot.time[:19]} (raft index {meta.get('Index')}, "
            f"sums verified) to {output}.\nNext: start an initialized, unsealed Vault and run\n"
            f"    vault operator raft snapshot restore -force {output}\n"
            "then unseal it with the original unseal keys; then restore PostgreSQL.")
