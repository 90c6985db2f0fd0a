"""Deduplication over 30 days: the specification's way (`pg_dumpall | gzip -9` into restic) against the
runner's (the plain dump streamed into restic, which compresses it itself).

A PostgreSQL whose plain dump is about 200 MB changes by about 1 % of its rows each simulated day:
new rows appended (0.5 %), recent rows edited (0.4 %, among the newest tenth, or --hot), the oldest
rows deleted (0.1 %). How far apart the edits fall decides how much of the dump changes, and so the
deduplication: run it with two --hot values to see the range. Each day both ways back it up into
their own repository. Reported: each repository's size after 30 days, the deduplication ratio
(logical size of all snapshots over stored size) and the compression ratio. Targets: the runner's
way at least 20:1 and at least 5 times smaller.

    python bench/dedup.py [--days 30] [--rows 2200000] [--hot 0.1]
"""

from __future__ import annotations

import argparse
import time

from runner.backup import back_up
from runner.engine import Mount
from runner.sources import get as source_named

from common import (
    Workspace,
    address,
    by_hand,
    median,
    postgres,
    postgres_repositories,
    record,
    say,
    sql,
    stats,
    workspace,
)


def mutate(container: str, rows: int, day: int, hot: float) -> None:
    inserts, updates, deletes = rows // 200, rows // 250, rows // 1000
    sql(container, f"""
        SELECT setseed({day} / 1000.0);
        INSERT INTO events (at, kind, payload)
          SELECT now() + g * interval '1 second', 'order', md5(random()::text) || md5(random()::text)
          FROM generate_series(1, {inserts}) g;
        UPDATE events SET kind = 'edited', payload = md5(random()::text) || md5(random()::text)
          WHERE id IN (SELECT id FROM events WHERE id > (SELECT max(id) FROM events) - {int(rows * hot)}
                       ORDER BY random() LIMIT {updates});
        DELETE FROM events WHERE id IN (SELECT id FROM events ORDER BY id LIMIT {deletes});""")
    sql(container, "VACUUM events")  # frees the deleted rows' space for tomorrow's inserts, as autovacuum would


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--rows", type=int, default=2_200_000, help="about 100 bytes of dump each")
    parser.add_argument("--hot", type=float, default=0.1,
                        help="the day's edits fall among this fraction of the newest rows (0.1: the newest tenth)")
    args = parser.parse_args()

    space: Workspace = workspace("dedup")
    gzip_repo = space.root / "repo-gzip"
    runner_repo = space.root / "repo-runner"
    with postgres(args.rows) as container:
        settings, destinations = postgres_repositories(space, container, runner_repo, gzip_repo)
        host = address(container)
        dump_bytes, times = [], {"gzip": [], "runner": []}
        for day in range(1, args.days + 1):
            if day > 1:
                mutate(container, args.rows, day, args.hot)
            seconds = by_hand(space, gzip_repo, f"pg_dumpall -h {host} -U postgres | gzip -9 | "
                              "restic backup -q --host bench --stdin --stdin-filename all.sql.gz",
                              Mount(settings.paths.secrets_dir / "postgres.pgpass", "/pgpass"),
                              networks=("offsite-bench",))
            times["gzip"].append(seconds)
            started = time.monotonic()
            [result] = back_up(settings, space.engine, source_named("postgres"), destinations)
            times["runner"].append(time.monotonic() - started)
            if result.status.value != "ok":
                raise RuntimeError(result.message)
            dump_bytes.append(result.figures["total_bytes_processed"])
            say(f"day {day}: dump {dump_bytes[-1] / 1e6:.0f} MB; gzip way {times['gzip'][-1]:.0f} s, "
                f"runner's way {times['runner'][-1]:.0f} s")
    figures = {name: stats(space, repo) for name, repo in (("gzip", gzip_repo), ("runner", runner_repo))}
    rows = []
    for name, label in (("gzip", "`pg_dumpall \\| gzip -9` into restic (specification)"),
                        ("runner", "plain dump streamed into restic (runner)")):
        raw, logical = figures[name]["raw-data"], figures[name]["restore-size"]
        stored = raw["total_size"]
        rows.append((label, stored, logical["total_size"] / stored, raw.get("compression_ratio", 1),
                     median(times[name]), raw["snapshots_count"]))
    ratio_smaller = rows[0][1] / rows[1][1]
    table = [f"| way | stored after {args.days} days | deduplication (logical / stored) | compression "
             "| median time per day | snapshots |",
             "|---|---|---|---|---|---|"]
    table += [f"| {label} | {stored / 1e6:.1f} MB | {dedup:.1f}:1 | {compression:.2f}:1 | {seconds:.0f} s | {count} |"
              for label, stored, dedup, compression, seconds, count in rows]
    text = "\n".join(table) + (
        f"\n\nDump size: {dump_bytes[0] / 1e6:.0f} MB on day 1, {dump_bytes[-1] / 1e6:.0f} MB on day {args.days}; "
        f"about 1 % of the rows changed each day (0.5 % appended, 0.4 % edited among the newest {args.hot:.0%}, "
        "0.1 % oldest deleted).\n"
        f"The runner's repository is **{ratio_smaller:.1f} times smaller** (target: at least 5) with deduplication "
        f"**{rows[1][2]:.1f}:1** (target: at least 20:1). The logical size counts the gzip'd dump for the "
        "specification's way and the plain dump for the runner's, i.e. what each stored snapshot restores to; "
        "the runner's snapshots count also the small manifest snapshot of each day.")
    say(text)
    record(f"Deduplication over time, edits among the newest {args.hot:.0%} of rows "
           f"(bench/dedup.py --hot {args.hot:g})", text)


if __name__ == "__main__":
    main()
