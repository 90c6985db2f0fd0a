"""`runner restore files`: the latest (or a chosen) snapshot of the plain files restored to a
directory, each under its original absolute path; nothing is written over the originals. A forced
restore into a directory holding files moves those aside first (see put_in_place)."""

from __future__ import annotations

from pathlib import Path

import click

from runner.restoring import RestoreRequest, fetched, put_in_place, refuse_non_empty
from runner.sources.files.backup import NAME, ROOT

RESTORE_OPTIONS = [
    click.Option(["--to-dir", "target"], required=True, type=click.Path(path_type=Path, file_okay=False),
                 help="Directory to restore into: a file once at /etc/app.conf comes back as DIR/etc/app.conf."),
]


def restore(request: RestoreRequest) -> str:
    """Restore the plain files (sources.files.paths) into a directory, each under its original
    absolute path, so that nothing is overwritten: copy back what you need from there."""
    target: Path = request.options["target"]
    refuse_non_empty(target, request.force)
    beside_target = target.parent / f".{target.name}.partial"  # moved into place, not copied
    with fetched(request, NAME, beside_target) as (snapshot, work):
        restored = work / ROOT.lstrip("/")
        files = sum(1 for path in restored.rglob("*") if path.is_file())
        aside = put_in_place(restored, target)
    moved = f"The previous contents of {target} were moved to {aside} (nothing was deleted).\n" if aside else ""
    return (f"restored files snapshot {snapshot.short_id} of {snapshot.time[:19]} to {target}: {files} files, each "
            f"under its original path ({', '.join(path.removeprefix(ROOT) for path in snapshot.paths)}).\n{moved}"
            "Next: compare them with what is on the server and copy back what is missing or damaged.")
