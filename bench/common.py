"""What the benchmarks share: a PostgreSQL of a chosen size, repositories, the runner's settings,
restic run by hand in one container, timing, and the results file.

Every comparison runs both sides in the same invocation, alternating, and reports medians and
their ratio: absolute times vary between machines, ratios hold.
"""

from __future__ import annotations

import json
import os
import platform
import secrets
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from runner import images, restic  # noqa: E402
from runner.engine import Engine, JobSpec, Mount  # noqa: E402
from runner.settings import Settings  # noqa: E402
from runner.workspace import hand_to_job_user, job_dir  # noqa: E402

RESULTS = ROOT / "bench" / "results.md"
NETWORK = "offsite-bench"
PG_PASSWORD = "bench-postgres-password"
# A tag of the benchmarks' own: a test run from another checkout that rebuilds :latest from its own tree cannot
# swap the image under a measurement.
TOOLS = os.environ.get("BENCH_TOOLS_IMAGE", "localhost/offsite-backup/tools:bench")


def say(text: str) -> None:
    print(text, flush=True)


def sh(*argv, check=True, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run([str(a) for a in argv], capture_output=True, text=True, **kwargs)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, argv))[:300]} failed: {result.stderr[-2000:]}")
    return result


def median(values) -> float:
    return statistics.median(values)


def timed(function, *args, **kwargs) -> tuple[float, object]:
    started = time.monotonic()
    value = function(*args, **kwargs)
    return time.monotonic() - started, value


def alternate(repetitions: int, **sides) -> dict[str, list[float]]:
    """Run each side once per round, in alternating order, and collect their wall times."""
    times = {name: [] for name in sides}
    for round_ in range(repetitions):
        order = list(sides) if round_ % 2 == 0 else list(reversed(sides))
        for name in order:
            seconds, _ = timed(sides[name])
            times[name].append(seconds)
            say(f"  {name}: {seconds:.3f} s")
    return times


@dataclass
class Workspace:
    root: Path
    settings: Settings
    engine: Engine


def workspace(name: str, **overrides) -> Workspace:
    root = Path(os.environ.get("BENCH_DIR", "/var/tmp/offsite-bench")) / name
    sh("rm", "-rf", root)
    root.mkdir(parents=True)
    root.chmod(0o755)
    base = Settings()
    secrets_dir = job_dir(root / "secrets", base)
    settings = Settings(
        paths={"state_dir": root / "state", "staging_dir": root / "staging", "cache_dir": root / "cache",
               "secrets_dir": secrets_dir},
        restic={"password_file": str(root / "secrets" / "restic-{source}.password")},
        images={"tools": TOOLS},
        **overrides,
    )
    for source in ("vault", "postgres", "minio", "files"):
        private(secrets_dir / f"restic-{source}.password", f"bench password {source}", settings)
    images.build(settings, ["tools", "runner", "testbed-postgres", "testbed-nas", "testbed-s3"])
    return Workspace(root, settings, Engine(settings))


def private(path: Path, text: str, settings: Settings) -> Path:
    path.write_text(text)
    path.chmod(0o400)
    hand_to_job_user(path, settings)
    return path


def network() -> str:
    if sh("podman", "network", "exists", NETWORK, check=False).returncode != 0:
        sh("podman", "network", "create", NETWORK)
    return NETWORK


def address(container: str) -> str:
    inspected = json.loads(sh("podman", "inspect", container).stdout)[0]
    return inspected["NetworkSettings"]["Networks"][NETWORK]["IPAddress"]


@contextmanager
def postgres(rows: int, name: str = "offsite-bench-postgres", workload: str = "generated"):
    """A PostgreSQL whose plain dump holds about `rows` x 100 bytes, in database `bench`: one table of generated
    rows (two MD5 hex strings each), or with workload "realistic" a home server's kind of databases (see
    realistic.py)."""
    sh("podman", "rm", "-f", name, check=False)
    sh("podman", "run", "-d", "--name", name, "--network", network(), "-e", f"POSTGRES_PASSWORD={PG_PASSWORD}",
       images.testbed_tag("postgres"))
    try:
        while sh("podman", "exec", name, "pg_isready", "-q", "-h", address(name), check=False).returncode != 0:
            time.sleep(0.5)
        say(f"loading {rows} rows ({workload}) into {name} ...")
        sql(name, "CREATE DATABASE bench", "postgres")
        if workload == "realistic":
            from realistic import load
            load(name, rows)
            yield name
            return
        sql(name, "CREATE TABLE events (id bigserial PRIMARY KEY, at timestamptz, kind text, payload text)")
        sql(name, "INSERT INTO events (at, kind, payload) SELECT timestamptz '2024-01-01' + g * interval '1 second', "
                  "(ARRAY['login','order','refund','view'])[1 + g % 4], md5(g::text) || md5((g * 7)::text) "
                  f"FROM generate_series(1, {rows}) g")
        sql(name, "VACUUM ANALYZE events")
        yield name
    finally:
        sh("podman", "rm", "-f", name, check=False)


def sql(container: str, statement: str, database: str = "bench") -> str:
    return sh("podman", "exec", container, "psql", "-qAtX", "-U", "postgres", "-d", database, "-c", statement).stdout


def pgpass(space: Workspace) -> Path:
    return private(space.settings.paths.secrets_dir / "postgres.pgpass", f"*:*:*:postgres:{PG_PASSWORD}\n",
                   space.settings)


def postgres_repositories(space: Workspace, container: str, runner_repo: Path, hand_repo: Path):
    """Settings backing up only `container` into `runner_repo` (the runner's way), both repositories
    initialized; returns the settings and their destinations."""
    from runner.destinations import configured
    from runner.inventory import init

    sources = space.settings.sources
    settings = space.settings.model_copy(update={
        "destinations": {"local": space.settings.destinations["local"].model_copy(update={"path": str(runner_repo)})},
        "sources": sources.model_copy(update={
            "postgres": sources.postgres.model_copy(update={"container": container, "network": NETWORK}),
            "vault": sources.vault.model_copy(update={"enabled": False}),
            "minio": sources.minio.model_copy(update={"enabled": False})})})
    destinations = configured(settings)
    pgpass(space)
    init(space.engine, destinations, ["postgres"])
    job_dir(hand_repo, settings)
    by_hand(space, hand_repo, "restic init --repository-version 2 -q")
    return settings, destinations


def by_hand(space: Workspace, repository: Path, script: str, *mounts: Mount, networks=()) -> float:
    """restic (or a shell pipeline around it) run directly in one tools container: the baseline."""
    password = space.settings.paths.secrets_dir / "restic-postgres.password"
    all_mounts = (Mount(repository, "/repo", read_only=False), Mount(password, "/pw"), *mounts)
    started = time.monotonic()
    result = space.engine.run(JobSpec(name="bench-by-hand", argv=("bash", "-c", f"set -o pipefail; {script}"),
                                      mounts=all_mounts, networks=tuple(networks),
                                      env={"RESTIC_REPOSITORY": "/repo", "RESTIC_PASSWORD_FILE": "/pw",
                                           "RESTIC_CACHE_DIR": "/tmp/cache", "PGPASSFILE": "/pgpass"}))
    if not result.ok:
        raise RuntimeError(result.describe())
    return time.monotonic() - started


def stats(space: Workspace, repository: Path, source: str = "postgres") -> dict:
    figures = {}
    for mode in ("raw-data", "restore-size"):
        repo = restic.Repository("/repo", "/pw", compression="auto")
        result = space.engine.run(JobSpec(name="bench-stats", argv=tuple(restic.stats(repo, mode)), mounts=(
            Mount(repository, "/repo", read_only=False),
            Mount(space.settings.paths.secrets_dir / f"restic-{source}.password", "/pw"))))
        figures[mode] = restic.parse_output(result.stdout).documents[0]
    return figures


def machine() -> str:
    podman = sh("podman", "version", "--format", "{{.Server.Version}}").stdout.strip()
    restic_version = sh("podman", "run", "--rm", TOOLS, "restic", "version").stdout.split()[1]
    cpus = os.cpu_count()
    memory = int(Path("/proc/meminfo").read_text().split()[1]) // 1024 // 1024
    return (f"{platform.node()}: {platform.system()} {platform.release()}, {cpus} cores, {memory} GiB; "
            f"Podman {podman}, restic {restic_version}, Python {platform.python_version()}")


def record(section: str, text: str) -> None:
    """Replace this benchmark's section of bench/results.md, keeping the others."""
    existing = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    parts = existing.split("\n## ")
    head, sections = parts[0], {p.split("\n", 1)[0]: p for p in parts[1:]}
    stamp = f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {machine()}.\n\n"
    sections[section] = f"{section}\n\n{stamp}{text.strip()}\n"
    RESULTS.write_text(head.rstrip() + "\n\n" + "\n".join("## " + body for body in sections.values()))


def token() -> str:
    return secrets.token_hex(3)
