"""Compression and deduplication on two kinds of data, with restic.compression `auto` against `max`.

Two workloads: the generated rows the other benchmarks use (two MD5 hex strings a row, which no real
database resembles), and realistic.py's home server (sensor history, application logs, a wide table of
orders, documents, users). Each is loaded into PostgreSQL and backed up by the runner once a simulated
day for --days days, about 1 % of it changing each day, into two repositories: one with
`restic.compression = "auto"`, one with `"max"` (the two backups of a day run in alternating order).
Reported per workload and compression: the dump's size, what the repository stores after the last
day, deduplication (logical size of all snapshots over stored size), compression (restic's
uncompressed over compressed size) and the median backup time. Targets (specification): compression
above 70 % saved, deduplication above 10:1.

    python bench/storage.py [--days 30] [--rows 2200000] [--workloads generated,realistic]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from runner.backup import back_up
from runner.destinations import configured
from runner.inventory import init
from runner.sources import get as source_named
from runner.workspace import job_dir

from common import median, postgres, postgres_repositories, record, say, stats, workspace


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--rows", type=int, default=2_200_000, help="about 100 bytes of dump each")
    parser.add_argument("--workloads", default="generated,realistic")
    args = parser.parse_args()

    space = workspace("storage-" + args.workloads.replace(",", "-"))
    lines = ["| data | compression | dump (day 1 / last) | stored after the last day | deduplication | compression "
             "(saved) | median backup |", "|---|---|---|---|---|---|---|"]
    for workload in args.workloads.split(","):
        lines += measure(space, workload, args.rows, args.days)
    text = "\n".join(lines) + (
        f"\n\n{args.days} simulated days (--rows {args.rows}), about 1 % new or "
        "changed each day. Deduplication: the logical size of every snapshot over what the repository stores; "
        "compression: restic's own figure (uncompressed over compressed size of the stored data) and the share "
        "of space it saves. Targets: compression above 70 % saved, deduplication above 10:1.")
    say(text)
    record("Compression and deduplication by kind of data (bench/storage.py)", text)


def measure(space, workload: str, rows: int, days: int) -> list[str]:
    name = f"offsite-bench-{workload}"
    repos = {level: space.root / f"{workload}-{level}" for level in ("auto", "max")}
    with postgres(rows, name, workload) as container:
        settings, destinations = postgres_repositories(space, container, repos["auto"],
                                                       space.root / f"unused-{workload}")
        ways = {"auto": (settings, destinations), "max": with_compression(space, settings, repos["max"], "max")}
        sizes: list[int] = []
        times: dict[str, list[float]] = {"auto": [], "max": []}
        for day in range(1, days + 1):
            if day > 1:
                mutate(container, workload, rows, day)
            for level in ("auto", "max") if day % 2 else ("max", "auto"):
                level_settings, level_destinations = ways[level]
                started = time.monotonic()
                [result] = back_up(level_settings, space.engine, source_named("postgres"), level_destinations)
                times[level].append(time.monotonic() - started)
                if result.status.value != "ok":
                    raise RuntimeError(result.message)
            sizes.append(result.figures["total_bytes_processed"])
            say(f"{workload} day {day}: dump {sizes[-1] / 1e6:.0f} MB, auto {times['auto'][-1]:.1f} s, "
                f"max {times['max'][-1]:.1f} s")
    rows_out = []
    for level, repo in repos.items():
        figures = stats(space, repo)
        raw, logical = figures["raw-data"], figures["restore-size"]
        stored = raw["total_size"]
        compression = raw.get("compression_ratio", 1)
        rows_out.append(f"| {workload} | `{level}` | {sizes[0] / 1e6:.0f} / {sizes[-1] / 1e6:.0f} MB "
                        f"| {stored / 1e6:.1f} MB | {logical['total_size'] / stored:.1f}:1 "
                        f"| {compression:.2f}:1 ({1 - 1 / compression:.0%}) | {median(times[level]):.1f} s |")
    return rows_out


def with_compression(space, settings, repository: Path, level: str):
    """The same settings backing up into `repository` with restic.compression = `level`; initialized."""
    job_dir(repository, settings)
    changed = settings.model_copy(update={
        "restic": settings.restic.model_copy(update={"compression": level}),
        "destinations": {"local": settings.destinations["local"].model_copy(update={"path": str(repository)})}})
    destinations = configured(changed)
    init(space.engine, destinations, ["postgres"])
    return changed, destinations


def mutate(container: str, workload: str, rows: int, day: int) -> None:
    if workload == "realistic":
        from realistic import mutate as realistic_day
        realistic_day(container, rows, day)
    else:
        from dedup import mutate as generated_day
        generated_day(container, rows, day, 0.1)


if __name__ == "__main__":
    main()
