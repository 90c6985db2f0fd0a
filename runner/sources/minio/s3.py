"""The S3 side of a MinIO restore, run in the runner image (`python3 -m runner.sources.minio.s3`):
put objects back with exactly the content type, headers and user metadata the manifest recorded,
recreate folder markers, and tell whether buckets already hold objects.

rclone cannot upload that exactly: its S3 backend adds its own `mtime` user metadata to every upload,
and with --metadata also the local files' atime, btime, uid, gid and mode. boto3 sends what it is
given and nothing more. The keys come from the AWS shared-credentials file mounted into the job,
never from argv or the environment. The outcome is written as one JSON object to --report.
"""

from __future__ import annotations

import argparse
import configparser
import json
import re
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from runner.sources.minio.backup import MANIFEST, OBJECTS, SERVER_SET

MULTIPART_ABOVE = 256 * 1024 * 1024  # larger objects go up in parts (a single PUT may not pass 5 GiB)
PART_SIZE = 64 * 1024 * 1024
# Among the metadata rclone reports, these are headers of the object (boto3's names), not user metadata
HEADERS = {"content-type": "ContentType", "cache-control": "CacheControl",
           "content-disposition": "ContentDisposition", "content-encoding": "ContentEncoding",
           "content-language": "ContentLanguage"}
RFC3339 = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$")


class S3Error(Exception):
    """A request failed; the message names it and what the server said (never the keys)."""


def read_keys(path: Path) -> tuple[str, str]:
    """The [default] keys of an AWS shared-credentials file. Errors never quote the file's content."""
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(path.read_text())
        section = parser["default"]
        return section["aws_access_key_id"].strip(), section["aws_secret_access_key"].strip()
    except (OSError, UnicodeDecodeError) as error:
        raise S3Error(f"cannot read the credentials file {path}: {type(error).__name__}") from None
    except (configparser.Error, KeyError):
        raise S3Error(f"the credentials file {path} is not an AWS shared-credentials file with [default] "
                      "aws_access_key_id and aws_secret_access_key") from None


def connect(endpoint: str, region: str, keys: tuple[str, str]) -> Any:
    """A boto3 S3 client for one endpoint: path-style requests, retried, checksums only where S3
    requires them (so that S3-compatible servers which know no other take the uploads)."""
    config = Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3, "mode": "standard"},
                    request_checksum_calculation="when_required", response_checksum_validation="when_required",
                    connect_timeout=15, read_timeout=600)
    return boto3.session.Session().client("s3", endpoint_url=endpoint, region_name=region, config=config,
                                          aws_access_key_id=keys[0], aws_secret_access_key=keys[1])


def rclone_mtime(value: str) -> str:
    """rclone reports its `mtime` metadata (seconds since the epoch, as rclone writes it: at most nine
    decimals, trailing zeros dropped) as an RFC 3339 time; this is the value it read."""
    match = RFC3339.match(value)
    if not match:
        return value
    whole, fraction, zone = match.groups()
    seconds = int(datetime.fromisoformat(whole + ("+00:00" if zone == "Z" else zone)).timestamp())
    decimals = (fraction or "").ljust(9, "0").rstrip("0")
    return f"{seconds}.{decimals}" if decimals else str(seconds)


def object_arguments(entry: dict[str, Any]) -> dict[str, Any]:
    """boto3's arguments that give an uploaded object exactly its recorded content type, headers and
    user metadata (a manifest entry keeps the metadata as rclone listed it)."""
    arguments: dict[str, Any] = {"ContentType": entry["content_type"]} if entry.get("content_type") else {}
    metadata = {}
    for key, value in sorted((entry.get("metadata") or {}).items()):
        if key in SERVER_SET or key == "content-type":
            continue
        if key in HEADERS:
            arguments[HEADERS[key]] = value
        else:
            metadata[key] = rclone_mtime(value) if key == "mtime" else value
    if metadata:
        arguments["Metadata"] = metadata
    return arguments


def _failed(what: str, error: Exception) -> S3Error:
    if isinstance(error, ClientError):
        answer = error.response.get("Error", {})
        return S3Error(f"{what}: {answer.get('Code', '')}: {answer.get('Message', '')}".rstrip(": "))
    return S3Error(f"{what}: {error}")


def first_key(client: Any, bucket: str) -> str | None:
    """A key the bucket holds (a folder marker counts), or None when it is empty or does not exist."""
    try:
        contents = client.list_objects_v2(Bucket=bucket, MaxKeys=1).get("Contents") or []
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "NoSuchBucket":
            return None
        raise _failed(f"listing {bucket}", error) from None
    return contents[0]["Key"] if contents else None


def make_bucket(client: Any, bucket: str, region: str) -> None:
    where = {} if region in ("", "us-east-1") else {"CreateBucketConfiguration": {"LocationConstraint": region}}
    try:
        client.create_bucket(Bucket=bucket, **where)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") != "BucketAlreadyOwnedByYou":
            raise _failed(f"creating {bucket}", error) from None


def occupied(client: Any, buckets: list[str]) -> dict[str, str]:
    """Per bucket that already holds objects, one of its keys."""
    found = {bucket: first_key(client, bucket) for bucket in buckets}
    return {bucket: key for bucket, key in found.items() if key is not None}


def upload(client: Any, restored: Path, progress: dict[str, int], region: str = "us-east-1",
           multipart_above: int = MULTIPART_ABOVE, part_size: int = PART_SIZE,
           say: Callable[[str], None] = print) -> None:
    """Every bucket, object and folder marker of a restored mirror (objects/ beside manifest.json)."""
    manifest = json.loads((restored / MANIFEST).read_text())
    markers = manifest.get("folder_markers") or []
    buckets = sorted({*manifest["buckets"], *(marker.split("/", 1)[0] for marker in markers)})
    for bucket in buckets:
        make_bucket(client, bucket, region)
    progress.update(objects=0, bytes=0, folder_markers=0, buckets=len(buckets))
    transfer = TransferConfig(multipart_threshold=multipart_above, multipart_chunksize=part_size, use_threads=False)
    reported = time.monotonic()
    for path, entry in sorted(manifest["objects"].items()):
        bucket, key = path.split("/", 1)
        try:
            client.upload_file(str(restored / OBJECTS / path), bucket, key, ExtraArgs=object_arguments(entry),
                               Config=transfer)
        except (ClientError, BotoCoreError, ValueError) as error:  # ValueError: a header value not Latin-1
            raise _failed(f"uploading {path}", error) from None
        progress["objects"] += 1
        progress["bytes"] += entry["size"]
        if time.monotonic() - reported >= 10:
            reported = time.monotonic()
            say(f"uploaded {progress['objects']} of {len(manifest['objects'])} objects ({progress['bytes']} bytes)")
    for marker in markers:
        bucket, key = marker.split("/", 1)
        try:
            client.put_object(Bucket=bucket, Key=key, Body=b"")
        except (ClientError, BotoCoreError) as error:
            raise _failed(f"recreating the folder marker {marker}", error) from None
        progress["folder_markers"] += 1


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python3 -m runner.sources.minio.s3", description=__doc__)
    parser.add_argument("action", choices=["upload", "occupied"])
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--credentials", required=True, type=Path)
    parser.add_argument("--report", required=True, type=Path)
    parser.add_argument("--restored", type=Path, help="upload: the restored mirror (objects/, manifest.json)")
    parser.add_argument("--bucket", action="append", default=[], help="occupied: a bucket to look into")
    args = parser.parse_args(argv)
    progress: dict[str, int] = {}
    report: dict[str, Any] = {"progress": progress}
    try:
        client = connect(args.endpoint, args.region, read_keys(args.credentials))
        if args.action == "occupied":
            report["occupied"] = occupied(client, args.bucket)
        else:
            upload(client, args.restored, progress, args.region,
                   say=lambda line: print(line, file=sys.stderr, flush=True))
    except (S3Error, BotoCoreError, OSError, ValueError, KeyError) as error:
        report["error"] = str(error) if isinstance(error, S3Error) else f"{type(error).__name__}: {error}"
    args.report.write_text(json.dumps(report))
    sys.exit(1 if "error" in report else 0)


if __name__ == "__main__":
    main()
