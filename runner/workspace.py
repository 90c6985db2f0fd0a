"""Directories that job containers write to, owned by the job user so a non-root job can use them."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO

from runner.settings import Settings


def job_owner(settings: Settings) -> tuple[int, int]:
    uid, _, gid = settings.jobs.user.partition(":")
    return int(uid), int(gid or uid)


def hand_to_job_user(path: Path, settings: Settings) -> None:
    """Give a path to the job user. Only root can (rootless setups map the user with keep-id instead)."""
    if os.geteuid() == 0:
        uid, gid = job_owner(settings)
        os.chown(path, uid, gid)


def job_dir(path: Path, settings: Settings, mode: int = 0o700) -> Path:
    """Create (or adopt) a directory a job container may write to."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(mode)
    hand_to_job_user(path, settings)
    return path


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def write_atomically(path: Path, text: str, mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w") as stream:
            stream.write(text)
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise
    return path


def sha256_of_stream(stream: IO[bytes]) -> str:
    digest = hashlib.sha256()
    for block in iter(lambda: stream.read(1 << 20), b""):
        digest.update(block)
    return digest.hexdigest()


def sha256_of(path: Path) -> str:
    with open(path, "rb") as handle:
        return sha256_of_stream(handle)
