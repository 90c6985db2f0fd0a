"""`runner restore minio`: every object of the mirror and the manifest of their content types and
metadata, restored to a directory; with --endpoint, uploaded into an S3 server too, with exactly the
recorded content types, headers and user metadata, and the folder markers recreated. An S3 server
whose buckets to be written already hold objects is refused unless forced.

With --bucket (and --prefix), only that bucket's objects (under that key prefix) are fetched, checked
against the manifest, written with a manifest of just them, and uploaded."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from runner import rclone, restic
from runner.engine import Engine, JobError, JobSpec, Mount
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
from runner.workspace import job_dir, sha256_of, write_atomically

RESTORE_OPTIONS = [
    click.Option(["--to-dir", "target"], required=True, type=click.Path(path_type=Path, file_okay=False),
                 help="Directory to restore the objects (objects/<bucket>/<key>) and their manifest into."),
    click.Option(["--endpoint"], help="Also upload every object to this S3 endpoint (a new MinIO), with its "
                                      "content type and metadata. Refused when its buckets to be written already "
                                      "hold objects, unless --force."),
    click.Option(["--credentials-file"], type=click.Path(path_type=Path, dir_okay=False, exists=True),
                 help="Access keys for --endpoint (AWS shared-credentials format; default: sources.minio's)."),
    click.Option(["--network"], help="Podman network to reach --endpoint on (default: sources.minio.network)."),
    click.Option(["--bucket"], help="Only this bucket: its objects and folder markers, with a manifest of just them "
                                    "(only they are fetched); with --endpoint, only this bucket is checked for "
                                    "objects and written to."),
    click.Option(["--prefix"], help="With --bucket: only the objects whose key starts with this (e.g. 2024/ or "
                                    "invoices/2024-)."),
]

S3_STEP = ("python3", "-m", "runner.sources.minio.s3")  # runner/sources/minio/s3.py, in the runner image
SHOWN = 5  # unsaved objects named in a message


def read_manifest(restored: Path) -> dict[str, Any]:
    try:
        manifest: dict[str, Any] = json.loads((restored / MANIFEST).read_text())
    except (OSError, ValueError) as error:
        raise RestoreError(f"the snapshot's {MANIFEST} cannot be read: {error}") from None
    return manifest


def selected(manifest: dict[str, Any], bucket: str, prefix: str) -> dict[str, Any]:
    """The manifest of one bucket's objects whose key starts with `prefix` (and of its folder markers and
    unsaved objects there); RestoreError when the snapshot has no such bucket, or nothing under the prefix."""
    if bucket not in manifest_buckets(manifest):
        raise RestoreError(f"the snapshot has no bucket {bucket!r} (it has: {', '.join(manifest_buckets(manifest))})")
    start = f"{bucket}/{prefix}"
    objects = {path: entry for path, entry in manifest["objects"].items() if path.startswith(start)}
    markers = [marker for marker in manifest.get("folder_markers") or [] if marker.startswith(start)]
    if prefix and not objects and not markers:
        raise RestoreError(f"bucket {bucket} holds no object whose key starts with {prefix!r} in this snapshot "
                           f"(`runner snapshots show ID --prefix {bucket}/` lists its objects)")
    unsaved = {path: why for path, why in (manifest.get("unsaved") or {}).items() if path.startswith(start)}
    figures = {"objects": len(objects), "bytes": sum(entry["size"] for entry in objects.values())}
    return {**manifest, "buckets": {bucket: figures}, "objects": objects, "folder_markers": markers, "unsaved": unsaved,
            "selected": {"bucket": bucket, "prefix": prefix}}


def selection_patterns(bucket: str, prefix: str) -> list[str]:
    """What restic restores of a snapshot for one bucket (under a key prefix): those objects and the manifest."""
    objects = f"{INSIDE}/{OBJECTS}/{bucket}"
    chosen = restic.include_pattern(f"{objects}/{prefix}", prefix=True) if prefix else restic.include_pattern(objects)
    return [restic.include_pattern(f"{INSIDE}/{MANIFEST}"), chosen]


def compare_objects(manifest: dict[str, Any], objects: Path) -> list[str]:
    """Every object of the manifest restored with its size and SHA-256, and nothing else."""
    differences = []
    present = {str(p.relative_to(objects)) for p in objects.rglob("*") if p.is_file()} if objects.exists() else set()
    for path, entry in manifest["objects"].items():
        file = objects / path
        if path not in present:
            differences.append(f"{path} is missing")
        elif file.stat().st_size != entry["size"]:
            differences.append(f"{path} has {file.stat().st_size} bytes, the backup had {entry['size']}")
        elif sha256_of(file) != entry["sha256"]:
            differences.append(f"{path}: content differs from the backup")
        elif entry.get("content_type") is None or "metadata" not in entry:
            differences.append(f"{path}: the manifest lost its content type or metadata")
    differences += [f"{path} is in the snapshot but not in its manifest"
                    for path in sorted(present - manifest["objects"].keys())]
    return differences


def manifest_buckets(manifest: dict[str, Any]) -> list[str]:
    """The buckets an upload writes to: every bucket recorded, and those of the folder markers."""
    markers = manifest.get("folder_markers") or []
    return sorted({*manifest["buckets"], *(marker.split("/", 1)[0] for marker in markers)})


def unsaved_note(manifest: dict[str, Any]) -> str:
    """What the backup could not save (named in its manifest): never in the snapshot, so not restored."""
    unsaved = manifest.get("unsaved") or {}
    if not unsaved:
        return ""
    named = "; ".join(f"{path}: {reason}" for path, reason in sorted(unsaved.items())[:SHOWN])
    more = f" and {len(unsaved) - SHOWN} more (see {MANIFEST})" if len(unsaved) > SHOWN else ""
    return f"{len(unsaved)} objects could not be backed up and are not in this snapshot: {named}{more}"


def target_job(settings: Settings, name: str, argv: tuple[str, ...], work: Path, credentials: Path, network: str,
               *mounts: Mount) -> JobSpec:
    """An rclone job that talks to the S3 server written to work/rclone.conf (target_config) as remote `target`."""
    return JobSpec(name=name, argv=argv, networks=(network,),
                   mounts=(Mount(work, "/work"), Mount(credentials, CREDENTIALS), *mounts),
                   env={"RCLONE_CONFIG": "/work/rclone.conf", "AWS_SHARED_CREDENTIALS_FILE": CREDENTIALS},
                   timeout=settings.restore_tests.timeout)


def target_config(settings: Settings, work: Path, endpoint: str) -> Path:
    job_dir(work, settings)
    remote = s3_remote(endpoint, settings.sources.minio.region)
    (work / "rclone.conf").write_text(rclone.render_config({"target": remote}))
    return work


def s3_step(settings: Settings, engine: Engine, action: str, endpoint: str, credentials: Path, network: str,
            work: Path, *args: str, mounts: tuple[Mount, ...] = ()) -> dict[str, Any]:
    """Run runner/sources/minio/s3.py in the runner image against `endpoint`; its report, or RestoreError."""
    job_dir(work, settings)
    report = work / "report.json"
    report.unlink(missing_ok=True)
    spec = JobSpec(name=f"s3-{action}", image=settings.images.runner, entrypoint=S3_STEP, networks=(network,),
                   argv=(action, "--endpoint", endpoint, "--region", settings.sources.minio.region,
                         "--credentials", CREDENTIALS, "--report", "/work/report.json", *args),
                   mounts=(Mount(credentials, CREDENTIALS), Mount(work, "/work", read_only=False), *mounts),
                   timeout=settings.restore_tests.timeout)
    try:
        result = engine.run(spec)
    except JobError as error:
        raise RestoreError(str(error)) from None
    try:
        answer: dict[str, Any] = json.loads(report.read_text())
    except (OSError, ValueError):
        raise RestoreError(f"the S3 step at {endpoint} left no report: {result.describe()}") from None
    if not result.ok or "error" in answer:
        raise RestoreError(f"{answer.get('error') or result.describe()} (done before that: {answer.get('progress')})")
    return answer


def occupied_buckets(settings: Settings, engine: Engine, manifest: dict[str, Any], endpoint: str, credentials: Path,
                     network: str, work: Path) -> dict[str, str]:
    """Per bucket to be written that already holds objects, one of its keys."""
    buckets = [arg for bucket in manifest_buckets(manifest) for arg in ("--bucket", bucket)]
    answer = s3_step(settings, engine, "occupied", endpoint, credentials, network, work, *buckets)
    return dict(answer["occupied"])


def upload_objects(settings: Settings, engine: Engine, restored: Path, endpoint: str, credentials: Path,
                   network: str, work: Path) -> int:
    """Put every object of a restored mirror into the S3 server at `endpoint` with exactly its recorded content
    type, headers and user metadata, and recreate the folder markers; the number of objects uploaded."""
    try:
        answer = s3_step(settings, engine, "upload", endpoint, credentials, network, work, "--restored", "/restored",
                         mounts=(Mount(restored, "/restored"),))
    except RestoreError as error:
        raise RestoreError(f"uploading the objects to {endpoint} failed: {error}; what was uploaded stays there "
                           "(run the restore again with --force to replace it)") from None
    return int(answer["progress"]["objects"])


def restore(request: RestoreRequest) -> str:
    """Restore the MinIO mirror: every object, and the manifest of their content types and metadata;
    with --endpoint, upload them back into an S3 server too (refused where its buckets already hold
    objects, unless --force). With --bucket (and --prefix), only those objects."""
    settings, options = request.settings, request.options
    target: Path = options["target"]
    endpoint: str | None = options["endpoint"]
    bucket, prefix = options.get("bucket"), options.get("prefix") or ""
    if prefix and not bucket:
        raise RestoreError("--prefix needs --bucket: the key prefix is looked for in one bucket")
    refuse_non_empty(target, request.force)
    beside_target = target.parent / f".{target.name}.partial"  # moved into place, not copied
    includes = selection_patterns(bucket, prefix) if bucket else []
    with fetched(request, NAME, beside_target, includes) as (snapshot, work):
        restored = work / INSIDE.lstrip("/")
        manifest = read_manifest(restored)
        if bucket:
            manifest = selected(manifest, bucket, prefix)
            differences = compare_objects(manifest, restored / OBJECTS)
            if differences:
                raise RestoreError(f"the restored objects do not match the snapshot's manifest: "
                                   f"{'; '.join(differences[:SHOWN])}; nothing was put in place or uploaded")
            write_atomically(restored / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True))
        if endpoint:
            credentials = options["credentials_file"] or credentials_file(settings)
            network = options["network"] or settings.sources.minio.network
            held = occupied_buckets(settings, request.engine, manifest, endpoint, credentials, network,
                                    work / "check")
            if held and not request.force:
                examples = ", ".join(f"{name} (e.g. {key})" for name, key in sorted(held.items()))
                raise RestoreError(f"the S3 server at {endpoint} already holds objects in the buckets to be written: "
                                   f"{examples}; nothing was uploaded. Use --force to upload anyway (objects of the "
                                   "same name are replaced, the others are left as they are)")
            uploaded = upload_objects(settings, request.engine, restored, endpoint, credentials, network,
                                      work / "upload")
        aside = put_in_place(restored, target)
    markers = manifest.get("folder_markers") or []
    moved = f"The previous contents of {target} were moved to {aside} (nothing was deleted)" if aside else ""
    notes = [note for note in (unsaved_note(manifest), moved) if note]
    chosen = (f" (bucket {bucket}" + (f", keys starting with {prefix}" if prefix else "")
              + f": {len(manifest['objects'])} objects)") if bucket else ""
    if endpoint:
        done = (f"restored MinIO snapshot {snapshot.short_id} of {snapshot.time[:19]}{chosen}: {uploaded} objects "
                f"uploaded to {endpoint} with their content types and metadata, {len(markers)} folder markers "
                f"recreated (a copy is in {target})")
        step = "Next: check a few objects through the applications; then restore plain files, if any."
    else:
        done = (f"restored MinIO snapshot {snapshot.short_id} of {snapshot.time[:19]}{chosen} to {target}: objects in "
                f"{target / OBJECTS}/<bucket>/<key>, their content types and metadata in {target / MANIFEST}"
                + (f", and {len(markers)} folder markers (empty objects named <folder>/) listed there" if markers
                   else ""))
        step = ("Next: to put them into an S3 server with exactly their content types, metadata and folder markers, "
                "run this restore with --endpoint URL (and another --to-dir); or upload them yourself, e.g. "
                f"`mc mirror {target / OBJECTS} myminio/`, and set the content types from the manifest.")
    return ".\n".join([done, *notes, step])
