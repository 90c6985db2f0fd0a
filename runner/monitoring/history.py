"""The run history: every run of every job kind, in SQLite in the state directory.

Schema changes are numbered migrations applied in order, each in its own transaction; the
database records which have run (PRAGMA user_version), so an older history is upgraded in place.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from runner.logs import mask
from runner.results import RunResult

MIGRATIONS = [
    """
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,                -- backup, check, prune, restore-test
        source TEXT NOT NULL,
        destination TEXT NOT NULL,
        started_at TEXT NOT NULL,          -- ISO 8601, UTC
        ended_at TEXT NOT NULL,
        duration REAL NOT NULL,            -- seconds
        status TEXT NOT NULL,              -- a runner.results.Status value
        message TEXT NOT NULL,
        snapshot_id TEXT,
        bytes_processed INTEGER,
        bytes_added INTEGER,
        figures TEXT NOT NULL DEFAULT '{}' -- JSON: what the job measured
    );
    CREATE INDEX runs_by_repository ON runs (source, destination, kind, started_at);
    CREATE TABLE removed_snapshots (
        run_id INTEGER NOT NULL REFERENCES runs (id),
        snapshot_id TEXT NOT NULL,
        snapshot_time TEXT NOT NULL,
        source TEXT NOT NULL,
        destination TEXT NOT NULL
    );
    """,
    """
    ALTER TABLE runs ADD COLUMN stored_bytes INTEGER;  -- the repository's size after the run, when known
    CREATE TABLE open_alerts (
        key TEXT PRIMARY KEY,              -- what is wrong where, e.g. backup:vault:nas
        kind TEXT NOT NULL,
        source TEXT NOT NULL,
        destination TEXT NOT NULL,
        opened_at TEXT NOT NULL,
        message TEXT NOT NULL
    );
    CREATE TABLE alert_log (
        id INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        key TEXT NOT NULL,
        kind TEXT NOT NULL,
        event TEXT NOT NULL,               -- opened, resolved, notice
        source TEXT NOT NULL,
        destination TEXT NOT NULL,
        message TEXT NOT NULL
    );
    """,
    """
    CREATE TABLE invocations (
        id INTEGER PRIMARY KEY,
        unit TEXT NOT NULL,                -- the systemd unit that started the runner; '' by hand
        command TEXT NOT NULL,
        started_at TEXT NOT NULL,
        ended_at TEXT,                     -- set once the runner has reported its runs
        exit_code INTEGER
    );
    CREATE INDEX invocations_by_unit ON invocations (unit, started_at);
    -- an open alert whose mail could not be sent is sent again with the next report
    ALTER TABLE open_alerts ADD COLUMN mailed INTEGER NOT NULL DEFAULT 1;
    """,
    """
    -- the channels (mail, apprise-<line>) an unmailed alert already went out on: only the others retry it;
    -- mailed is set once every channel has it
    ALTER TABLE open_alerts ADD COLUMN delivered TEXT NOT NULL DEFAULT '';
    """,
]


def now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Run:
    id: int
    kind: str
    source: str
    destination: str
    started_at: datetime
    ended_at: datetime
    duration: float
    status: str
    message: str
    snapshot_id: str | None
    bytes_processed: int | None
    bytes_added: int | None
    stored_bytes: int | None
    figures: dict[str, Any]


class History:
    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as connection:
            migrate(connection)

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, timeout=30)
        connection.execute("PRAGMA foreign_keys = ON")
        return connection

    def record(self, kind: str, result: RunResult, started_at: datetime | None = None,
               ended_at: datetime | None = None) -> int:
        ended_at = ended_at or now()
        started_at = started_at or ended_at - timedelta(seconds=result.duration)
        figures = result.figures or {}
        with closing(self._connect()) as connection, connection:
            cursor = connection.execute(
                "INSERT INTO runs (kind, source, destination, started_at, ended_at, duration, status, message,"
                " snapshot_id, bytes_processed, bytes_added, stored_bytes, figures)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (kind, result.source, result.destination, started_at.isoformat(), ended_at.isoformat(),
                 result.duration or (ended_at - started_at).total_seconds(), result.status.value, mask(result.message),
                 result.snapshot_id, figures.get("total_bytes_processed"),
                 figures.get("data_added_packed", figures.get("data_added")), figures.get("repository_bytes"),
                 mask(json.dumps(figures, default=str))),
            )
            for snapshot in result.removed:
                connection.execute(
                    "INSERT INTO removed_snapshots VALUES (?, ?, ?, ?, ?)",
                    (cursor.lastrowid, snapshot["id"], snapshot["time"], result.source, result.destination))
            assert cursor.lastrowid is not None  # an INSERT sets it
            return cursor.lastrowid

    def runs(self, kind: str | None = None, source: str | None = None, destination: str | None = None,
             limit: int | None = None) -> list[Run]:
        """Runs, newest first."""
        clauses, values = [], []
        for column, value in (("kind", kind), ("source", source), ("destination", destination)):
            if value is not None:
                clauses.append(f"{column} = ?")
                values.append(value)
        sql = "SELECT * FROM runs" + (" WHERE " + " AND ".join(clauses) if clauses else "")
        sql += " ORDER BY started_at DESC, id DESC" + (f" LIMIT {int(limit)}" if limit else "")
        with closing(self._connect()) as connection:
            connection.row_factory = sqlite3.Row
            return [_run(row) for row in connection.execute(sql, values)]

    def removed_snapshots(self, run_id: int) -> list[dict]:
        with closing(self._connect()) as connection:
            connection.row_factory = sqlite3.Row
            rows = connection.execute("SELECT * FROM removed_snapshots WHERE run_id = ? ORDER BY snapshot_time",
                                      (run_id,))
            return [dict(row) for row in rows]


    # Alerts: an open alert is a problem that has been announced; it is announced again only
    # once it has been resolved and comes back.
    def open_alerts(self) -> dict[str, dict]:
        with closing(self._connect()) as connection:
            connection.row_factory = sqlite3.Row
            return {row["key"]: dict(row) for row in connection.execute("SELECT * FROM open_alerts")}

    def open_alert(self, key: str, kind: str, source: str, destination: str, message: str) -> bool:
        """Mark a problem open, not yet mailed; False if it already was open."""
        at = now().isoformat()
        with closing(self._connect()) as connection, connection:
            inserted = connection.execute(
                "INSERT OR IGNORE INTO open_alerts (key, kind, source, destination, opened_at, message, mailed)"
                " VALUES (?, ?, ?, ?, ?, ?, 0)", (key, kind, source, destination, at, mask(message))).rowcount
            if inserted:
                self._log(connection, at, key, kind, "opened", source, destination, message)
            return bool(inserted)

    def unmailed_alerts(self) -> list[dict]:
        """Open problems whose mail has not gone out yet."""
        with closing(self._connect()) as connection:
            connection.row_factory = sqlite3.Row
            return [dict(row) for row in connection.execute("SELECT * FROM open_alerts WHERE mailed = 0")]

    def mark_mailed(self, keys: list[str]) -> None:
        with closing(self._connect()) as connection, connection:
            connection.executemany("UPDATE open_alerts SET mailed = 1 WHERE key = ?", [(key,) for key in keys])

    def delivered_on(self, keys: list[str]) -> dict[str, set[str]]:
        """The channels each of these open problems already went out on."""
        with closing(self._connect()) as connection:
            marks = ",".join("?" * len(keys))
            rows = connection.execute(f"SELECT key, delivered FROM open_alerts WHERE key IN ({marks})", keys).fetchall()
        return {key: set(delivered.split()) for key, delivered in rows}

    def mark_delivered(self, keys: list[str], channel: str) -> None:
        """Note that these open problems went out on this channel."""
        delivered = self.delivered_on(keys)
        with closing(self._connect()) as connection, connection:
            connection.executemany("UPDATE open_alerts SET delivered = ? WHERE key = ?",
                                   [(" ".join(sorted(seen | {channel})), key) for key, seen in delivered.items()])

    # Invocations: which systemd unit started the runner, and whether the runner got to report.
    def start_invocation(self, unit: str, command: str) -> int:
        with closing(self._connect()) as connection, connection:
            cursor = connection.execute("INSERT INTO invocations (unit, command, started_at) VALUES (?, ?, ?)",
                                        (unit, command, now().isoformat()))
            assert cursor.lastrowid is not None
            return cursor.lastrowid

    def end_invocation(self, invocation: int, exit_code: int) -> None:
        with closing(self._connect()) as connection, connection:
            connection.execute("UPDATE invocations SET ended_at = ?, exit_code = ? WHERE id = ?",
                               (now().isoformat(), exit_code, invocation))

    def last_invocation(self, unit: str) -> dict | None:
        with closing(self._connect()) as connection:
            connection.row_factory = sqlite3.Row
            row = connection.execute("SELECT * FROM invocations WHERE unit = ? ORDER BY started_at DESC, id DESC "
                                     "LIMIT 1", (unit,)).fetchone()
            return dict(row) if row else None

    def resolve_alert(self, key: str, message: str) -> dict | None:
        """Close an open problem; returns it, or None if it was not open."""
        alert = self.open_alerts().get(key)
        if alert is None:
            return None
        with closing(self._connect()) as connection, connection:
            connection.execute("DELETE FROM open_alerts WHERE key = ?", (key,))
            self._log(connection, now().isoformat(), key, alert["kind"], "resolved", alert["source"],
                      alert["destination"], message)
        return alert

    def notice(self, key: str, kind: str, source: str, destination: str, message: str) -> None:
        """A one-off alert (a size anomaly): logged, never open."""
        with closing(self._connect()) as connection, connection:
            self._log(connection, now().isoformat(), key, kind, "notice", source, destination, message)

    @staticmethod
    def _log(connection, at, key, kind, event, source, destination, message) -> None:
        connection.execute("INSERT INTO alert_log (at, key, kind, event, source, destination, message)"
                           " VALUES (?, ?, ?, ?, ?, ?, ?)", (at, key, kind, event, source, destination, mask(message)))

    def alert_log(self, limit: int = 50) -> list[dict]:
        with closing(self._connect()) as connection:
            connection.row_factory = sqlite3.Row
            return [dict(row) for row in connection.execute(
                "SELECT * FROM alert_log ORDER BY at DESC, id DESC LIMIT ?", (limit,))]


def _run(row: sqlite3.Row) -> Run:
    data = dict(row)
    data["started_at"] = datetime.fromisoformat(data["started_at"])
    data["ended_at"] = datetime.fromisoformat(data["ended_at"])
    data["figures"] = json.loads(data["figures"] or "{}")
    return Run(**data)


def migrate(connection: sqlite3.Connection) -> int:
    version = connection.execute("PRAGMA user_version").fetchone()[0]
    if version > len(MIGRATIONS):
        raise RuntimeError(f"the history is from a newer runner (schema {version}, this one knows {len(MIGRATIONS)})")
    for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
        with connection:
            connection.executescript(f"BEGIN; {script}; PRAGMA user_version = {number}; COMMIT;")
    return len(MIGRATIONS)


def open_history(state_dir: Path) -> History:
    return History(state_dir / "history.sqlite")
