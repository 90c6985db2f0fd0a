"""The daily upload ledger: bytes each destination received per UTC day, kept across restarts.

Fed from restic's backup summary (bytes added after compression). Before a backup, today's
total plus the expected upload (the largest this source has sent there recently) is compared
with the destination's daily quota.
"""

from __future__ import annotations

import fcntl
import json
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from loguru import logger

from runner.results import RunResult, Status
from runner.units import size_text
from runner.workspace import write_atomically

if TYPE_CHECKING:
    from runner.destinations import Destination

KEEP_DAYS = 35


def today() -> str:
    return datetime.now(UTC).date().isoformat()


@dataclass(frozen=True)
class QuotaCheck:
    uploaded_today: int
    expected: int
    quota: int

    @property
    def exceeded(self) -> bool:
        return bool(self.quota) and self.uploaded_today + self.expected > self.quota


class LedgerError(ValueError):
    """The ledger file cannot be read as a ledger: today's uploads are unknown."""


class UploadLedger:
    def __init__(self, path: Path):
        self.path = path

    @contextmanager
    def _locked(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _entries(self) -> list[dict]:
        try:
            entries = json.loads(self.path.read_text())["uploads"]
        except FileNotFoundError:
            return []
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as error:
            raise LedgerError(f"the upload ledger {self.path} is unreadable ({type(error).__name__}: {error}); "
                              "move it aside to start counting again") from None
        if not isinstance(entries, list) or not all(isinstance(e, dict) and {"day", "destination", "source", "bytes"}
                                                    <= e.keys() for e in entries):
            raise LedgerError(f"the upload ledger {self.path} does not hold a list of uploads; "
                              "move it aside to start counting again")
        return entries

    def uploaded_today(self, destination: str) -> int:
        day = today()
        return sum(e["bytes"] for e in self._entries() if e["destination"] == destination and e["day"] == day)

    def expected(self, destination: str, source: str) -> int:
        return max((e["bytes"] for e in self._entries() if e["destination"] == destination and e["source"] == source),
                   default=0)

    def check(self, destination: str, source: str, quota: int) -> QuotaCheck:
        return QuotaCheck(self.uploaded_today(destination), self.expected(destination, source), quota)

    def record(self, destination: str, source: str, nbytes: int) -> None:
        with self._locked():
            oldest = (datetime.now(UTC) - timedelta(days=KEEP_DAYS)).date().isoformat()
            entries = [e for e in self._entries() if e["day"] >= oldest]
            entries.append({"day": today(), "destination": destination, "source": source, "bytes": int(nbytes),
                            "at": datetime.now(UTC).isoformat(timespec="seconds")})
            write_atomically(self.path, json.dumps({"version": 1, "uploads": entries}, indent=1), mode=0o600)


def ledger(state_dir: Path) -> UploadLedger:
    return UploadLedger(state_dir / "upload-ledger.json")


def quota_deferral(state_dir: Path, destination: Destination, source: str, refused: str) -> RunResult | None:
    """The result of an upload to `destination` that must wait for tomorrow's quota, or that cannot be
    allowed because today's uploads are unknown (`refused`: 'not backed up'...); None when it may go."""
    if not destination.quota:
        return None
    try:
        check = ledger(state_dir).check(destination.name, source, destination.quota)
    except LedgerError as error:
        logger.error("{} -> {}: {}", source, destination.name, error)
        return RunResult(source, destination.name, Status.FAILED, f"{refused}: today's uploads are unknown: {error}")
    if not check.exceeded:
        return None
    message = (f"deferred: {size_text(check.uploaded_today)} uploaded today plus about {size_text(check.expected)} "
               f"expected would pass the daily quota of {size_text(check.quota)}; it runs again tomorrow")
    logger.warning("{} -> {}: {}", source, destination.name, message)
    return RunResult(source, destination.name, Status.DEFERRED, message)
