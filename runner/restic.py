"""restic as data: pure functions that build argv, parse `--json` output and explain exit codes.

Secrets never enter argv: the repository password is always a file (`--password-file`).
Nothing here runs restic: the repository handle (runner/repository.py) runs the argv in a job
container and hands the output to the parsers below. A parser that does not find what restic
documents raises OutputError; it never answers with an empty list.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from runner.units import duration_text, size_text

WITH_SIDECAR = "backup-with-sidecar"  # in the tools image


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


def with_sidecar(backup_argv: Sequence[str], sidecar_argv: Sequence[str] = (), stats_argv: Sequence[str] = ()) \
        -> list[str]:
    """One job running a backup and the restic commands that would otherwise follow it in jobs of their own (the
    tools image's backup-with-sidecar): `sidecar_argv`, started alongside the backup, stores a file once the
    backup succeeded; `stats_argv` measures the repository after both."""
    spec: dict[str, list[str]] = {"backup": list(backup_argv)}
    if sidecar_argv:
        spec["sidecar"] = list(sidecar_argv)
    if stats_argv:
        spec["stats"] = list(stats_argv)
    return [WITH_SIDECAR, json.dumps(spec)]


def release_sidecar(path: str) -> list[str]:
    """The sidecar's --stdin-from-command: `path`'s content once the backup beside it succeeded."""
    return [WITH_SIDECAR, "--release", path]


def snapshots(repo: Repository, *, host: str | None = None, tags: Iterable[str] = (),
              latest: int | None = None) -> list[str]:
    args = ["restic", *global_args(repo), "snapshots", *_tags(tags)]
    if host:
        args += ["--host", host]
    if latest:
        args += ["--latest", str(latest)]
    return args


def restore(repo: Repository, snapshot: str, target: str, *, includes: Iterable[str] = (),
            verify: bool = False) -> list[str]:
    """Restore a snapshot; with `verify`, restic reads the restored files back and checks their content."""
    include_args = [arg for pattern in includes for arg in ("--include", pattern)]
    return ["restic", *global_args(repo), "restore", snapshot, "--target", target, *include_args,
            *(["--verify"] if verify else [])]


def ls(repo: Repository, snapshot: str) -> list[str]:
    """Every node of a snapshot, one JSON object per line after the snapshot's own."""
    return ["restic", *global_args(repo), "--no-lock", "ls", snapshot]


def dump(repo: Repository, snapshot: str, path: str) -> list[str]:
    """One file of a snapshot (its path inside the snapshot), written as it is to stdout."""
    return ["restic", *global_args(repo), "--no-lock", "dump", snapshot, path]


def copy(repo: Repository, origin: str, origin_password_file: str, retry_lock: int | None = None) -> list[str]:
    """Copy into `repo` every snapshot of the repository at `origin` that `repo` does not hold yet (restic
    compares their contents, not their ids). Extended options and bandwidth limits apply to both repositories."""
    return ["restic", *global_args(repo), *_retry(retry_lock), "copy", "--from-repo", origin,
            "--from-password-file", origin_password_file]


def include_pattern(path: str, prefix: bool = False) -> str:
    """A `restore --include` pattern for exactly this path inside a snapshot (a directory with everything
    under it); with `prefix`, for every path that starts with it. Pattern characters in names are escaped."""
    escaped = re.sub(r"([\\*?\[])", r"\\\1", path)
    return escaped + "*" if prefix else escaped


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


def forget(repo: Repository, *, daily: int, monthly: int, yearly: int, last: int = 0, tags: Iterable[str] = (),
           retry_lock: int | None = None, dry_run: bool = False) -> list[str]:
    """Apply the retention policy to the snapshots with these tags (no prune: that is separate);
    `last`: the most recent snapshots kept whatever their dates. `dry_run`: only report what would be
    forgotten, taking no lock and changing nothing."""
    tag_filter = ["--tag", ",".join(tags)] if tags else []
    keep_last = ["--keep-last", str(last)] if last else []
    preview = ["--no-lock"] if dry_run else [*_retry(retry_lock)]
    return ["restic", *global_args(repo), *preview, "forget", *(["--dry-run"] if dry_run else []), *tag_filter,
            *keep_last, "--keep-daily", str(daily), "--keep-monthly", str(monthly), "--keep-yearly", str(yearly)]


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


def key_list(repo: Repository) -> list[str]:
    """The repository's keys as JSON; the one the password opened is marked current."""
    return ["restic", *global_args(repo), "key", "list"]


def key_add(repo: Repository, new_password_file: str) -> list[str]:
    """Add a key for the password in `new_password_file` (a path in the container: never the password)."""
    return ["restic", *global_args(repo), "key", "add", "--new-password-file", new_password_file]


def key_remove(repo: Repository, key_id: str) -> list[str]:
    """Remove another key than the one the password opens (restic refuses to remove that one)."""
    return ["restic", *global_args(repo), "key", "remove", key_id]


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


# Typed results --------------------------------------------------------------------------------


class OutputError(ValueError):
    """restic's output is not what restic documents for the command (so nothing can be concluded)."""


@dataclass(frozen=True)
class Snapshot:
    id: str
    time: str  # as restic writes it: RFC 3339 with nanoseconds
    tags: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    hostname: str = ""
    size: int | None = None  # bytes the backup read (restic >= 0.17 records it in the snapshot's summary)
    original: str | None = None  # a copy's (restic copy): the id of the snapshot the backup made

    @property
    def short_id(self) -> str:
        return self.id[:8]

    @property
    def backup_id(self) -> str:
        """The id the backup gave this snapshot. `restic copy` gives a copy an id of its own and records the
        first one as `original`."""
        return self.original or self.id

    @property
    def manifest_key(self) -> str:
        """What this snapshot's manifest (its sidecar snapshot) names in its for:<key> tag, in every repository:
        the run:<key> tag the backup gave both snapshots, or, for a backup made before those, its backup id."""
        return self.tag_value("run:") or self.backup_id

    def tag_value(self, prefix: str) -> str | None:
        """The rest of the first tag starting with `prefix` ('for:' -> the id a manifest belongs to)."""
        return next((tag.removeprefix(prefix) for tag in self.tags if tag.startswith(prefix)), None)


@dataclass(frozen=True)
class BackupSummary:
    snapshot_id: str
    files_processed: int
    bytes_processed: int
    bytes_added: int  # after compression, as stored
    raw: dict[str, Any]  # restic's whole summary, kept as the run's figures


@dataclass(frozen=True)
class Stats:
    total_size: int  # raw-data: bytes stored; restore-size: bytes a restore of every snapshot writes
    snapshots: int
    uncompressed_size: int | None = None
    compression_ratio: float | None = None
    compression_space_saving: float | None = None


@dataclass(frozen=True)
class ForgetGroup:
    keep: tuple[Snapshot, ...]
    remove: tuple[Snapshot, ...]


@dataclass(frozen=True)
class CheckReport:
    errors: int  # how many errors restic check counted
    broken_packs: tuple[str, ...]
    messages: tuple[str, ...]  # restic's error messages, first line each


@dataclass(frozen=True)
class Node:
    path: str
    type: str  # "file", "dir", "symlink", ...
    size: int | None = None
    mode: int | None = None  # permission bits as chmod takes them (0o4755), from restic's Go file mode
    uid: int | None = None
    gid: int | None = None
    mtime: str = ""
    ctime: str = ""  # changes with the content, the mode or the owner: what tells an unchanged original


@dataclass(frozen=True)
class Lock:
    id: str
    time: datetime
    hostname: str
    pid: int
    exclusive: bool

    def age(self) -> float:
        return (datetime.now(UTC) - self.time).total_seconds()


def _json_values(lines: Iterable[str]) -> list[Any]:
    """Every JSON value of the output except progress messages; a line that is not JSON is an error."""
    values = []
    for line in lines:
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            raise OutputError(f"not JSON: {line.strip()[:200]!r}") from None
        if isinstance(value, dict) and value.get("message_type") in ("status", "verbose_status"):
            continue
        values.append(value)
    return values


def _require(document: Any, keys: dict[str, type | tuple[type, ...]], what: str) -> dict[str, Any]:
    if not isinstance(document, dict):
        raise OutputError(f"{what}: expected a JSON object, got {type(document).__name__}")
    for key, kind in keys.items():
        if not isinstance(document.get(key), kind) or isinstance(document.get(key), bool):
            raise OutputError(f"{what}: {key!r} missing or not {getattr(kind, '__name__', kind)}")
    return document


def _snapshot(document: Any) -> Snapshot:
    data = _require(document, {"id": str, "time": str}, "snapshot")
    size = None
    if data.get("summary") is not None:  # absent in snapshots made by restic < 0.17
        size = _require(data["summary"], {"total_bytes_processed": int}, "snapshot summary")["total_bytes_processed"]
    original = data.get("original")
    if original is not None and not isinstance(original, str):
        raise OutputError("snapshot: 'original' is not an id")
    return Snapshot(data["id"], data["time"], tuple(data.get("tags") or ()), tuple(data.get("paths") or ()),
                    data.get("hostname", ""), size, original)


def parse_snapshots(lines: Iterable[str]) -> list[Snapshot]:
    """`restic snapshots --json`: exactly one JSON list (`[]` when there are none)."""
    values = _json_values(lines)
    if len(values) != 1 or not isinstance(values[0], list):
        raise OutputError(f"snapshots: expected one JSON list, got {len(values)} value(s)")
    return [_snapshot(item) for item in values[0]]


def parse_backup(lines: Iterable[str]) -> BackupSummary:
    """`restic backup --json`: the summary message, which names the new snapshot."""
    summaries = [v for v in _json_values(lines) if isinstance(v, dict) and v.get("message_type") == "summary"]
    if len(summaries) != 1:
        raise OutputError(f"backup: expected one summary, got {len(summaries)}")
    data = _require(summaries[0], {"snapshot_id": str, "total_files_processed": int, "total_bytes_processed": int,
                                   "data_added": int}, "backup summary")
    return BackupSummary(data["snapshot_id"], data["total_files_processed"], data["total_bytes_processed"],
                         data.get("data_added_packed", data["data_added"]), data)


def parse_sidecar(lines: Iterable[str]) -> BackupSummary:
    """backup-with-sidecar's output: the sidecar's backup summary, wrapped as {"message_type": "sidecar", ...}."""
    wrapped = [v for v in _json_values(lines) if isinstance(v, dict) and v.get("message_type") == "sidecar"]
    return parse_backup(json.dumps(v.get("message")) for v in wrapped)


def parse_stats(lines: Iterable[str]) -> Stats:
    """`restic stats --json`: one object (other messages, e.g. a backup summary before it, are passed over)."""
    found = [v for v in _json_values(lines) if isinstance(v, dict) and "total_size" in v and "message_type" not in v]
    if len(found) != 1:
        raise OutputError(f"stats: expected one statistics object, got {len(found)}")
    data = _require(found[0], {"total_size": int, "snapshots_count": int}, "stats")
    number = (int, float)
    optional = {key: data[key] for key in ("total_uncompressed_size", "compression_ratio", "compression_space_saving")
                if isinstance(data.get(key), number)}
    return Stats(data["total_size"], data["snapshots_count"], optional.get("total_uncompressed_size"),
                 optional.get("compression_ratio"), optional.get("compression_space_saving"))


def parse_forget(lines: Iterable[str]) -> list[ForgetGroup]:
    """`restic forget --json`: one list of groups, each with the snapshots kept and removed."""
    values = _json_values(lines)
    if len(values) != 1 or not isinstance(values[0], list):
        raise OutputError(f"forget: expected one JSON list, got {len(values)} value(s)")
    groups = []
    for group in values[0]:
        if not isinstance(group, dict) or not isinstance(group.get("keep") or [], list) \
                or not isinstance(group.get("remove") or [], list):
            raise OutputError("forget: a group without keep/remove lists")
        groups.append(ForgetGroup(tuple(map(_snapshot, group.get("keep") or [])),
                                  tuple(map(_snapshot, group.get("remove") or []))))
    return groups


def parse_check(lines: Iterable[str]) -> CheckReport:
    """`restic check --json`: error messages, then a summary counting the errors."""
    values = [v for v in _json_values(lines) if isinstance(v, dict)]
    summaries = [v for v in values if v.get("message_type") == "summary"]
    if len(summaries) != 1:
        raise OutputError(f"check: expected one summary, got {len(summaries)}")
    summary = _require(summaries[0], {"num_errors": int}, "check summary")
    messages = tuple(str(v.get("message", "")).strip().splitlines()[0] for v in values
                     if v.get("message_type") == "error" and str(v.get("message", "")).strip())
    return CheckReport(summary["num_errors"], tuple(summary.get("broken_packs") or ()), messages)


def parse_ls(lines: Iterable[str]) -> list[Node]:
    """`restic ls --json`: the snapshot's own line, then one line per node."""
    values = _json_values(lines)
    if not values or not isinstance(values[0], dict) or "tree" not in values[0]:
        raise OutputError("ls: the listing does not start with its snapshot")
    nodes = []
    for value in values[1:]:
        data = _require(value, {"path": str, "type": str}, "ls node")
        for key in ("mode", "uid", "gid"):
            if key in data and not isinstance(data[key], int):
                raise OutputError(f"ls node {data['path']}: {key} is not a number")
        mode = _chmod_bits(data["mode"]) if "mode" in data else None
        nodes.append(Node(data["path"], data["type"], data.get("size"), mode, data.get("uid"), data.get("gid"),
                          str(data.get("mtime", "")), str(data.get("ctime", ""))))
    return nodes


# Go's os.FileMode keeps the setuid, setgid and sticky bits apart from the permission bits.
_GO_SPECIAL_BITS = {1 << 23: 0o4000, 1 << 22: 0o2000, 1 << 20: 0o1000}


def _chmod_bits(go_mode: int) -> int:
    return (go_mode & 0o777) | sum(bits for go_bit, bits in _GO_SPECIAL_BITS.items() if go_mode & go_bit)


def parse_locks(lines: Iterable[str]) -> list[Lock]:
    """The output of locks_report(): `lock <id>` lines, each followed by that lock's JSON."""
    locks: list[Lock] = []
    current: str | None = None
    body: list[str] = []
    for line in [*lines, "lock -"]:
        if line.startswith("lock "):
            if current and body:
                try:
                    data = _require(json.loads("\n".join(body)), {"time": str}, f"lock {current}")
                    locks.append(Lock(current, _parse_time(data["time"]), data.get("hostname", ""),
                                      int(data.get("pid", 0)), bool(data.get("exclusive"))))
                except (json.JSONDecodeError, ValueError) as error:
                    raise OutputError(f"lock {current}: {error}") from None
            current, body = line.split(None, 1)[1].strip(), []
        elif line.strip():
            if current is None:
                raise OutputError(f"locks: unexpected line {line.strip()[:200]!r}")
            body.append(line)
    return locks


@dataclass(frozen=True)
class Key:
    id: str
    current: bool
    user: str
    host: str
    created: str


def parse_keys(lines: Iterable[str]) -> list[Key]:
    """`key list --json`: one array of keys, exactly one of them current."""
    documents = _json_values(lines)
    if len(documents) != 1 or not isinstance(documents[0], list):
        raise OutputError("key list: expected one JSON array")
    keys = []
    for document in documents[0]:
        data = _require(document, {"id": str}, "key")
        if not isinstance(data.get("current"), bool):
            raise OutputError(f"key {data['id'][:8]}: 'current' missing or not a boolean")
        keys.append(Key(data["id"], data["current"], str(data.get("userName", "")), str(data.get("hostName", "")),
                        str(data.get("created", ""))))
    if sum(key.current for key in keys) != 1:
        raise OutputError(f"key list: {sum(key.current for key in keys)} keys marked current, expected one")
    return keys


def _parse_time(value: str) -> datetime:
    # restic writes nanoseconds; Python takes microseconds
    return datetime.fromisoformat(re.sub(r"(\.\d{6})\d+", r"\1", value).replace("Z", "+00:00"))


class Progress(str):
    """A progress parser's message: the text for the log, with what a progress bar needs (the fraction
    done, when restic knows the total) and whether it is the job's summary rather than progress (said
    once, in the line that ends the job)."""

    fraction: float | None
    final: bool

    def __new__(cls, text: str, fraction: float | None = None, final: bool = False) -> Progress:
        made = super().__new__(cls, text)
        made.fraction, made.final = fraction, final
        return made


def _message(line: str) -> dict[str, Any] | None:
    if '"message_type":"status"' not in line and '"message_type":"summary"' not in line:
        return None
    value = json.loads(line)
    return value if isinstance(value, dict) else None


def _done(message: dict[str, Any], done: int, what: str) -> Progress:
    """'43%: 950.0 MiB of 2.2 GiB read, about 1 min 20 s left', or '950.0 MiB read' while the total is unknown."""
    total, fraction = message.get("total_bytes") or 0, message.get("percent_done")
    if not total or not isinstance(fraction, int | float):
        return Progress(f"{size_text(done)} {what}")
    left = message.get("seconds_remaining")
    eta = f", about {duration_text(left)} left" if left else ""
    return Progress(f"{fraction:.0%}: {size_text(done)} of {size_text(total)} {what}{eta}", min(fraction, 1.0))


def backup_progress(line: str) -> Progress | None:
    """A backup's JSON status line as a progress message; its summary as what it read and added."""
    message = _message(line)
    if message is None:
        return None
    if message.get("message_type") == "summary":
        read, added = message.get("total_bytes_processed"), message.get("data_added_packed", message.get("data_added"))
        if not isinstance(read, int) or not isinstance(added, int):
            return None
        return Progress(f"{size_text(read)} read, {size_text(added)} added", 1.0, final=True)
    return _done(message, message.get("bytes_done") or 0, "read")


def restore_progress(line: str) -> Progress | None:
    """A restore's JSON status line as a progress message; its summary as what it restored."""
    message = _message(line)
    if message is None:
        return None
    restored = message.get("bytes_restored")
    if message.get("message_type") == "summary":
        return Progress(f"{size_text(restored)} restored", 1.0, final=True) if isinstance(restored, int) else None
    return _done(message, restored or 0, "restored")
