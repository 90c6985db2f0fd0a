"""The plain files' restore test: the latest snapshot restored with restic's own verification (every
restored file read back and checked against the repository), the owners and modes the snapshot recorded
given back (attributes.py), then

- the restored tree against the snapshot's listing (`restic ls --json`): every file, directory and
  link there, nothing more, each file with its size, every node with its mode and owner;
- the restored files against the originals on this machine, where they are unchanged since the
  backup (same ctime, which changes with content, mode and owner, and same size): sha256 of the
  content, mode and owner equal. This is what proves the snapshot holds what the source held, not only
  what the repository holds. Originals changed since, gone, or not readable here are counted, not compared.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from runner.restic import Node
from runner.restoring import Mismatch, Trial, Verified
from runner.sources.files.attributes import (
    OwnersNotRestored,
    apply_attributes,
    attribute_differences,
    restored_path,
)
from runner.sources.files.backup import NAME, ROOT
from runner.workspace import sha256_of

_TIME = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)")


def restore_test(trial: Trial) -> Verified:
    restored = trial.work / "restored"
    with trial.repository() as repository:
        snapshot = repository.find(NAME)
        nodes = repository.ls(snapshot, trial.work / "listing")
        with trial.phases.timed("fetch"):
            restored_bytes = repository.restore(snapshot, restored, verify=True)
    with trial.phases.timed("verify"):
        try:
            apply_attributes(nodes, restored)
            owners, note = True, ""
        except OwnersNotRestored as error:
            owners, note = False, f"; owners not compared: {error}"
        differences = compare_tree(nodes, restored, owners)
        originals = compare_with_originals(nodes, restored, snapshot.paths, owners)
        differences += originals.differences
    if differences:
        raise Mismatch("; ".join(differences[:10]) + (f" and {len(differences) - 10} more" if len(differences) > 10
                                                      else ""))
    files = sum(1 for node in nodes if node.type == "file")
    what = "modes and owners" if owners else "modes"
    message = (f"{files} files restored: content verified against the repository, {what} as backed up; "
               f"{originals.compared} unchanged originals equal to their copies (sha256, mode"
               f"{', owner' if owners else ''}){originals.skipped()}{note}")
    return Verified(message, {"snapshot_id": snapshot.id, "restored_bytes": restored_bytes, "files": files,
                              "compared_with_originals": originals.compared, "changed_since": originals.changed,
                              "unreadable_originals": originals.unreadable})


def compare_tree(nodes: list[Node], restored: Path, owners: bool = True) -> list[str]:
    """What the listing names and the restored tree lacks or holds differently (type, size, mode, and with
    `owners` uid/gid), and what the tree holds beyond the listing."""
    differences = []
    for node in nodes:
        path = restored_path(restored, node)
        if not os.path.lexists(path):
            differences.append(f"{node.path} is missing")
        elif node.type == "file" and (path.is_symlink() or not path.is_file()):
            differences.append(f"{node.path} is not a regular file")
        elif node.type == "file" and path.stat().st_size != node.size:
            differences.append(f"{node.path} has {path.stat().st_size} bytes, the backup had {node.size}")
        elif node.type == "dir" and (path.is_symlink() or not path.is_dir()):
            differences.append(f"{node.path} is not a directory")
        elif node.type == "symlink" and not path.is_symlink():
            differences.append(f"{node.path} is not a symbolic link")
        else:
            differences += [f"{node.path} has {difference}" for difference in attribute_differences(node, path, owners)]
    listed = {node.path.lstrip("/") for node in nodes}
    present = {str(path.relative_to(restored)) for path in restored.rglob("*")}
    differences += [f"/{path} is in the restored tree but not in the snapshot" for path in sorted(present - listed)]
    return differences


@dataclass
class Originals:
    """The restored tree compared with the originals on this machine."""

    compared: int = 0
    changed: int = 0  # changed or gone since the backup
    unreadable: int = 0  # not readable by the runner here (e.g. not mounted into its container)
    differences: list[str] = field(default_factory=list)

    def skipped(self) -> str:
        parts = [f"{self.changed} changed since the backup"] if self.changed else []
        parts += [f"{self.unreadable} not readable here"] if self.unreadable else []
        return f" ({', '.join(parts)})" if parts else ""


def compare_with_originals(nodes: list[Node], restored: Path, held: tuple[str, ...], owners: bool = True) -> Originals:
    """Each restored file and directory under the backed-up paths (`held`, as the snapshot names them) whose
    original is unchanged since the backup, compared with it: sha256 of a file's content, mode, and with
    `owners` uid/gid."""
    result = Originals()
    for node in nodes:
        if node.type not in ("file", "dir") or not any(_under(node.path, top) for top in held):
            continue
        original, copy = Path(node.path.removeprefix(ROOT)), restored_path(restored, node)
        try:
            info = original.lstat()
        except FileNotFoundError:
            result.changed += 1
            continue
        except OSError:
            result.unreadable += 1
            continue
        if info.st_ctime_ns != _time_ns(node.ctime) or (node.type == "file" and info.st_size != node.size):
            result.changed += 1
            continue
        if not os.path.lexists(copy):
            continue  # compare_tree says so
        try:
            same = node.type == "dir" or sha256_of(original) == sha256_of(copy)
        except PermissionError:
            result.unreadable += 1
            continue
        result.compared += 1
        if not same:
            result.differences.append(f"{original}: the restored content differs from the original, unchanged "
                                      "since the backup")
        mode, uid, gid = stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid
        if node.mode is not None and mode != node.mode:
            result.differences.append(f"{original}: the backup recorded mode {node.mode:04o}, the unchanged "
                                      f"original has {mode:04o}")
        if owners and node.uid is not None and (uid, gid) != (node.uid, node.gid):
            result.differences.append(f"{original}: the backup recorded owner {node.uid}:{node.gid}, the "
                                      f"unchanged original has {uid}:{gid}")
    return result


def _under(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip("/") + "/")


def _time_ns(text: str) -> int | None:
    """restic's time ('2026-11-30T08:10:11.123456789+01:00') in nanoseconds since the epoch, exactly."""
    match = _TIME.fullmatch(text)
    if not match:
        return None
    whole, fraction, zone = match.groups()
    seconds = int(datetime.fromisoformat(whole + ("+00:00" if zone == "Z" else zone)).timestamp())
    return seconds * 1_000_000_000 + int((fraction or "").ljust(9, "0"))
