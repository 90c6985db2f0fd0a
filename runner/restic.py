"""restic as data: pure functions that build argv, parse `--json` output and explain exit codes.

Secrets never enter argv: the repository password is always a file (`--password-file`).
Nothing here runs restic; the engine runs the argv in a job container.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class Outcome(Enum):
    OK = "ok"
    FATAL = "fatal"
    INCOMPLETE = "incomplete snapshot"
    REPOSITORY_MISSING = "repository missing"
    LOCKED = "repository locked"
    WRONG_PASSWORD = "wrong password"
    CANCELLED = "cancelled"
    FAILED = "failed"


_EXIT_CODES = {
    0: Outcome.OK,
    1: Outcome.FATAL,
    3: Outcome.INCOMPLETE,
    10: Outcome.REPOSITORY_MISSING,
    11: Outcome.LOCKED,
    12: Outcome.WRONG_PASSWORD,
    130: Outcome.CANCELLED,
}

_EXPLANATIONS = {
    Outcome.OK: "completed",
    Outcome.FATAL: "failed with a fatal error",
    Outcome.INCOMPLETE: "made a snapshot, but some source files could not be read",
    Outcome.REPOSITORY_MISSING: "found no repository at this location (initialize it with `runner repo init`)",
    Outcome.LOCKED: "could not lock the repository: another process holds a lock",
    Outcome.WRONG_PASSWORD: "was refused: wrong password or no key found",
    Outcome.CANCELLED: "was cancelled",
    Outcome.FAILED: "failed",
}


def outcome(exit_code: int) -> Outcome:
    return _EXIT_CODES.get(exit_code, Outcome.FAILED)


def explain(exit_code: int) -> str:
    return f"restic {_EXPLANATIONS[outcome(exit_code)]} (exit code {exit_code})"


@dataclass(frozen=True)
class Repository:
    """How a job container reaches one repository. All paths are paths inside the container."""

    location: str  # "/repo", "sftp:user@host:/path", "rclone:remote:path"
    password_file: str
    cache_dir: str | None = None  # None: --no-cache
    options: tuple[str, ...] = ()  # extended options, "-o" key=value
    limit_upload_kib: int | None = None
    limit_download_kib: int | None = None
    compression: str = "auto"


def global_args(repo: Repository) -> list[str]:
    args = ["--repo", repo.location, "--password-file", repo.password_file, "--json",
            "--compression", repo.compression]
    args += ["--cache-dir", repo.cache_dir] if repo.cache_dir else ["--no-cache"]
    for option in repo.options:
        args += ["--option", option]
    if repo.limit_upload_kib:
        args += ["--limit-upload", str(repo.limit_upload_kib)]
    if repo.limit_download_kib:
        args += ["--limit-download", str(repo.limit_download_kib)]
    return args


def _tags(tags: Iterable[str]) -> list[str]:
    return [arg for tag in tags for arg in ("--tag", tag)]


def init(repo: Repository) -> list[str]:
    return ["restic", *global_args(repo), "init", "--repository-version", "2"]


def backup(repo: Repository, paths: Sequence[str], *, host: str, tags: Iterable[str] = (),
           excludes: Iterable[str] = (), retry_lock: int | None = None, time: str | None = None) -> list[str]:
    if not paths:
        raise ValueError("a backup needs at least one path")
    excludes_args = [arg for pattern in excludes for arg in ("--exclude", pattern)]
    time_args = ["--time", time] if time else []
    return ["restic", *global_args(repo), *_retry(retry_lock), "backup", "--quiet", "--host", host, *_tags(tags),
            *time_args, *excludes_args, "--", *paths]


def backup_from_command(repo: Repository, command: Sequence[str], *, filename: str, host: str,
                        tags: Iterable[str] = (), retry_lock: int | None = None) -> list[str]:
    """Back up a command's stdout; a command that fails makes no snapshot (restic >= 0.17)."""
    if not command:
        raise ValueError("backup_from_command needs a command")
    return ["restic", *global_args(repo), *_retry(retry_lock), "backup", "--quiet", "--host", host, *_tags(tags),
            "--stdin-filename", filename, "--stdin-from-command", "--", *command]


def snapshots(repo: Repository, *, host: str | None = None, tags: Iterable[str] = (), latest: int | None = None) -> list[str]:
    args = ["restic", *global_args(repo), "snapshots", *_tags(tags)]
    if host:
        args += ["--host", host]
    if latest:
        args += ["--latest", str(latest)]
    return args


def restore(repo: Repository, snapshot: str, target: str, *, includes: Iterable[str] = ()) -> list[str]:
    include_args = [arg for pattern in includes for arg in ("--include", pattern)]
    return ["restic", *global_args(repo), "restore", snapshot, "--target", target, *include_args]


def stats(repo: Repository, mode: str = "raw-data") -> list[str]:
    """Repository size and snapshot count; takes no lock, so it never writes."""
    return ["restic", *global_args(repo), "--no-lock", "stats", "--mode", mode]


def check(repo: Repository, subset: str | None = None, retry_lock: int | None = None) -> list[str]:
    """Verify the repository; `subset` reads that part of the data too ('3/8', '10%', 'all')."""
    args = ["restic", *global_args(repo), *_retry(retry_lock), "check"]
    if subset == "all":
        args.append("--read-data")
    elif subset:
        args += ["--read-data-subset", subset]
    return args


def forget(repo: Repository, *, daily: int, monthly: int, yearly: int, tags: Iterable[str] = (),
           retry_lock: int | None = None) -> list[str]:
    """Apply the retention policy to the snapshots with these tags (no prune: that is separate)."""
    tag_filter = ["--tag", ",".join(tags)] if tags else []
    return ["restic", *global_args(repo), *_retry(retry_lock), "forget", *tag_filter,
            "--keep-daily", str(daily), "--keep-monthly", str(monthly), "--keep-yearly", str(yearly)]


def forget_ids(repo: Repository, ids: Sequence[str], retry_lock: int | None = None) -> list[str]:
    return ["restic", *global_args(repo), *_retry(retry_lock), "forget", "--", *ids]


def prune(repo: Repository, retry_lock: int | None = None) -> list[str]:
    return ["restic", *global_args(repo), *_retry(retry_lock), "prune"]


def locks_report(repo: Repository) -> list[str]:
    """Every lock in the repository: a line `lock <id>` followed by the lock's JSON."""
    script = 'for id in $("$@" --no-lock list locks); do echo "lock $id"; "$@" --no-lock cat lock "$id"; done'
    return ["sh", "-c", script, "locks", "restic", *global_args(repo)]


def unlock(repo: Repository) -> list[str]:
    """Remove the locks restic itself considers stale (never --remove-all)."""
    return ["restic", *global_args(repo), "unlock"]


def _retry(seconds: int | None) -> list[str]:
    return ["--retry-lock", f"{seconds}s"] if seconds else []


def cat_config(repo: Repository) -> list[str]:
    """Cheapest command that proves the repository exists and the password opens it."""
    return ["restic", *global_args(repo), "cat", "config"]


@dataclass
class Output:
    """What restic said on stdout in --json mode."""

    summary: dict[str, Any] | None = None
    errors: list[str] = field(default_factory=list)  # per-item errors ("error" messages)
    exit_error: str | None = None  # the fatal message restic ended with
    documents: list[Any] = field(default_factory=list)  # other JSON values (snapshots lists...)
    text: list[str] = field(default_factory=list)  # lines that were not JSON


def parse_output(lines: Iterable[str]) -> Output:
    output = Output()
    for line in lines:
        stripped = line.strip()
        if not stripped:
            continue
        try:
            value = json.loads(stripped)
        except json.JSONDecodeError:
            output.text.append(stripped)
            continue
        kind = value.get("message_type") if isinstance(value, dict) else None
        if kind == "summary":
            output.summary = value
        elif kind == "exit_error":
            output.exit_error = value.get("message", "")
        elif kind == "error":
            error = value.get("error")
            message = error.get("message") if isinstance(error, dict) else str(error)
            item = value.get("item")
            output.errors.append(f"{item}: {message}" if item else str(message))
        elif kind in ("status", "verbose_status"):
            continue
        else:
            output.documents.append(value)
    return output
