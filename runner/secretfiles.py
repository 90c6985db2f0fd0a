"""Checks of the files that carry secrets (keys, passwords) before a job is given them."""

from __future__ import annotations

import stat
from pathlib import Path


class SecretFileError(Exception):
    """A secret file is missing, empty or readable by others; the message names the file."""


def check_private_file(path: Path, what: str) -> None:
    try:
        info = path.stat()
    except FileNotFoundError:
        raise SecretFileError(f"{what} {path} does not exist") from None
    except PermissionError:
        raise SecretFileError(f"{what} {path} cannot be read by the runner") from None
    if not stat.S_ISREG(info.st_mode):
        raise SecretFileError(f"{what} {path} is not a regular file")
    if info.st_size == 0:
        raise SecretFileError(f"{what} {path} is empty")
    if info.st_mode & 0o077:
        raise SecretFileError(
            f"{what} {path} is readable by group or others (mode {stat.S_IMODE(info.st_mode):04o}); "
            "make it private (chmod 0400 or 0600)"
        )
