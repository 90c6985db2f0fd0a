"""MinIO (any S3 API): the buckets mirrored with rclone, with a manifest of every object's checksums,
content type and metadata, then backed up; restored to a directory or uploaded into an S3 server;
restore-tested object by object."""

from __future__ import annotations

from runner.secrets.files import SecretFile, kv_value
from runner.settings import Settings
from runner.sources.minio.backup import (
    NAME,
    credentials_file,
    plan,
    preflight,
    prepare,
    verify,
)
from runner.sources.minio.contents import show_snapshot
from runner.sources.minio.restore import RESTORE_OPTIONS, restore
from runner.sources.minio.restore_test import restore_test

TITLE = "MinIO"

__all__ = ["NAME", "RESTORE_OPTIONS", "TITLE", "is_enabled", "plan", "preflight", "prepare", "restore", "restore_test",
           "secret_files", "show_snapshot", "verify"]


def is_enabled(settings: Settings) -> bool:
    return settings.sources.minio.enabled


def secret_files(settings: Settings) -> list[SecretFile]:
    return [SecretFile(credentials_file(settings), "minio", ("access_key", "secret_key"),
                       "[default]\naws_access_key_id = " + kv_value("access_key")
                       + "\naws_secret_access_key = " + kv_value("secret_key") + "\n",
                       "MinIO access keys (AWS shared-credentials format)")]
