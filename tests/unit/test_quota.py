import json

from runner.quota import QuotaCheck, UploadLedger, today
from runner.results import (
    EXIT_DEFERRED,
    EXIT_FAILED,
    EXIT_OK,
    RunResult,
    Status,
    exit_code,
)
from runner.settings import Settings


def test_ledger_counts_today_per_destination_and_survives_reopening(tmp_path):
    path = tmp_path / "ledger.json"
    UploadLedger(path).record("gdrive", "vault", 100)
    UploadLedger(path).record("gdrive", "postgres", 50)
    UploadLedger(path).record("nas", "vault", 7)
    reopened = UploadLedger(path)
    assert reopened.uploaded_today("gdrive") == 150
    assert reopened.uploaded_today("nas") == 7
    assert reopened.expected("gdrive", "vault") == 100


def test_yesterdays_uploads_do_not_count_today_but_inform_the_estimate(tmp_path):
    path = tmp_path / "ledger.json"
    path.write_text(json.dumps({"version": 1, "uploads": [
        {"day": "2000-01-01", "destination": "gdrive", "source": "minio", "bytes": 10**9, "at": "x"}]}))
    ledger = UploadLedger(path)
    assert ledger.uploaded_today("gdrive") == 0
    ledger.record("gdrive", "minio", 5)
    entries = json.loads(path.read_text())["uploads"]
    assert [e["day"] for e in entries] == [today()]  # entries older than the window are dropped


def test_quota_check():
    assert not QuotaCheck(uploaded_today=100, expected=50, quota=0).exceeded  # 0: no quota
    assert not QuotaCheck(uploaded_today=100, expected=50, quota=150).exceeded
    assert QuotaCheck(uploaded_today=100, expected=51, quota=150).exceeded


def test_exit_codes():
    ok = RunResult("vault", "nas", Status.OK)
    deferred = RunResult("vault", "gdrive", Status.DEFERRED)
    failed = RunResult("vault", "nas", Status.UNAVAILABLE)
    assert exit_code([ok]) == EXIT_OK
    assert exit_code([ok, deferred]) == EXIT_DEFERRED
    assert exit_code([failed, deferred]) == EXIT_FAILED


def test_sizes():
    decimal = Settings(destinations={"a": {"kind": "local", "bandwidth_limit": "10MB"}}).destinations["a"]
    assert decimal.bandwidth_limit == 10_000_000
    binary = Settings(destinations={"a": {"kind": "local", "bandwidth_limit": "10MiB"}}).destinations["a"]
    assert binary.bandwidth_limit == 10 * 1024**2
    quota = Settings(destinations={"a": {"kind": "local", "daily_upload_quota": "750GB"}}).destinations["a"]
    assert quota.daily_upload_quota == 750 * 10**9
