"""What `runner snapshots show` says of a plain files snapshot: its tree (restic ls), each path as it was
on the server, or only what lies under --prefix PATH."""

from __future__ import annotations

from runner.restic import Node
from runner.restoring import Contents, ShowRequest
from runner.sources.files.backup import ROOT
from runner.units import size_text


def show_snapshot(request: ShowRequest) -> Contents:
    nodes = request.repository.ls(request.snapshot, request.work)
    return describe(nodes, request.prefix)


def original(node: Node) -> str:
    """The path a node had on the server (the snapshot holds it under /data)."""
    return node.path.removeprefix(ROOT)


def under(path: str, prefix: str) -> bool:
    top = prefix.rstrip("/") or "/"
    return path == top or path.startswith(top.rstrip("/") + "/")


def describe(nodes: list[Node], prefix: str | None = None) -> Contents:
    chosen = [node for node in nodes if original(node) and (prefix is None or under(original(node), prefix))]
    rows = tuple((original(node), node.type, size_text(node.size) if node.type == "file" else "")
                 for node in chosen)
    files = [node for node in chosen if node.type == "file"]
    where = f" under {prefix}" if prefix else ""
    summary = (f"{len(files):,} files ({size_text(sum(node.size or 0 for node in files))}) and "
               f"{sum(1 for node in chosen if node.type == 'dir'):,} directories{where}, each at its original path "
               "(`runner restore files --path PATH --to-dir DIR` brings one back)")
    data = {"prefix": prefix, "nodes": [{"path": original(node), "type": node.type, "size": node.size}
                                        for node in chosen]}
    return Contents(summary, ("path", "type", "size"), rows, data)
