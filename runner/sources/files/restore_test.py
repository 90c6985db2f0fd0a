"""The plain files' restore test: the latest snapshot restored with restic's own verification
(every restored file read back and checked against the repository), then every file, directory and
link of the snapshot's listing looked for in the restored tree, files with their sizes."""

from __future__ import annotations

import os
from pathlib import Path

from runner.restic import Node
from runner.restoring import Mismatch, Trial, Verified
from runner.sources.files.backup import NAME


def restore_test(trial: Trial) -> Verified:
    restored = trial.work / "restored"
    with trial.repository() as repository:
        snapshot = repository.find(NAME)
        nodes = repository.ls(snapshot, trial.work / "listing")
        with trial.phases.timed("fetch"):
            restored_bytes = repository.restore(snapshot, restored, verify=True)
    with trial.phases.timed("verify"):
        differences = compare_tree(nodes, restored)
    if differences:
        raise Mismatch("; ".join(differences[:10]))
    files = sum(1 for node in nodes if node.type == "file")
    return Verified(f"{files} files restored with equal size and content verified against the repository",
                    {"snapshot_id": snapshot.id, "restored_bytes": restored_bytes, "files": files})


def compare_tree(nodes: list[Node], restored: Path) -> list[str]:
    """What the listing names and the restored tree lacks or holds differently, and what the tree
    holds beyond the listing."""
    differences = []
    for node in nodes:
        path = restored / node.path.lstrip("/")
        if not os.path.lexists(path):
            differences.append(f"{node.path} is missing")
        elif node.type == "file" and (path.is_symlink() or not path.is_file()):
            differences.append(f"{node.path} is not a regular file")
        elif node.type == "file" and path.stat().st_size != node.size:
            differences.append(f"{node.path} has {path.stat().st_size} bytes, the backup had {node.size}")
        elif node.type == "dir" and not path.is_dir():
            differences.append(f"{node.path} is not a directory")
        elif node.type == "symlink" and not path.is_symlink():
            differences.append(f"{node.path} is not a symbolic link")
    listed = {node.path.lstrip("/") for node in nodes}
    present = {str(path.relative_to(restored)) for path in restored.rglob("*")}
    differences += [f"/{path} is in the restored tree but not in the snapshot" for path in sorted(present - listed)]
    return differences
