"""The S3 side of a MinIO restore, run in the runner image (`python3 -m runner.sources.minio.s3`):
put objects back with exactly the content type, headers and user metadata the manifest recorded,
recreate folder markers, and tell whether buckets already hold objects.

rclone cannot upload that exactly: its S3 backend adds its own `mtime` user metadata to every upload,
and with --metadata also the local files' atime, btime, uid, gid and mode. Here each request is
built and signed (AWS Signature Version 4) by hand. The keys come from the AWS shared-credentials
file mounted into the job, never from argv or the environment. Each single-part upload carries the
SHA-256 recorded at backup time as its payload hash, so a server that checks it (MinIO, AWS) accepts
only the bytes that were backed up. The outcome is written as one JSON object to --report.
"""

from __future__ import annotations

import argparse
import configparser
import hashlib
import hmac
import json
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit
from xml.etree import ElementTree
from xml.sax.saxutils import escape

import requests

from runner.sources.minio.backup import MANIFEST, OBJECTS, SERVER_SET

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
MULTIPART_ABOVE = 256 * 1024 * 1024  # larger objects go up in parts (a single PUT may not pass 5 GiB)
PART_SIZE = 64 * 1024 * 1024
MAX_PARTS = 10_000
ATTEMPTS = 3
# Among the metadata rclone reports, these are headers of the object, not user metadata
HEADERS = {"content-type": "Content-Type", "cache-control": "Cache-Control",
           "content-disposition": "Content-Disposition", "content-encoding": "Content-Encoding",
           "content-language": "Content-Language"}
RFC3339 = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$")


class S3Error(Exception):
    """A request failed; the message names it and what the server said."""


@dataclass(frozen=True)
class Keys:
    access: str
    secret: str
    token: str = ""


def read_keys(path: Path) -> Keys:
    """The [default] keys of an AWS shared-credentials file. Errors never quote the file's content."""
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(path.read_text())
        section = parser["default"]
        return Keys(section["aws_access_key_id"].strip(), section["aws_secret_access_key"].strip(),
                    section.get("aws_session_token", "").strip())
    except (OSError, UnicodeDecodeError) as error:
        raise S3Error(f"cannot read the credentials file {path}: {type(error).__name__}") from None
    except (configparser.Error, KeyError):
        raise S3Error(f"the credentials file {path} is not an AWS shared-credentials file with [default] "
                      "aws_access_key_id and aws_secret_access_key") from None


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


def object_headers(entry: dict[str, Any]) -> dict[str, str]:
    """The headers that give an uploaded object exactly its recorded content type, headers and user
    metadata (a manifest entry keeps the metadata as rclone listed it)."""
    headers = {"Content-Type": entry["content_type"]} if entry.get("content_type") else {}
    for key, value in sorted((entry.get("metadata") or {}).items()):
        if key in SERVER_SET or key == "content-type":
            continue
        if key in HEADERS:
            headers[HEADERS[key]] = value
        else:
            headers[f"x-amz-meta-{key}"] = rclone_mtime(value) if key == "mtime" else value
    return headers


def signed(method: str, url: str, headers: dict[str, str], payload_hash: str, keys: Keys, region: str,
           now: datetime) -> dict[str, str]:
    """`headers` plus the ones AWS Signature Version 4 adds: host, date, payload hash, Authorization.
    The URL's path and query must already be encoded as they are sent."""
    parts = urlsplit(url)
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    headers = {**headers, "host": parts.netloc, "x-amz-date": stamp, "x-amz-content-sha256": payload_hash}
    if keys.token:
        headers["x-amz-security-token"] = keys.token
    canonical = {name.lower(): " ".join(value.split()) for name, value in headers.items()}
    names = ";".join(sorted(canonical))
    query = "&".join(sorted(pair if "=" in pair else f"{pair}=" for pair in parts.query.split("&") if pair))
    request = "\n".join([method, parts.path or "/", query, *(f"{name}:{canonical[name]}" for name in sorted(canonical)),
                         "", names, payload_hash])
    scope = f"{stamp[:8]}/{region}/s3/aws4_request"
    key = f"AWS4{keys.secret}".encode()
    for part in scope.split("/"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    text = "\n".join(["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(request.encode()).hexdigest()])
    signature = hmac.new(key, text.encode(), hashlib.sha256).hexdigest()
    headers["Authorization"] = (f"AWS4-HMAC-SHA256 Credential={keys.access}/{scope}, SignedHeaders={names}, "
                                f"Signature={signature}")
    return headers


def _texts(body: bytes, name: str) -> list[str]:
    """The text of every element called `name` in an S3 XML answer, whatever its namespace."""
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError:
        return []
    return [element.text or "" for element in root.iter() if element.tag.rsplit("}", 1)[-1] == name]


class Client:
    """Path-style requests to one S3 endpoint, retried on connection errors and 5xx answers."""

    def __init__(self, endpoint: str, region: str, keys: Keys) -> None:
        self.endpoint, self.region, self.keys = endpoint.rstrip("/"), region, keys
        self.session = requests.Session()

    def call(self, method: str, bucket: str, key: str = "", query: dict[str, str] | None = None,
             headers: dict[str, str] | None = None, body: bytes | Path = b"", payload_hash: str | None = None,
             ok: tuple[int, ...] = (200,)) -> requests.Response:
        what = f"{method} {bucket}/{key}"
        url = f"{self.endpoint}/{quote(bucket, safe='')}" + (f"/{quote(key, safe='/')}" if key else "")
        if query:
            url += "?" + "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in sorted(query.items()))
        if payload_hash is None:
            payload_hash = hashlib.sha256(body).hexdigest() if isinstance(body, bytes) else "UNSIGNED-PAYLOAD"
        for attempt in range(1, ATTEMPTS + 1):
            data = open(body, "rb") if isinstance(body, Path) else body  # closed below
            try:
                response = self.session.request(method, url, data=data, timeout=(15, 600), headers=signed(
                    method, url, headers or {}, payload_hash, self.keys, self.region, datetime.now(UTC)))
            except UnicodeError:
                raise S3Error(f"{what}: a header value cannot be sent over HTTP (not Latin-1)") from None
            except requests.RequestException as error:
                if attempt == ATTEMPTS:
                    raise S3Error(f"{what}: {error}") from None
            else:
                if response.status_code in ok:
                    return response
                if response.status_code < 500 or attempt == ATTEMPTS:
                    code = next(iter(_texts(response.content, "Code")), "")
                    message = next(iter(_texts(response.content, "Message")), response.text[:200])
                    raise S3Error(f"{what}: HTTP {response.status_code} {code}: {message}".rstrip(": "))
            finally:
                if not isinstance(data, bytes):
                    data.close()
            time.sleep(2 * attempt)
        raise AssertionError("unreachable")

    def first_key(self, bucket: str) -> str | None:
        """A key the bucket holds (a folder marker counts), or None when it is empty or does not exist."""
        response = self.call("GET", bucket, query={"list-type": "2", "max-keys": "1"}, ok=(200, 404))
        if response.status_code == 404:
            if "NoSuchBucket" not in _texts(response.content, "Code"):
                raise S3Error(f"GET {bucket}: HTTP 404 {response.text[:200]}")
            return None
        return next(iter(_texts(response.content, "Key")), None)

    def make_bucket(self, bucket: str) -> None:
        body = b"" if self.region in ("", "us-east-1") else (
            f"<CreateBucketConfiguration><LocationConstraint>{escape(self.region)}</LocationConstraint>"
            "</CreateBucketConfiguration>").encode()
        response = self.call("PUT", bucket, body=body, ok=(200, 409))
        if response.status_code == 409 and "BucketAlreadyOwnedByYou" not in _texts(response.content, "Code"):
            raise S3Error(f"PUT {bucket}: the bucket exists and belongs to someone else")

    def put(self, bucket: str, key: str, file: Path | None, size: int, sha256: str, headers: dict[str, str],
            multipart_above: int = MULTIPART_ABOVE, part_size: int = PART_SIZE) -> None:
        if file is None or size <= multipart_above:  # an empty body as bytes: requests would send an empty file chunked
            self.call("PUT", bucket, key, headers=headers, body=file if file and size else b"", payload_hash=sha256)
        else:
            self._put_in_parts(bucket, key, file, size, headers, max(part_size, -(-size // MAX_PARTS)))

    def _put_in_parts(self, bucket: str, key: str, file: Path, size: int, headers: dict[str, str],
                      part_size: int) -> None:
        started = self.call("POST", bucket, key, {"uploads": ""}, headers)
        upload = next(iter(_texts(started.content, "UploadId")), "")
        if not upload:
            raise S3Error(f"POST {bucket}/{key}?uploads: no UploadId in the answer")
        try:
            parts = []
            with open(file, "rb") as handle:
                for number in range(1, -(-size // part_size) + 1):
                    chunk = handle.read(part_size)
                    if not chunk:
                        raise S3Error(f"{file} is shorter than the {size} bytes recorded")
                    answer = self.call("PUT", bucket, key, {"partNumber": str(number), "uploadId": upload}, body=chunk)
                    parts.append(f"<Part><PartNumber>{number}</PartNumber><ETag>{escape(answer.headers['ETag'])}"
                                 "</ETag></Part>")
            done = self.call("POST", bucket, key, {"uploadId": upload},
                             body=f"<CompleteMultipartUpload>{''.join(parts)}</CompleteMultipartUpload>".encode())
            if _texts(done.content, "Code"):  # S3 may answer 200 with an error in the body
                raise S3Error(f"completing the upload of {bucket}/{key}: {_texts(done.content, 'Message')}")
        except (S3Error, OSError):
            try:
                self.call("DELETE", bucket, key, {"uploadId": upload}, ok=(200, 204, 404))
            except S3Error:
                pass  # the server expires abandoned uploads; the first error is the one to report
            raise


def occupied(client: Client, buckets: list[str]) -> dict[str, str]:
    """Per bucket that already holds objects, one of its keys."""
    found = {bucket: client.first_key(bucket) for bucket in buckets}
    return {bucket: key for bucket, key in found.items() if key is not None}


def upload(client: Client, restored: Path, progress: dict[str, int], multipart_above: int = MULTIPART_ABOVE,
           part_size: int = PART_SIZE, say: Callable[[str], None] = print) -> None:
    """Every bucket, object and folder marker of a restored mirror (objects/ beside manifest.json)."""
    manifest = json.loads((restored / MANIFEST).read_text())
    markers = manifest.get("folder_markers") or []
    buckets = sorted({*manifest["buckets"], *(marker.split("/", 1)[0] for marker in markers)})
    for bucket in buckets:
        client.make_bucket(bucket)
    progress.update(objects=0, bytes=0, folder_markers=0, buckets=len(buckets))
    reported = time.monotonic()
    for path, entry in sorted(manifest["objects"].items()):
        bucket, key = path.split("/", 1)
        client.put(bucket, key, restored / OBJECTS / path, entry["size"], entry["sha256"], object_headers(entry),
                   multipart_above, part_size)
        progress["objects"] += 1
        progress["bytes"] += entry["size"]
        if time.monotonic() - reported >= 10:
            reported = time.monotonic()
            say(f"uploaded {progress['objects']} of {len(manifest['objects'])} objects ({progress['bytes']} bytes)")
    for marker in markers:
        bucket, key = marker.split("/", 1)
        client.put(bucket, key, None, 0, EMPTY_SHA256, {})
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
        client = Client(args.endpoint, args.region, read_keys(args.credentials))
        if args.action == "occupied":
            report["occupied"] = occupied(client, args.bucket)
        else:
            upload(client, args.restored, progress, say=lambda line: print(line, file=sys.stderr, flush=True))
    except (S3Error, OSError, ValueError, KeyError) as error:
        report["error"] = str(error) if isinstance(error, S3Error) else f"{type(error).__name__}: {error}"
    args.report.write_text(json.dumps(report))
    sys.exit(1 if "error" in report else 0)


if __name__ == "__main__":
    main()
