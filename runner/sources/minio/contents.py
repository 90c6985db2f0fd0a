"""What `runner snapshots show` says of a MinIO snapshot: its buckets with their object counts and
sizes, or the objects under a prefix, from the manifest.json inside it (only that file is fetched)."""

from __future__ import annotations

from typing import Any

from runner.restoring import Contents, ShowRequest
from runner.sources.minio.backup import INSIDE, MANIFEST
from runner.sources.minio.restore import read_manifest, unsaved_note
from runner.units import size_text


def show_snapshot(request: ShowRequest) -> Contents:
    manifest = read_manifest(request.repository.dump(request.snapshot, f"{INSIDE}/{MANIFEST}", request.work).parent)
    return objects_under(manifest, request.prefix) if request.prefix else buckets(manifest)


def buckets(manifest: dict[str, Any]) -> Contents:
    recorded: dict[str, dict[str, int]] = manifest["buckets"]
    rows = tuple((bucket, f"{figures['objects']:,}", size_text(figures["bytes"]))
                 for bucket, figures in sorted(recorded.items()))
    markers = manifest.get("folder_markers") or []
    notes = [f"{len(markers)} folder markers"] if markers else []
    notes += [unsaved_note(manifest)] if manifest.get("unsaved") else []
    objects = sum(figures["objects"] for figures in recorded.values())
    summary = (f"{objects:,} objects ({size_text(sum(figures['bytes'] for figures in recorded.values()))}) in "
               f"{len(recorded)} buckets" + "".join(f"; {note}" for note in notes)
               + ". --prefix BUCKET/KEY-PREFIX lists the objects")
    data = {"buckets": recorded, "objects": objects, "folder_markers": markers,
            "unsaved": manifest.get("unsaved") or {}}
    return Contents(summary, ("bucket", "objects", "size"), rows, data)


def objects_under(manifest: dict[str, Any], prefix: str) -> Contents:
    """The objects whose bucket/key starts with `prefix`, and the folder markers there."""
    chosen = {path: entry for path, entry in sorted(manifest["objects"].items()) if path.startswith(prefix)}
    markers = [marker for marker in manifest.get("folder_markers") or [] if marker.startswith(prefix)]
    rows = tuple((path, size_text(entry["size"]), entry.get("content_type") or "-", str(entry.get("mtime") or "-")[:19])
                 for path, entry in chosen.items())
    rows += tuple((marker, "0 B", "(folder marker)", "-") for marker in markers)
    size = size_text(sum(entry["size"] for entry in chosen.values()))
    summary = (f"{len(chosen):,} objects ({size}) under {prefix}" + (f" and {len(markers)} folder markers" if markers
                                                                      else "")
               + ("" if chosen or markers else f" (the buckets: {', '.join(sorted(manifest['buckets'])) or 'none'})"))
    data = {"prefix": prefix, "objects": chosen, "folder_markers": markers}
    return Contents(summary, ("object", "size", "content type", "modified"), rows, data)
