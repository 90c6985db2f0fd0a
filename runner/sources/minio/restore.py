"""`runner restore minio`: every object of the mirror and the manifest of their content types and
metadata, restored to a directory; with --endpoint, uploaded into an S3 server too."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import click

from runner import rclone
from runner.engine import Engine, JobSpec, Mount
from runner.restoring import (
    RestoreError,
    RestoreRequest,
    fetched,
    put_in_place,
    refuse_non_empty,
)
from runner.settings import Settings
from runner.sources.minio.backup import (
    CREDENTIALS,
    INSIDE,
    MANIFEST,
    NAME,
    OBJECTS,
    credentials_file,
    s3_remote,
)
from runner.workspace import job_dir

RESTORE_OPTIONS = [
    click.Option(["--to-dir", "target"], required=True, type=click.Path(path_type=Path, file_okay=False),
                 help="Directory to restore the objects (objects/<bucket>/<key>) and their manifest into."),
    click.Option(["--endpoint"], help="Also upload every object to this S3 endpoint (a new MinIO), with its "
                                      "content type and metadata."),
    click.Option(["--credentials-file"], type=click.Path(path_type=Path, dir_okay=False, exists=True),
                 help="Access keys for --endpoint (AWS shared-credentials format; default: sources.minio's)."),
    click.Option(["--network"], help="Podman network to reach --endpoint on (default: sources.minio.network)."),
]

# Object metadata that the S3 server sets itself, as rclone reports it: not restored as user metadata.
SYSTEM_METADATA = {"content-type", "btime", "content-encoding", "content-language", "content-disposition",
                   "cache-control", "tier"}


def upload_script(manifest: dict[str, Any]) -> str:
    """rclone commands that put every object back with its content type and user metadata."""
    lines = ["set -e"]
    lines += [f"rclone mkdir {shlex.quote(f'target:{bucket}')}" for bucket in manifest["buckets"]]
    for path, entry in sorted(manifest["objects"].items()):
        flags = []
        if entry.get("content_type"):
            flags += ["--header-upload", f"Content-Type: {entry['content_type']}"]
        for key, value in sorted((entry.get("metadata") or {}).items()):
            if key not in SYSTEM_METADATA:
                flags += ["--metadata-set", f"{key}={value}"]
        lines.append(shlex.join(["rclone", "copyto", "-M", *flags, f"/objects/{path}", f"target:{path}"]))
    lines.append(f"echo {len(manifest['objects'])} objects uploaded")
    return "\n".join(lines) + "\n"


def target_job(settings: Settings, name: str, argv: tuple[str, ...], work: Path, credentials: Path, network: str,
               *mounts: Mount) -> JobSpec:
    """A job that talks to the S3 server at the endpoint written to work/rclone.conf as remote `target`."""
    return JobSpec(name=name, argv=argv, networks=(network,),
                   mounts=(Mount(work, "/work"), Mount(credentials, CREDENTIALS), *mounts),
                   env={"RCLONE_CONFIG": "/work/rclone.conf", "AWS_SHARED_CREDENTIALS_FILE": CREDENTIALS},
                   timeout=settings.restore_tests.timeout)


def upload_objects(settings: Settings, engine: Engine, restored: Path, endpoint: str, credentials: Path,
                   network: str, work: Path) -> int:
    manifest = json.loads((restored / MANIFEST).read_text())
    job_dir(work, settings)
    (work / "upload.sh").write_text(upload_script(manifest))
    (work / "rclone.conf").write_text(rclone.render_config(
        {"target": s3_remote(endpoint, settings.sources.minio.region)}))
    result = engine.run(target_job(settings, "upload-objects", ("sh", "/work/upload.sh"), work, credentials, network,
                                   Mount(restored / OBJECTS, "/objects")))
    if not result.ok:
        raise RestoreError(f"uploading the objects to {endpoint} failed: {' '.join(result.output_tail[-3:])}")
    return len(manifest["objects"])


def restore(request: RestoreRequest) -> str:
    """Restore the MinIO mirror: every object, and the manifest of their content types and metadata;
    with --endpoint, upload them back into an S3 server too."""
    settings, options = request.settings, request.options
    target: Path = options["target"]
    endpoint: str | None = options["endpoint"]
    refuse_non_empty(target, request.force)
    beside_target = target.parent / f".{target.name}.partial"  # moved into place, not copied
    with fetched(request, NAME, beside_target) as (snapshot, work):
        restored = work / INSIDE.lstrip("/")
        if endpoint:
            uploaded = upload_objects(settings, request.engine, restored, endpoint,
                                      options["credentials_file"] or credentials_file(settings),
                                      options["network"] or settings.sources.minio.network, work / "upload")
        put_in_place(restored, target)
    if endpoint:
        return (f"restored MinIO snapshot {snapshot.short_id} of {snapshot.time[:19]}: {uploaded} objects "
                f"uploaded to {endpoint} with their content types and metadata (a copy is in {target}).\n"
                "Next: check a few objects through the applications; then restore plain files, if any.")
    return (f"restored MinIO snapshot {snapshot.short_id} of {snapshot.time[:19]} to {target}: objects in "
            f"{target / OBJECTS}/<bucket>/<key>, their content types and metadata in {target / MANIFEST}.\n"
            f"Next: upload them, e.g. `mc mirror {target / OBJECTS} myminio/` or `rclone copy` per bucket, "
            "and set the content types from the manifest.")
