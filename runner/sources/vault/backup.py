"""Vault's backup: a raft snapshot through the API, verified, then backed up.

The snapshot is streamed to staging under a temporary name, verified (a gzip'd tar whose
SHA256SUMS match meta.json and state.bin, meta.json valid JSON: what `vault operator raft snapshot
inspect` checks, done here because OpenBao has no such command), renamed, backed up, and removed
from staging whatever happens.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import hvac
import requests
from hvac import adapters

from runner.engine import Engine, Mount
from runner.restic import BackupSummary
from runner.secrets.files import SecretFileError, check_secret_file
from runner.settings import Settings
from runner.sources.base import Payload, SourceError
from runner.workspace import hand_to_job_user, job_dir, remove_tree, sha256_of_stream

NAME = "vault"
SNAPSHOT = "vault-raft.snap"
INSIDE = "/vault"
REQUIRED = ("meta.json", "state.bin")
HEALTH = {
    200: "active",
    429: "standby",
    472: "disaster-recovery secondary",
    473: "performance standby",
    501: "not initialized",
    503: "sealed",
}


def token_file(settings: Settings) -> Path:
    return settings.sources.vault.token_file or settings.paths.secrets_dir / "vault-snapshot-token"


def client(settings: Settings) -> hvac.Client:
    config = settings.sources.vault
    path = token_file(settings)
    try:
        check_secret_file(settings, path, "Vault snapshot token file")
    except SecretFileError as error:
        raise SourceError(str(error)) from None
    verify = str(config.ca_file) if config.ca_file else True
    return hvac.Client(url=config.address, token=path.read_text().strip(), verify=verify, timeout=config.timeout)


def health(settings: Settings) -> str:
    """Vault's state from /v1/sys/health, as a word ('active', 'sealed', ...)."""
    config = settings.sources.vault
    raw = adapters.RawAdapter(base_uri=config.address, verify=str(config.ca_file) if config.ca_file else True,
                              timeout=min(config.timeout, 30))
    try:
        response = raw.get("/v1/sys/health", raise_exception=False)
    except requests.RequestException as error:
        raise SourceError(f"Vault at sources.vault.address = {config.address} is unreachable: {error}") from None
    return HEALTH.get(response.status_code, f"unexpected status {response.status_code}")


def preflight(settings: Settings, engine: Engine) -> None:
    state = health(settings)
    allowed = {"active"} | ({"standby", "performance standby"} if settings.sources.vault.allow_standby else set())
    if state not in allowed:
        hint = " (set sources.vault.allow_standby to accept it)" if "standby" in state else ""
        raise SourceError(f"Vault at {settings.sources.vault.address} is {state}: no snapshot taken{hint}")
    client(settings)  # the token file must be usable before anything is staged


def plan(settings: Settings, engine: Engine) -> str:
    """What a backup would read (for `exec backup --dry-run`)."""
    return (f"a raft snapshot of Vault at {settings.sources.vault.address} ({health(settings)}), staged in "
            f"{settings.paths.staging_dir} while it is verified and backed up")


def verify_snapshot(path: Path) -> dict[str, Any]:
    """Check a raft snapshot file; return its meta.json. Raises SourceError naming what is wrong."""
    with open(path, "rb") as handle:
        if handle.read(2) != b"\x1f\x8b":
            raise SourceError(f"snapshot {path.name} is not gzip data")
    digests: dict[str, str] = {}
    contents: dict[str, bytes] = {}
    try:
        with tarfile.open(path, "r:gz") as archive:
            for member in archive:
                if not member.isfile():
                    continue
                stream = archive.extractfile(member)
                if stream is None:
                    continue
                if member.name in ("SHA256SUMS", "meta.json"):
                    contents[member.name] = stream.read()
                    digests[member.name] = hashlib.sha256(contents[member.name]).hexdigest()
                else:
                    digests[member.name] = sha256_of_stream(stream)
    except (tarfile.TarError, EOFError, OSError) as error:
        raise SourceError(f"snapshot {path.name} is not a complete gzip'd tar: {error}") from None
    if "SHA256SUMS" not in contents:
        raise SourceError(f"snapshot {path.name} has no SHA256SUMS")
    expected = {}
    for line in contents["SHA256SUMS"].decode("utf-8", "replace").splitlines():
        if line.strip():
            digest, _, name = line.strip().partition(" ")
            expected[name.strip().lstrip("*")] = digest.lower()
    for name in REQUIRED:
        if name not in digests:
            raise SourceError(f"snapshot {path.name} lacks {name}")
        if expected.get(name) != digests[name]:
            raise SourceError(f"snapshot {path.name}: {name} does not match its SHA256SUMS entry")
    try:
        meta = json.loads(contents["meta.json"])
    except ValueError:
        raise SourceError(f"snapshot {path.name}: meta.json is not valid JSON") from None
    if not isinstance(meta, dict):
        raise SourceError(f"snapshot {path.name}: meta.json is not a JSON object")
    return meta


def take_snapshot(settings: Settings, directory: Path) -> tuple[Path, dict[str, Any], str]:
    """Download, verify and name the snapshot; return its path, meta.json and SHA-256."""
    partial = directory / f".{SNAPSHOT}.{secrets.token_hex(4)}.partial"
    digest = hashlib.sha256()
    try:
        response = client(settings).sys.take_raft_snapshot()
        if response.status_code != 200:
            raise SourceError(f"Vault refused the snapshot: HTTP {response.status_code} {response.text[:200]}")
        with open(partial, "wb") as handle:
            for block in response.iter_content(1 << 20):
                handle.write(block)
                digest.update(block)
    except requests.RequestException as error:
        raise SourceError(f"snapshot download from {settings.sources.vault.address} failed: {error}") from None
    except hvac.exceptions.VaultError as error:
        raise SourceError(f"Vault refused the snapshot: {error}") from None
    except OSError as error:  # staging full or unwritable
        partial.unlink(missing_ok=True)
        raise SourceError(f"cannot write the snapshot to staging {directory}: {error.strerror or error}") from None
    meta = verify_snapshot(partial)
    final = directory / SNAPSHOT
    os.replace(partial, final)
    final.chmod(0o400)
    hand_to_job_user(final, settings)
    return final, meta, digest.hexdigest()


@contextmanager
def prepare(settings: Settings, engine: Engine) -> Iterator[Payload]:
    directory = job_dir(settings.paths.staging_dir / NAME, settings)
    try:
        snapshot, meta, sha256 = take_snapshot(settings, directory)
        yield Payload(
            mounts=(Mount(directory, INSIDE),),
            paths=(f"{INSIDE}/{SNAPSHOT}",),
            figures={"snapshot_bytes": snapshot.stat().st_size, "snapshot_sha256": sha256,
                     "raft_index": meta.get("Index"), "raft_term": meta.get("Term")},
        )
    finally:
        remove_tree(directory)


def verify(settings: Settings, payload: Payload, summary: BackupSummary) -> None:
    if summary.files_processed != 1 or summary.bytes_processed != payload.figures["snapshot_bytes"]:
        raise SourceError("the snapshot in the repository does not have the verified file's size")
