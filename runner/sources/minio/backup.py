"""MinIO's backup (any S3 API): buckets mirrored with rclone into a persistent local mirror, then backed up.

`mc mirror` is not used: MinIO's client is packaged neither by Debian nor on PyPI, and
`rclone sync` in the tools image does the same incremental mirror (only changed objects are
transferred, deleted objects disappear from the mirror, filters, bandwidth limit). After the sync
the runner lists the source again, checks the mirror against that listing (object count, sizes,
total bytes), and writes a manifest into the mirror with each object's size, checksums, content
type and metadata, which restic then stores with the objects.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from runner import rclone
from runner.engine import Engine, JobResult, JobSpec, Mount
from runner.restic import BackupSummary
from runner.secrets.files import SecretFileError, check_secret_file
from runner.settings import Settings
from runner.sources.base import Payload, SourceError
from runner.workspace import hand_to_job_user, job_dir, remove_tree, write_atomically

NAME = "minio"
REMOTE = "minio"
OBJECTS = "objects"  # the mirror holds objects/<bucket>/<key> and, beside it, the manifest
MANIFEST = "manifest.json"
CREDENTIALS = "/run/secrets/minio-credentials"
RCLONE_CONFIG = "/run/rclone/rclone.conf"
MIRROR = "/mirror"
WORK = "/work"
INSIDE = "/minio"


def credentials_file(settings: Settings) -> Path:
    return settings.sources.minio.credentials_file or settings.paths.secrets_dir / "minio-credentials"


def mirror_dir(settings: Settings) -> Path:
    return settings.sources.minio.mirror_dir or settings.paths.staging_dir / "minio-mirror"


def s3_remote(endpoint: str, region: str) -> dict[str, str]:
    """An S3 remote; keys come from the shared-credentials file through env_auth, never from here."""
    return {"type": "s3", "provider": "Minio", "env_auth": "true", "endpoint": endpoint, "region": region}


def remote(settings: Settings) -> dict[str, str]:
    return s3_remote(settings.sources.minio.endpoint, settings.sources.minio.region)


def filters(settings: Settings) -> list[str]:
    config = settings.sources.minio
    rules = [f"- {pattern}" for pattern in config.excludes]
    if config.buckets:
        rules += [*(f"+ /{bucket}/**" for bucket in config.buckets), "- **"]
    return [arg for rule in rules for arg in ("--filter", rule)]


def rclone_job(settings: Settings, name: str, argv: list[str], *mounts: Mount) -> JobSpec:
    config_file = write_atomically(settings.paths.state_dir / "rclone" / "minio-source.conf",
                                   rclone.render_config({REMOTE: remote(settings)}))
    return JobSpec(
        name=name, argv=tuple(argv), networks=(settings.sources.minio.network,),
        mounts=(Mount(credentials_file(settings), CREDENTIALS), Mount(config_file, RCLONE_CONFIG), *mounts),
        env={"RCLONE_CONFIG": RCLONE_CONFIG, "AWS_SHARED_CREDENTIALS_FILE": CREDENTIALS},
    )


def _failed(what: str, result: JobResult) -> SourceError:
    said = [line for line in result.output_tail if line.strip()][-3:]
    return SourceError(f"{what}: {result.describe() if result.timed_out else ' '.join(said)}")


def preflight(settings: Settings, engine: Engine) -> None:
    try:
        check_secret_file(settings, credentials_file(settings), "MinIO credentials file")
    except SecretFileError as error:
        raise SourceError(str(error)) from None
    buckets = list_buckets(settings, engine)
    missing = sorted(set(settings.sources.minio.buckets) - set(buckets))
    if missing:
        raise SourceError(f"sources.minio.buckets: {', '.join(missing)} not found at {settings.sources.minio.endpoint}")


def list_buckets(settings: Settings, engine: Engine) -> list[str]:
    result = engine.run(rclone_job(settings, "minio-buckets", ["rclone", "lsjson", "--dirs-only", f"{REMOTE}:"]))
    if not result.ok:
        raise _failed(f"cannot list the buckets at {settings.sources.minio.endpoint}", result)
    return [entry["Path"] for entry in _json_list("\n".join(result.stdout), "the bucket listing")]


def _json_list(text: str, what: str) -> list[dict[str, Any]]:
    """rclone lsjson's answer: a JSON list of objects (`[]` when empty); anything else is an error."""
    try:
        value = json.loads(text)
    except ValueError:
        raise SourceError(f"{what} from rclone is not JSON: {text[:200]!r}") from None
    if not isinstance(value, list) or not all(isinstance(item, dict) and "Path" in item for item in value):
        raise SourceError(f"{what} from rclone is not a list of entries")
    return value


def sync_stats(result: JobResult) -> dict[str, Any]:
    """rclone's final statistics, from its JSON log."""
    for line in reversed(result.stderr_tail):
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and "stats" in entry:
            return entry["stats"]
    return {}


def listed_objects(settings: Settings, engine: Engine, work: Path) -> list[dict[str, Any]]:
    # The listing can be large: the job writes it to a file rather than to its output.
    argv = ["sh", "-c", 'exec "$@" > "$0"', f"{WORK}/listing.json", "rclone", "lsjson", "--recursive",
            "--files-only", "--metadata", "--hash", *filters(settings), f"{REMOTE}:"]
    result = engine.run(rclone_job(settings, "minio-list", argv, Mount(work, WORK, read_only=False)))
    if not result.ok:
        raise _failed("cannot list the objects", result)
    return _json_list((work / "listing.json").read_text(), "the object listing")


def mirrored_files(objects: Path) -> dict[str, int]:
    return {str(p.relative_to(objects)): p.stat().st_size for p in objects.rglob("*") if p.is_file()}


def check_mirror(objects: list[dict[str, Any]], mirror: Path) -> None:
    files = mirrored_files(mirror / OBJECTS)
    problems = [f"{o['Path']}: missing" for o in objects if o["Path"] not in files]
    problems += [f"{o['Path']}: {files[o['Path']]} bytes, the source has {o['Size']}" for o in objects
                 if o["Path"] in files and files[o["Path"]] != o["Size"]]
    listed = {o["Path"] for o in objects}
    problems += [f"{path}: in the mirror but not in the source" for path in sorted(files.keys() - listed)]
    if problems:
        raise SourceError(f"the mirror does not match the source ({len(objects)} objects, {len(files)} files): "
                          + "; ".join(problems[:5]))


def manifest(objects: list[dict[str, Any]], buckets: list[str], mirror: Path,
             previous: dict[str, Any]) -> dict[str, Any]:
    """Each object's size, checksums, content type and metadata; sha256 is computed from the
    mirror only for objects that changed since the previous manifest."""
    entries = {}
    for item in objects:
        path = item["Path"]
        before = previous.get(path, {})
        unchanged = before.get("size") == item["Size"] and before.get("mtime") == item.get("ModTime")
        entries[path] = {
            "size": item["Size"],
            "mtime": item.get("ModTime"),
            "md5": (item.get("Hashes") or {}).get("md5"),
            "sha256": before["sha256"] if unchanged and before.get("sha256") else sha256_of(mirror / OBJECTS / path),
            "content_type": item.get("MimeType"),
            "metadata": item.get("Metadata") or {},
        }
    return {
        "format": 1,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "buckets": {b: {"objects": sum(1 for p in entries if p.split("/", 1)[0] == b),
                        "bytes": sum(e["size"] for p, e in entries.items() if p.split("/", 1)[0] == b)}
                    for b in buckets},
        "objects": entries,
    }


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _previous_objects(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text()).get("objects", {})
    except (FileNotFoundError, ValueError):
        return {}


@contextmanager
def prepare(settings: Settings, engine: Engine) -> Iterator[Payload]:
    config = settings.sources.minio
    mirror = job_dir(mirror_dir(settings), settings)
    work = job_dir(settings.paths.staging_dir / "minio-work", settings)
    try:
        previous = _previous_objects(mirror / MANIFEST)
        buckets = [b for b in list_buckets(settings, engine) if not config.buckets or b in config.buckets]
        limit = ["--bwlimit", str(config.bandwidth_limit)] if config.bandwidth_limit else []
        sync = engine.run(rclone_job(settings, "minio-sync", [
            "rclone", "sync", f"{REMOTE}:", f"{MIRROR}/{OBJECTS}", *filters(settings), "--delete-excluded", *limit,
            "--use-json-log", "--stats", "1000h", "--stats-log-level", "NOTICE"],
            Mount(mirror, MIRROR, read_only=False)))
        if not sync.ok:
            raise _failed("rclone sync from the S3 server failed", sync)
        stats = sync_stats(sync)
        objects = listed_objects(settings, engine, work)
        check_mirror(objects, mirror)
        document = manifest(objects, buckets, mirror, previous)
        hand_to_job_user(write_atomically(mirror / MANIFEST, json.dumps(document, indent=1, sort_keys=True)), settings)
        yield Payload(
            mounts=(Mount(mirror, INSIDE),), paths=(INSIDE,),
            figures={"objects": len(objects), "object_bytes": sum(o["Size"] for o in objects),
                     "transferred": stats.get("transfers"), "transferred_bytes": stats.get("bytes"),
                     "deleted": stats.get("deletes")},
        )
    finally:
        remove_tree(work)


def verify(settings: Settings, payload: Payload, summary: BackupSummary) -> None:
    stored = summary.files_processed
    if stored != payload.figures["objects"] + 1:  # the objects and the manifest beside them
        raise SourceError(f"the snapshot holds {stored} files, the mirror {payload.figures['objects']} objects")
