"""What a person reads: the status table in an 80-column terminal, the results table, the log lines of a job."""

from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner

from runner.cli import cli
from runner.monitoring.history import History
from runner.results import RunResult, Status
from runner.settings import Settings
from tests.conftest import write_config

SOURCES = ("vault", "postgres", "minio", "files")
DESTINATIONS = ("local", "nas", "gdrive")
MiB = 1024 * 1024


def settings_for(tmp_path) -> Settings:
    """Every source on three destinations (all local directories: only their names show). The restore tests visit
    the three in turn: each is due every 3 x 10 days."""
    return Settings(paths={"state_dir": tmp_path / "state"},
                    destinations={name: {"kind": "local", "path": str(tmp_path / name)} for name in DESTINATIONS},
                    sources={"files": {"paths": [str(tmp_path)]}}, monitoring={"restore_test_every": 10 * 86400})


def nights(history: History, source: str, destination: str, statuses: list[Status], size: int,
           last: timedelta = timedelta(hours=5)) -> None:
    """One backup a night, the last one `last` ago."""
    now = datetime.now(UTC)
    for night, status in enumerate(statuses):
        ended = now - last - timedelta(days=len(statuses) - 1 - night)
        figures = {"total_bytes_processed": size - (len(statuses) - 1 - night) * 1000} if status is Status.OK else {}
        history.record("backup", RunResult(source, destination, status, "synthetic", duration=95, figures=figures),
                       ended_at=ended)


def realistic_history(settings: Settings) -> History:
    """Twelve repositories in every state a person should be able to read at a glance."""
    history = History(settings.paths.state_dir / "history.sqlite")
    ok = [Status.OK] * 40
    nights(history, "vault", "local", ok, int(1.2 * MiB))
    nights(history, "postgres", "local", ok, int(360.1 * MiB), last=timedelta(minutes=42))
    nights(history, "minio", "local", ok, 2 * 1024 * MiB)
    nights(history, "files", "local", ok, MiB - 100)  # '1023.9 KiB': the widest size there is
    now = datetime.now(UTC)
    for source in ("vault", "minio"):  # postgres never tested: overdue
        history.record("restore-test", RunResult(source, "local", Status.OK, "restored", duration=200),
                       ended_at=now - timedelta(days=3))
    history.record("restore-test", RunResult("files", "local", Status.RESTORE_MISMATCH, "differs", duration=20),
                   ended_at=now - timedelta(days=2))
    nights(history, "vault", "nas", [*ok[:-1], Status.UNAVAILABLE], int(1.2 * MiB), last=timedelta(hours=47))
    nights(history, "postgres", "nas", [*ok[:-3], Status.FAILED, Status.OK, Status.OK], int(360.1 * MiB))
    nights(history, "minio", "nas", [*ok[:-1], Status.PARTIAL], 2 * 1024 * MiB)
    nights(history, "files", "nas", [Status.REPOSITORY_MISSING] * 3, 0)
    nights(history, "vault", "gdrive", [*ok[:-1], Status.DEFERRED], int(1.2 * MiB))
    nights(history, "postgres", "gdrive", [*ok[:-1], Status.TIMED_OUT], int(360.1 * MiB), last=timedelta(days=3))
    nights(history, "minio", "gdrive", [*ok[:-1], Status.SKIPPED], 2 * 1024 * MiB)
    for source, destination, days in (("vault", "nas", 12), ("postgres", "nas", 12), ("minio", "nas", 12),
                                      ("vault", "gdrive", 25), ("minio", "gdrive", 25)):  # postgres: overdue there
        history.record("restore-test", RunResult(source, destination, Status.OK, "restored", duration=300),
                       ended_at=now - timedelta(days=days))
    return history


def invoke(settings, tmp_path, *args, columns=80):
    config = write_config(settings, tmp_path / "runner.toml")
    return CliRunner(env={"COLUMNS": str(columns)}).invoke(cli, ["--config", str(config), *args], prog_name="runner")


def rows(output: str) -> dict[tuple[str, str], str]:
    """Each repository's row, with the lines its wrapped cells continue on."""
    found: dict[tuple[str, str], str] = {}
    current = None
    for line in output.splitlines():
        words = line.split()
        if words[:1] and words[0] in SOURCES:
            current = (words[0], words[1])
            found[current] = line
        elif current and line.strip():
            found[current] += "\n" + line
    return found


def test_status_fits_80_columns_and_cuts_nothing(tmp_path):
    settings = settings_for(tmp_path)
    realistic_history(settings)
    shown = invoke(settings, tmp_path, "status")
    assert shown.exit_code == 1, shown.output  # some repositories need attention
    assert max(map(len, shown.stdout.splitlines())) <= 80, shown.stdout
    assert "…" not in shown.stdout
    found = rows(shown.stdout)
    assert set(found) == {(source, destination) for source in SOURCES for destination in DESTINATIONS}
    # a healthy repository is one line, with its age, size and success rate in human units
    assert found["vault", "local"].split() == ["vault", "local", "ok", "5", "h", "ago", "ok", "1.2", "MiB", "100%",
                                               "ok"]
    assert found["minio", "local"].split()[6:] == ["ok", "2.0", "GiB", "100%", "ok"]
    assert found["postgres", "local"].split()[2:] == ["attention", "42", "min", "ago", "ok", "360.1", "MiB", "100%",
                                                     "overdue"]
    assert "1023.9 KiB" in found["files", "local"] and "failed" in found["files", "local"]
    assert found["postgres", "nas"].split()[-1] == "ok" and found["postgres", "gdrive"].split()[-1] == "overdue"
    # one failure in 30 nights, rounded down
    assert "96.6%" in found["postgres", "nas"]
    assert "0%" in found["files", "nas"] and "never" in found["files", "nas"]
    # a long outcome wraps at its space, whole words on each line
    assert found["vault", "nas"].split()[6:8] == ["destination", "1.2"]
    assert "unavailable" in found["vault", "nas"].splitlines()[1]
    assert "repository" in found["files", "nas"] and "missing" in found["files", "nas"]


def test_status_wide_has_every_column_on_one_line_per_repository(tmp_path):
    settings = settings_for(tmp_path)
    realistic_history(settings)
    shown = invoke(settings, tmp_path, "status", "--wide")
    assert shown.exit_code == 1
    lines = shown.stdout.splitlines()
    assert lines[0].split() == ["source", "destination", "health", "last", "success", "RPO", "last", "outcome", "last",
                                "size", "change", "repository", "snapshots", "ok", "30", "d", "ok", "90", "d", "last",
                                "restore", "test"]
    assert len(lines) == 2 + len(SOURCES) * len(DESTINATIONS) and "…" not in shown.stdout
    found = rows(shown.stdout)
    assert "destination unavailable" in found["vault", "nas"] and "past" in found["vault", "nas"]
    assert "none yet, overdue" in found["postgres", "local"]
    assert "restore mismatch" in found["files", "local"] and "20 s, overdue" in found["files", "local"]
    assert found["postgres", "nas"].split()[-6:-4] == ["96.6%", "97.5%"]  # one failure in 30 and in 40 nights
    # each destination's own last restore test: the tests visit them in turn
    tested = (datetime.now(UTC) - timedelta(days=12)).date().isoformat()
    assert f"ok {tested}, 5 min" in found["vault", "nas"] and "none yet, overdue" in found["postgres", "gdrive"]


def test_status_json_keeps_its_fields_and_has_the_rates(tmp_path):
    import json

    settings = settings_for(tmp_path)
    realistic_history(settings)
    shown = invoke(settings, tmp_path, "status", "--json")
    states = {(s["source"], s["destination"]): s for s in json.loads(shown.stdout)}
    postgres = states["postgres", "nas"]
    assert postgres["last_size"] == int(360.1 * MiB) and postgres["success_rate_30d"] == 0.9667
    assert states["postgres", "local"]["restore_test_overdue"] is True
    assert {"age_hours", "within_rpo", "success_rate_90d", "below_success_floor", "healthy"} <= set(postgres)


def test_results_table_fits_80_columns_in_human_units(monkeypatch, capsys):
    from runner import logs
    from runner.cli.base import report

    logs.register_secret("hunter2-results-table")
    monkeypatch.setenv("COLUMNS", "80")
    results = [
        RunResult("postgres", "nas", Status.OK, "snapshot 1a2b3c4d: 360.1 MiB read, 12.3 MiB added", "1a2b3c4d" * 8,
                  duration=95.2, figures={"total_bytes_processed": 377_592_218}),
        RunResult("minio", "gdrive", Status.UNAVAILABLE, "rclone: login refused for hunter2-results-table [403]"),
        RunResult("vault", "local", Status.DEFERRED, "deferred by quota", duration=0),
    ]
    with pytest.raises(SystemExit) as stop:
        report(results, as_json=False)
    assert stop.value.code == 1
    shown = capsys.readouterr().out
    assert max(map(len, shown.splitlines())) <= 80 and "…" not in shown
    assert shown.splitlines()[0].split() == ["source", "destination", "result", "took", "details"]
    first = shown.splitlines()[2].split()
    assert first[:7] == ["postgres", "nas", "ok", "1", "min", "35", "s"]
    assert "360.1 MiB read, 12.3 MiB added" in " ".join(shown.split())
    assert "[403]" in shown  # a message is text, not markup
    assert "hunter2" not in shown and logs.MASK in shown
    # scripts get the raw figures
    with pytest.raises(SystemExit):
        report(results[:1], as_json=True)
    assert '"total_bytes_processed": 377592218' in capsys.readouterr().out


def test_quota_in_human_units(tmp_path):
    from runner.quota import ledger

    settings = Settings(paths={"state_dir": tmp_path / "state"}, destinations={
        "local": {"kind": "local", "path": str(tmp_path / "repo")},
        "gdrive": {"kind": "gdrive", "daily_upload_quota": 750_000_000_000}}, sources={"files": {"paths": [tmp_path]}})
    ledger(settings.paths.state_dir).record("gdrive", "postgres", 377_592_218)
    shown = invoke(settings, tmp_path, "quota")
    assert shown.exit_code == 0, shown.output
    rows = {line.split()[0]: line.split()[1:] for line in shown.stdout.splitlines()[2:]}
    assert rows["gdrive"] == ["698.5", "GiB", "360.1", "MiB", "698.1", "GiB"]
    assert rows["local"] == ["none", "0", "B", "-"]


def test_job_containers_are_listed_with_their_age():
    import time

    from runner.cli.configuration import created_text

    assert created_text(int(time.time()) - 300) == "5 min ago"
    assert created_text("2020-01-01T00:00:00Z").endswith(" d ago")
    assert created_text(None) == "?"
