"""`runner restore files`: the latest (or a chosen) snapshot of the plain files restored to a
directory, each under its original absolute path; nothing is written over the originals. With --path,
only that file or directory (only it is fetched). A forced restore into a directory holding files moves
those aside first (see put_in_place)."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

import click

from runner import restic
from runner.repository import opened
from runner.restic import Node, Snapshot
from runner.restoring import RestoreError, RestoreRequest, fetched, put_in_place, refuse_non_empty
from runner.sources.files.attributes import OwnersNotRestored, apply_attributes
from runner.sources.files.backup import NAME, ROOT
from runner.workspace import remove_tree

RESTORE_OPTIONS = [
    click.Option(["--to-dir", "target"], required=True, type=click.Path(path_type=Path, file_okay=False),
                 help="Directory to restore into: a file once at /etc/app.conf comes back as DIR/etc/app.conf."),
    click.Option(["--path", "path"], help="Only this file or directory, named by its original absolute path (e.g. "
                                          "/etc/app or /etc/app.conf; `runner snapshots show ID` lists them). It "
                                          "comes back under DIR at that path, and nothing else with it."),
]


def chosen_path(path: str) -> str:
    """--path as the absolute path it names ('/etc/app/' -> '/etc/app'); RestoreError when it is not one."""
    if not path.startswith("/"):
        raise RestoreError(f"--path {path!r}: give the file's original absolute path, e.g. /etc/app.conf")
    return str(PurePosixPath(os.path.normpath(path)))


def restore(request: RestoreRequest) -> str:
    """Restore the plain files (sources.files.paths) into a directory, each under its original
    absolute path, so that nothing is overwritten: copy back what you need from there. With --path,
    only that file or directory."""
    target: Path = request.options["target"]
    path = chosen_path(request.options["path"]) if request.options.get("path") else None
    refuse_non_empty(target, request.force)
    beside_target = target.parent / f".{target.name}.partial"  # moved into place, not copied
    includes = [restic.include_pattern(ROOT + path)] if path else []
    listing = target.parent / f".{target.name}.listing"
    with fetched(request, NAME, beside_target, includes) as (snapshot, work):
        try:
            nodes = _listing(request, snapshot, listing)
        finally:
            remove_tree(listing)
        restored = work / ROOT.lstrip("/")
        wanted = restored / path.lstrip("/") if path else restored
        if not os.path.lexists(wanted):
            held = ", ".join(held.removeprefix(ROOT) for held in snapshot.paths)
            raise RestoreError(f"{path} is not in files snapshot {snapshot.short_id} (it holds {held}); "
                               f"`runner snapshots show {snapshot.short_id} --source files` lists its tree")
        tree = wanted.is_dir() and not wanted.is_symlink()
        files = sum(1 for each in wanted.rglob("*") if each.is_file() and not each.is_symlink()) if tree else 1
        aside = put_in_place(restored, target)
    owners = _give_back_attributes(nodes, target, path)
    moved = f"The previous contents of {target} were moved to {aside} (nothing was deleted).\n" if aside else ""
    what = (f"{path} ({files} files)" if path
            else f"{files} files, each under its original path "
                 f"({', '.join(held.removeprefix(ROOT) for held in snapshot.paths)})")
    where = f"{target / path.lstrip('/')}" if path else str(target)
    return (f"restored files snapshot {snapshot.short_id} of {snapshot.time[:19]} to {where}: {what}, {owners}.\n"
            f"{moved}"
            "Next: compare them with what is on the server and copy back what is missing or damaged.")


def _listing(request: RestoreRequest, snapshot: Snapshot, work: Path) -> list[Node]:
    """The snapshot's nodes with their owners and modes (`restic ls --json`)."""
    with opened(request.settings, request.engine, request.destination, NAME) as repository:
        return repository.ls(snapshot, work)


def _give_back_attributes(nodes: list[Node], target: Path, path: str | None) -> str:
    """The restored nodes (under `path` when given) with the owners and modes the snapshot recorded: what
    restic's unprivileged job could not restore, and what moving the tree into place changed."""
    chosen = [node for node in nodes if node.path.removeprefix(ROOT)  # /data itself is the target, not restored
              and (path is None or _within(node.path.removeprefix(ROOT), path))]
    moved = [Node(node.path.removeprefix(ROOT), node.type, node.size, node.mode, node.uid, node.gid)
             for node in chosen]
    try:
        apply_attributes(moved, target)
    except OwnersNotRestored as error:
        return f"with their modes; owners not restored: {error}"
    return "with their owners and modes"


def _within(original: str, path: str) -> bool:
    return original == path or original.startswith(path.rstrip("/") + "/")
