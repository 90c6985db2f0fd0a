"""Orchestration overhead: the runner's PostgreSQL backup of a database of about 1 GB against the same
restic command run by hand in one container (`restic backup --stdin-from-command -- pg_dumpall ...`),
alternating, several repetitions; and the fixed cost of one job container.

The runner's backup does more than the bare command: preflight (container check, pg_isready run in
the server's container), stale-lock check, the manifest of every table and the manifest's own snapshot
(its restic process runs beside the dump's, in the same job container), and the result recorded in the
run history as `runner exec backup` records it (which is what tells the next backup whether the
repository needs measuring: the first, full backup measures it, the others do not, as on most nights).
The first backup into each empty repository is reported on its own; the medians are of the incremental
backups that follow (the same 1.1 GB dump again, which restic deduplicates).
Target: at most 1.10 times the bare command's wall time.

The fixed cost of a job container: the engine running `true` (create, attach, start, wait, remove, with
its hardening) against `podman run --rm --network none` of the same image, alternating, medians of
--fixed-repetitions each. Target: at most 1.3 times `podman run --rm`.

    python bench/overhead.py [--rows 11000000] [--repetitions 3] [--fixed-repetitions 10] [--fixed-only]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import tomli_w

from runner.backup import back_up
from runner.engine import JobSpec, Mount
from runner.monitoring.reporting import record as record_in_history
from runner.sources import get as source_named

from common import (
    ROOT,
    TOOLS,
    address,
    alternate,
    by_hand,
    median,
    postgres,
    postgres_repositories,
    record,
    say,
    sh,
    workspace,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=11_000_000, help="about 100 bytes of dump each")
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--fixed-repetitions", type=int, default=10)
    parser.add_argument("--fixed-only", action="store_true", help="measure only the job container's fixed cost")
    args = parser.parse_args()

    space = workspace("overhead")
    fixed_text = fixed_cost(space, args.fixed_repetitions)
    if args.fixed_only:
        say(fixed_text)
        record("Job container fixed cost (bench/overhead.py --fixed-only)", fixed_text)
        return
    runner_repo, hand_repo = space.root / "repo-runner", space.root / "repo-by-hand"
    with postgres(args.rows) as container:
        settings, destinations = postgres_repositories(space, container, runner_repo, hand_repo)
        host = address(container)
        dump = f"restic backup -q --host bench --stdin-filename pg_dumpall.sql --stdin-from-command -- " \
               f"pg_dumpall -h {host} -U postgres --no-password"
        sizes, containers = [], []
        engine_run = space.engine.run

        def counted_run(spec):
            containers.append(spec.name)
            return engine_run(spec)

        def runner_way():
            containers.clear()
            space.engine.run = counted_run
            try:
                [result] = back_up(settings, space.engine, source_named("postgres"), destinations)
                record_in_history(settings, [("backup", result)])
            finally:
                space.engine.run = engine_run
            sizes.append(result.figures.get("total_bytes_processed", 0))
            if result.status.value != "ok":
                raise RuntimeError(result.message)

        def by_hand_way(script=dump):
            by_hand(space, hand_repo, script, Mount(settings.paths.secrets_dir / "postgres.pgpass", "/pgpass"),
                    networks=("offsite-bench",))

        config = space.root / "runner.toml"
        config.write_text(tomli_w.dumps(settings.model_dump(mode="json", exclude_none=True)))

        def runner_command():
            sh(sys.executable, "-m", "runner", "--config", config, "exec", "backup", "postgres", cwd=ROOT)

        def by_hand_with_manifest():
            by_hand_way(dump.replace("-- pg_dumpall",
                                     "-- dump-with-manifest --manifest /tmp/manifest.json -- pg_dumpall"))

        say("the first, full backup into each repository (reported, not counted in the medians)")
        first = alternate(1, runner=runner_way, by_hand=by_hand_way)
        say("backing up again, alternating: incremental backups of unchanged data, as on most nights")
        times = alternate(args.repetitions, runner=runner_way, by_hand=by_hand_way,
                          by_hand_with_manifest=by_hand_with_manifest, runner_command=runner_command)

    ratio = median(times["runner"]) / median(times["by_hand"])
    text = (
        f"| | median wall time ({args.repetitions} incremental backups each, alternating) |\n|---|---|\n"
        "| runner: the backup `runner exec backup postgres` runs, in process (network mode, manifest, checks, "
        "history record) "
        f"| {median(times['runner']):.1f} s |\n"
        "| by hand: `restic backup --stdin-from-command -- pg_dumpall` in one container "
        f"| {median(times['by_hand']):.1f} s |\n"
        "| by hand, the dump passed through `dump-with-manifest` as the runner does "
        f"| {median(times['by_hand_with_manifest']):.1f} s |\n"
        "| the whole command: `runner exec backup postgres` as a process (Python's start, the backup, "
        f"the report: alerts, metrics, dashboard) | {median(times['runner_command']):.1f} s |\n\n"
        f"The first, full backup into each empty repository (one of each, not in the medians): runner "
        f"{first['runner'][0]:.1f} s, by hand {first['by_hand'][0]:.1f} s "
        f"({first['runner'][0] / first['by_hand'][0]:.2f}).\n\n"
        f"Dump size: {sizes[-1] / 1e9:.2f} GB. Ratio runner / by hand: **{ratio:.2f}** (target: at most 1.10); "
        f"the manifest's share: {median(times['by_hand_with_manifest']) / median(times['by_hand']):.2f}, "
        f"the rest of the orchestration: {median(times['runner']) / median(times['by_hand_with_manifest']):.2f}. "
        f"The whole command, as a process: **{median(times['runner_command']) / median(times['by_hand']):.2f}** "
        f"(its start and report: {median(times['runner_command']) - median(times['runner']):+.1f} s).\n\n"
        f"{fixed_text} The runner's PostgreSQL backup to one local repository started {len(containers)} job "
        f"container{'s' if len(containers) != 1 else ''} ({', '.join(containers)}).")
    say(text)
    record("Orchestration overhead (bench/overhead.py)", text)


def fixed_cost(space, repetitions: int) -> str:
    """The engine's job container for `true` against `podman run --rm`, alternating, in milliseconds."""
    say("fixed cost of one job container: the runner's engine against `podman run --rm`")
    job = JobSpec(name="bench-true", argv=("true",))
    space.engine.run(job)  # the first of each pays for loading what later runs find cached
    sh("podman", "run", "--rm", "--network", "none", TOOLS, "true")
    fixed = alternate(repetitions, engine=lambda: space.engine.run(job),
                      podman_run=lambda: sh("podman", "run", "--rm", "--network", "none", TOOLS, "true"))
    engine, podman = median(fixed["engine"]) * 1000, median(fixed["podman_run"]) * 1000
    return (f"Fixed cost of one job container (`true`), medians of {repetitions} alternating runs each: "
            f"**{engine:.0f} ms** through the runner's engine (create, attach, start, wait, remove; hardened), "
            f"{podman:.0f} ms with `podman run --rm --network none`: ratio **{engine / podman:.2f}** (target: at most "
            f"1.3). Load average at the start: {load()}.")


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


if __name__ == "__main__":
    main()
