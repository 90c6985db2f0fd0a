"""Owners and modes of restored plain files. restic's restore job runs as the unprivileged job user, so it
restores contents, modes and times, but every file it writes is the job user's: the runner then gives
each restored node the owner (uid/gid) and mode the snapshot recorded (`restic ls --json`), the mode
again after the owner, because changing an owner clears the setuid and setgid bits."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from loguru import logger

from runner.restic import Node


class OwnersNotRestored(Exception):
    """The runner may not give files other owners (a rootless runner): the modes are restored, not the owners."""


def restored_path(root: Path, node: Node) -> Path:
    return root / node.path.lstrip("/")


def apply_attributes(nodes: list[Node], root: Path) -> int:
    """Give every node restored under `root` its recorded owner and mode (nodes absent there are left to
    whoever compares); returns how many were set. Raises OwnersNotRestored when the runner may not chown."""
    done = 0
    for node in nodes:
        path = restored_path(root, node)
        if node.uid is None or node.gid is None or not os.path.lexists(path):
            continue
        try:
            os.lchown(path, node.uid, node.gid)
        except PermissionError:
            raise OwnersNotRestored(f"the runner (uid {os.geteuid()}) may not give files other owners, so they "
                                    "stay the runner's; modes and contents are restored") from None
        if node.mode is not None and node.type != "symlink":
            os.chmod(path, node.mode)
        done += 1
    logger.debug("owners and modes of {} restored node(s) set from the snapshot", done)
    return done


def attribute_differences(node: Node, path: Path, owners: bool = True) -> list[str]:
    """How the restored node's mode (and with `owners`, its uid/gid) differ from what the snapshot recorded."""
    info = path.lstat()
    found = []
    if node.mode is not None and node.type != "symlink" and stat.S_IMODE(info.st_mode) != node.mode:
        found.append(f"mode {stat.S_IMODE(info.st_mode):04o}, the backup had {node.mode:04o}")
    if owners and node.uid is not None and (info.st_uid, info.st_gid) != (node.uid, node.gid):
        found.append(f"owner {info.st_uid}:{info.st_gid}, the backup had {node.uid}:{node.gid}")
    return found
