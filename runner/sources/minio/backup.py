"""MinIO's backup (any S3 API): buckets mirrored with rclone into a persistent local mirror, then backed up.

`mc mirror` is not used: MinIO's client is packaged neither by Debian nor on PyPI, and
`rclone sync` in the tools image does the same incremental mirror (only changed objects are
transferred, deleted objects disappear from the mirror, filters, bandwidth limit). After the sync
the runner lists the source again, checks the mirror against that listing (object count, sizes,
total bytes), and writes a manifest into the mirror with each object's size, checksums, content
type and metadata, which restic then stores with the objects.

One object does not keep the others from being backed up. An object the mirror's filesystem cannot
hold (a key with a component longer than 255 bytes, or `a/b` beside an object `a`) fails in rclone
on its own; rclone's JSON log names it and says why. Such objects are left out of the snapshot and
named, with the reason, in the manifest (`unsaved`) and in the payload (`Payload.unsaved`: the run
is reported partial); a failure that is not one object's fails the backup. Folder markers (keys ending
in `/`, which S3 consoles create for an empty folder) are not objects to rclone: the empty folders
they leave in the listing are recorded in the manifest (`folder_markers`) for the restore.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loguru import logger

from runner import rclone
from runner.engine import Engine, JobResult, JobSpec, Mount
from runner.restic import BackupSummary
from runner.secrets.files import SecretFileError, check_secret_file
from runner.settings import Settings
from runner.sources.base import Payload, SourceError
from runner.workspace import hand_to_job_user, job_dir, remove_tree, sha256_of, write_atomically

NAME = "minio"
REMOTE = "minio"
OBJECTS = "objects"  # the mirror holds objects/<bucket>/<key> and, beside it, the manifest
MANIFEST = "manifest.json"
CREDENTIALS = "/run/secrets/minio-credentials"
RCLONE_CONFIG = "/run/rclone/rclone.conf"
MIRROR = "/mirror"
WORK = "/work"
INSIDE = "/minio"
SYNC_LOG = "sync.log"
LISTING = "listing.json"
LISTING_LOG = "listing.log"
# Among the metadata rclone lists for an object, what the server sets itself (Last-Modified, storage class)
SERVER_SET = frozenset({"btime", "tier"})
SHOWN_UNSAVED = 20  # unsaved objects named in the log
ATTEMPT = re.compile(r"^Attempt (\d+)/(\d+) failed")
# rclone's word for a key `<folder>/` that holds data: it takes the key for the folder and ignores it
DATA_MARKER = re.compile(r"^Entry doesn't belong in directory \"(.*)\" \(too short\)")


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


def plan(settings: Settings, engine: Engine) -> str:
    """What a backup would read (for `exec backup --dry-run`): the buckets, and those left out."""
    config = settings.sources.minio
    found = sorted(list_buckets(settings, engine))
    chosen = config.buckets or found
    left_out = sorted(set(found) - set(chosen))
    excluded = f", excluding {', '.join(config.excludes)}" if config.excludes else ""
    uncovered = f"; not backed up: {', '.join(left_out)}" if left_out else ""
    return (f"buckets {', '.join(chosen) or '(none yet)'} at {config.endpoint}{excluded}, mirrored into "
            f"{mirror_dir(settings)}{uncovered}")


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


def read_log(path: Path) -> list[dict[str, Any]]:
    """rclone's JSON log (--use-json-log --log-file), entry by entry; a line that is not a JSON object is
    skipped, a missing log is empty."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return []
    entries = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            entries.append(entry)
    return entries


def last_attempt(log: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The entries of rclone's last attempt. rclone runs a failed sync again (three attempts by default),
    logging "Attempt i/n failed ..." after each failed one: what one attempt could not copy, the next may."""
    marks = [index for index, entry in enumerate(log) if ATTEMPT.match(str(entry.get("msg", "")))]
    if not marks:
        return log
    attempt = ATTEMPT.match(str(log[marks[-1]]["msg"]))
    if attempt and attempt.group(1) == attempt.group(2):  # the last attempt failed too: its entries precede its mark
        return log[(marks[-2] + 1 if len(marks) > 1 else 0):marks[-1]]
    return log[marks[-1] + 1:]


def failures(entries: list[dict[str, Any]]) -> tuple[dict[str, str], list[str]]:
    """From rclone's log: per S3 object (bucket/key), the error that kept it out; and the errors about
    anything else (the mirror, a listing, the server)."""
    objects, others = {}, []
    for entry in entries:
        message = str(entry.get("msg", ""))
        if entry.get("level") not in ("error", "critical") or ATTEMPT.match(message):
            continue
        name = str(entry.get("object") or "")
        if entry.get("objectType") == "*s3.Object" and name:
            if DATA_MARKER.match(message):
                objects[f"{name}/"] = f"a folder marker holding data, which rclone cannot copy ({message})"
            else:
                objects[name] = message
        else:
            others.append(f"{name}: {message}" if name else message)
    return objects, others


def sync_stats(log: list[dict[str, Any]]) -> dict[str, Any]:
    """rclone's final statistics, from its JSON log."""
    return next((entry["stats"] for entry in reversed(log) if isinstance(entry.get("stats"), dict)), {})


def _job_failed(what: str, result: JobResult, others: list[str]) -> SourceError:
    return SourceError(f"{what}: {'; '.join(others[:3])}") if others and not result.timed_out else _failed(what, result)


def sync(settings: Settings, engine: Engine, mirror: Path, work: Path) -> tuple[dict[str, str], dict[str, Any]]:
    """rclone sync into the mirror; the objects it could not copy, with why, and its statistics."""
    config = settings.sources.minio
    limit = ["--bwlimit", str(config.bandwidth_limit)] if config.bandwidth_limit else []
    (work / SYNC_LOG).unlink(missing_ok=True)
    result = engine.run(rclone_job(settings, "minio-sync", [
        "rclone", "sync", f"{REMOTE}:", f"{MIRROR}/{OBJECTS}", *filters(settings), "--delete-excluded",
        # deletions go ahead even when an object failed: the mirror is checked against a new listing afterwards
        "--ignore-errors", *limit, "--use-json-log", "--log-file", f"{WORK}/{SYNC_LOG}",
        "--stats", "1000h", "--stats-log-level", "NOTICE"],
        Mount(mirror, MIRROR, read_only=False), Mount(work, WORK, read_only=False)))
    log = read_log(work / SYNC_LOG)
    unsaved, others = failures(last_attempt(log))
    if result.timed_out or others or not (result.ok or unsaved):
        raise _job_failed("rclone sync from the S3 server failed", result, others)
    return unsaved, sync_stats(log)


def listed(settings: Settings, engine: Engine, work: Path) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """A new listing of the source, objects and folders, made directory by directory (`--disable ListR`:
    rclone's one-request recursive listing leaves the empty folders out); and the objects rclone could not
    list, with why. The listing can be large: the job writes it to a file rather than to its output."""
    (work / LISTING_LOG).unlink(missing_ok=True)
    argv = ["sh", "-c", 'exec "$@" > "$0"', f"{WORK}/{LISTING}", "rclone", "lsjson", "--recursive",
            "--disable", "ListR", "--metadata", "--hash", *filters(settings), "--use-json-log",
            "--log-file", f"{WORK}/{LISTING_LOG}", f"{REMOTE}:"]
    result = engine.run(rclone_job(settings, "minio-list", argv, Mount(work, WORK, read_only=False)))
    unlisted, others = failures(read_log(work / LISTING_LOG))
    if not result.ok or others:
        raise _job_failed("cannot list the objects", result, others)
    return _json_list((work / LISTING).read_text(), "the object listing"), unlisted


def empty_folders(listing: list[dict[str, Any]]) -> list[str]:
    """The folders a listing shows with nothing under them, as keys (`bucket/folder/`). S3 has no folders:
    one that holds nothing is there only because of a key `<folder>/`, a folder marker. Buckets are not folders."""
    paths = [str(entry["Path"]) for entry in listing]
    parents = {path.rsplit("/", 1)[0] for path in paths if "/" in path}
    return sorted(f"{path}/" for entry, path in zip(listing, paths, strict=True)
                  if entry.get("IsDir") and "/" in path and path not in parents)


def folder_markers(settings: Settings, engine: Engine, work: Path, folders: list[str]) -> list[str]:
    """Of the empty folders, those that are empty without the filters too: a folder whose objects are all
    excluded is no marker. Each one is listed one level deep, unfiltered."""
    if not folders:
        return []
    script = (f'for folder do rclone lsf --max-depth 1 "{REMOTE}:$folder" > {WORK}/folder.txt || exit 1; '
              f'[ -s {WORK}/folder.txt ] || printf "%s\\0" "$folder"; done > {WORK}/markers.txt')
    result = engine.run(rclone_job(settings, "minio-markers", ["sh", "-c", script, "markers", *folders],
                                   Mount(work, WORK, read_only=False)))
    if not result.ok:
        raise _failed("cannot list the empty folders", result)
    return sorted(marker for marker in (work / "markers.txt").read_text().split("\0") if marker)


def drop_stale_copies(mirror: Path, unsaved: dict[str, str], saved: set[str]) -> None:
    """What the mirror holds of an object rclone could not copy this time is an older version (or nothing):
    it does not go into the snapshot."""
    objects = (mirror / OBJECTS).resolve()
    for path in unsaved.keys() - saved:
        file = mirror / OBJECTS / path
        try:
            if not path.endswith("/") and file.is_file() and not file.is_symlink() \
                    and file.resolve().is_relative_to(objects):
                file.unlink()
        except OSError:  # a name the filesystem cannot hold is not in the mirror
            continue


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


def manifest(objects: list[dict[str, Any]], buckets: list[str], mirror: Path, previous: dict[str, Any],
             unsaved: dict[str, str] | None = None, markers: list[str] | None = None) -> dict[str, Any]:
    """Each object's size, checksums, content type and metadata; sha256 is computed from the
    mirror only for objects that changed since the previous manifest. Beside them: the folder
    markers, and the objects that could not be backed up (`unsaved`, bucket/key: why)."""
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
        "format": 2,  # 2: folder_markers and unsaved
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "buckets": {b: {"objects": sum(1 for p in entries if p.split("/", 1)[0] == b),
                        "bytes": sum(e["size"] for p, e in entries.items() if p.split("/", 1)[0] == b)}
                    for b in buckets},
        "objects": entries,
        "folder_markers": sorted(markers or []),
        "unsaved": dict(sorted((unsaved or {}).items())),
    }


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
        on_server = list_buckets(settings, engine)
        buckets = [b for b in on_server if not config.buckets or b in config.buckets]
        # the sync policy review: buckets on the server that sources.minio.buckets leaves out
        uncovered = sorted(set(on_server) - set(buckets))
        unsaved, stats = sync(settings, engine, mirror, work)
        listing, unlisted = listed(settings, engine, work)
        unsaved = {**unlisted, **unsaved}
        objects = [item for item in listing if not item.get("IsDir") and item["Path"] not in unsaved]
        markers = [marker for marker in folder_markers(settings, engine, work, empty_folders(listing))
                   if marker not in unsaved]
        drop_stale_copies(mirror, unsaved, {item["Path"] for item in objects})
        check_mirror(objects, mirror)
        document = manifest(objects, buckets, mirror, previous, unsaved, markers)
        hand_to_job_user(write_atomically(mirror / MANIFEST, json.dumps(document, indent=1, sort_keys=True)), settings)
        figures: dict[str, Any] = {"objects": len(objects), "object_bytes": sum(o["Size"] for o in objects),
                                   "transferred": stats.get("transfers"), "transferred_bytes": stats.get("bytes"),
                                   "deleted": stats.get("deletes"), "folder_markers": len(markers),
                                   "unsaved": len(unsaved), "uncovered_buckets": uncovered}
        named = tuple(f"{path}: {why}" for path, why in sorted(unsaved.items()))
        if named:
            logger.warning("minio: {} objects cannot be backed up: {}", len(named), "; ".join(named[:SHOWN_UNSAVED]))
        yield Payload(mounts=(Mount(mirror, INSIDE),), paths=(INSIDE,), figures=figures, unsaved=named)
    finally:
        remove_tree(work)


def verify(settings: Settings, payload: Payload, summary: BackupSummary) -> None:
    stored = summary.files_processed
    if stored != payload.figures["objects"] + 1:  # the objects and the manifest beside them
        raise SourceError(f"the snapshot holds {stored} files, the mirror {payload.figures['objects']} objects")
