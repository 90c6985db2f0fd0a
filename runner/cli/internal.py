"""Steps the runner runs inside job containers (hidden)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from runner.cli.base import (
    cli,
)


@cli.group(hidden=True)
def internal():
    """Steps the runner runs inside job containers."""


@internal.command("vault-probe")
@click.option("--address", required=True)
@click.option("--snapshot", required=True, type=click.Path(path_type=Path, exists=True))
@click.option("--unseal-keys-file", type=click.Path(path_type=Path, exists=True))
@click.option("--approle-dir", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--kv-mount", default="secret")
@click.option("--canary", default="")
@click.option("--canary-key", default="password")
def internal_vault_probe(address, snapshot, unseal_keys_file, approle_dir, kv_mount, canary, canary_key):
    """Restore a raft snapshot into a throwaway Vault and report, as JSON, what could be verified."""
    from runner.restoretests import vault_probe

    result = vault_probe(address, snapshot, unseal_keys_file, approle_dir, kv_mount, canary, canary_key)
    click.echo(json.dumps(result))
