"""MinIO's restore test: the latest mirror restored, every object's size and checksum compared with
the manifest made at backup time; with restore_tests.s3_image, the objects are also loaded into a
throwaway S3 server on an isolated network and compared through its API: exactly the recorded
content types, headers and user metadata, and the folder markers. Objects the backup could not save
(named in the manifest) were never in the snapshot: the report names them, they are no mismatch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from runner.engine import Engine, Mount
from runner.restoring import Mismatch, RestoreError, Trial, Verified
from runner.settings import Settings
from runner.sources.minio.backup import INSIDE, MANIFEST, NAME, OBJECTS, SERVER_SET, empty_folders
from runner.sources.minio.restore import compare_objects, target_config, target_job, unsaved_note, upload_objects
from runner.workspace import hand_to_job_user, job_dir


def restore_test(trial: Trial) -> Verified:
    settings, engine, work, phases = trial.settings, trial.engine, trial.work, trial.phases
    with trial.repository() as repository:
        snapshot = repository.find(NAME)
        with phases.timed("fetch"):
            restored_bytes = repository.restore(snapshot, work / "restored")
    root = work / "restored" / INSIDE.lstrip("/")
    with phases.timed("verify"):
        try:
            manifest = json.loads((root / MANIFEST).read_text())
        except FileNotFoundError:
            raise Mismatch("the snapshot has no manifest") from None
        differences = compare_objects(manifest, root / OBJECTS)
    if differences:
        raise Mismatch("; ".join(differences[:10]))
    markers, unsaved = manifest.get("folder_markers") or [], manifest.get("unsaved") or {}
    figures = {"snapshot_id": snapshot.id, "restored_bytes": restored_bytes, "objects": len(manifest["objects"]),
               "folder_markers": len(markers), "unsaved": len(unsaved)}
    message = f"{len(manifest['objects'])} objects restored with equal size, checksum and recorded metadata"
    if settings.restore_tests.s3_image:
        with phases.timed("s3"):
            differences = through_s3(settings, engine, root, manifest, work)
        if differences:
            raise Mismatch("through the S3 API: " + "; ".join(differences[:10]))
        figures["s3_compared"] = len(manifest["objects"])
        message += (", and loaded into a throwaway S3 server with exactly their content types and user metadata"
                    + (f" and its {len(markers)} folder markers" if markers else ""))
    elif markers:
        message += f"; {len(markers)} folder markers recorded"
    if unsaved:
        message += f"; not a restore mismatch, but {unsaved_note(manifest)}"
    return Verified(message, figures)


def through_s3(settings: Settings, engine: Engine, root: Path, manifest: dict[str, Any], work: Path) -> list[str]:
    """Upload the restored objects into a throwaway S3 server, list them back through its API, compare."""
    credentials = work / "s3-credentials"
    credentials.write_text("[default]\naws_access_key_id = restore-test\naws_secret_access_key = restore-test-key\n")
    credentials.chmod(0o400)
    hand_to_job_user(credentials, settings)
    with engine.isolated_network("restore-test-s3") as network:
        with engine.service("restore-test-s3", settings.restore_tests.s3_image, network,
                            timeout=settings.restore_tests.timeout) as server:
            endpoint = f"http://{server.address}:9000"
            upload_objects(settings, engine, root, endpoint, credentials, network, work / "upload")
            listing = job_dir(work / "listing", settings)
            argv = ("sh", "-c", 'exec "$@" > /listing/objects.json', "list", "rclone", "lsjson", "--recursive",
                    "--disable", "ListR", "--metadata", "--hash", "target:")
            config = target_config(settings, work / "rclone", endpoint)
            result = engine.run(target_job(settings, "list-s3", argv, config, credentials, network,
                                           Mount(listing, "/listing", read_only=False)))
            if not result.ok:
                raise RestoreError(f"could not list the throwaway S3 server: {' '.join(result.output_tail[-2:])}")
    return compare_through_s3(manifest, json.loads((listing / "objects.json").read_text()))


def restorable(metadata: dict[str, str]) -> dict[str, str]:
    """An object's metadata as rclone lists it, less what the server sets itself (Last-Modified, storage class)."""
    return {key: value for key, value in metadata.items() if key not in SERVER_SET}


def compare_through_s3(manifest: dict[str, Any], listing: list[dict[str, Any]]) -> list[str]:
    """The S3 server must hold every object of the manifest with its size, MD5 (where both sides know it),
    content type and exactly its headers and user metadata, the manifest's folder markers, and nothing else."""
    found = {item["Path"]: item for item in listing if not item.get("IsDir")}
    objects = manifest["objects"]
    differences = [f"{path} is missing" for path in sorted(objects.keys() - found.keys())]
    differences += [f"{path} is on the server but not in the backup" for path in sorted(found.keys() - objects.keys())]
    for path, entry in sorted(objects.items()):
        item = found.get(path)
        if item is None:
            continue
        md5, expected = (item.get("Hashes") or {}).get("md5"), restorable(entry.get("metadata") or {})
        got = restorable(item.get("Metadata") or {})
        if item["Size"] != entry["size"]:
            differences.append(f"{path} has {item['Size']} bytes, the backup had {entry['size']}")
        elif entry.get("md5") and md5 and md5 != entry["md5"]:
            differences.append(f"{path}: content differs")
        elif item.get("MimeType") != entry.get("content_type"):
            differences.append(f"{path}: content type {item.get('MimeType')}, "
                               f"the backup had {entry.get('content_type')}")
        elif got != expected:
            differences.append(f"{path}: metadata {got}, the backup had {expected}")
    markers, recorded = set(empty_folders(listing)), set(manifest.get("folder_markers") or [])
    differences += [f"folder marker {marker} is missing" for marker in sorted(recorded - markers)]
    differences += [f"{marker}: an empty folder the backup did not have" for marker in sorted(markers - recorded)]
    return differences
