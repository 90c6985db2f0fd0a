"""`runner restore postgres`: a pg_dumpall snapshot loaded into a running PostgreSQL with psql,
stopping at the first error; refused where the server already holds data, unless forced."""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from runner.engine import Engine, JobSpec, Mount
from runner.restoring import RestoreError, RestoreRequest, fetched
from runner.settings import Settings
from runner.sources.postgres.backup import DUMP_FILENAME, NAME, PGPASS, pgpass_file

RESTORE_OPTIONS = [
    click.Option(["--container"], help="Podman container running the PostgreSQL to restore into."),
    click.Option(["--host"], help="Or: host name or address of the server ..."),
    click.Option(["--network"], help="... and the Podman network it is reached on."),
    click.Option(["--port"], default=5432, show_default=True, type=int),
    click.Option(["--user"], help="Superuser to load as (default: sources.postgres.user)."),
    click.Option(["--pgpass"], type=click.Path(path_type=Path, dir_okay=False, exists=True),
                 help="pgpass file with that user's password (default: the configured one, if it exists)."),
]


def _credentials(pgpass: Path | None) -> tuple[tuple[Mount, ...], dict[str, str]]:
    return ((Mount(pgpass, PGPASS),), {"PGPASSFILE": PGPASS}) if pgpass else ((), {})


def load_dump(settings: Settings, engine: Engine, dump: Path, host: str, port: int, user: str,
              networks: tuple[str, ...], pgpass: Path | None = None) -> tuple[bool, str]:
    """Load a pg_dumpall file with psql, stopping at the first error. The dump's CREATE ROLE for the
    server's own bootstrap role would be that error on any fresh server: it is skipped."""
    skip_own_role = f"/^CREATE ROLE {user};$/d"
    script = (f"set -o pipefail; sed {shlex.quote(skip_own_role)} /dump/{dump.name} | psql -v ON_ERROR_STOP=1 -qX "
              f"-h {shlex.quote(host)} -p {port} -U {shlex.quote(user)} -d postgres")
    mounts, env = _credentials(pgpass)
    result = engine.run(JobSpec(name="load-dump", argv=("bash", "-c", script),
                                mounts=(Mount(dump.parent, "/dump"), *mounts),
                                networks=networks, env=env, timeout=settings.restore_tests.timeout))
    return result.ok, " ".join(line for line in result.output_tail[-4:] if line.strip())


def user_data(engine: Engine, host: str, port: int, user: str, networks: tuple[str, ...],
              pgpass: Path | None = None) -> list[str]:
    """Databases other than the built-in ones, and tables in `postgres`: what --force would overwrite."""
    query = ("SELECT 'database ' || datname FROM pg_database "
             "WHERE datname NOT IN ('postgres', 'template0', 'template1') "
             "UNION ALL SELECT 'table postgres.' || schemaname || '.' || tablename FROM pg_tables "
             "WHERE schemaname NOT IN ('pg_catalog', 'information_schema')")
    mounts, env = _credentials(pgpass)
    result = engine.run(JobSpec(name="inspect-target", networks=networks, mounts=mounts, env=env, timeout=120, argv=(
        "psql", "-qAtX", "-h", host, "-p", str(port), "-U", user, "-d", "postgres", "-c", query)))
    if not result.ok:
        raise RestoreError(f"cannot connect to PostgreSQL at {host}:{port} as {user}: "
                           f"{' '.join(result.output_tail[-2:])}")
    return [line for line in result.stdout if line.strip()]


def restore(request: RestoreRequest) -> str:
    """Load a pg_dumpall snapshot into a running PostgreSQL, stopping at the first error.
    Refuses a server that already holds databases or tables unless --force."""
    settings, engine, options = request.settings, request.engine, request.options
    container, host, network, port = options["container"], options["host"], options["network"], options["port"]
    user = options["user"] or settings.sources.postgres.user
    configured = pgpass_file(settings)
    pgpass = options["pgpass"] or (configured if configured.exists() else None)
    if container:
        status = engine.container_status(container)
        if not status.exists or status.state != "running":
            raise RestoreError(f"container {container!r} is not running")
        network = network or next(iter(status.addresses), "")
        host = host or status.addresses.get(network, "")
    if not host or not network:
        raise RestoreError("give --container NAME, or --host and --network")
    networks = (network,)
    present = user_data(engine, host, port, user, networks, pgpass)
    if present and not request.force:
        raise RestoreError(f"the target already holds data ({', '.join(present[:5])}); use --force to load over it")
    with fetched(request, NAME) as (snapshot, work):
        ok, said = load_dump(settings, engine, work / DUMP_FILENAME, host, port, user, networks, pgpass)
    if not ok:
        raise RestoreError(f"loading the dump stopped at an error: {said}")
    return (f"loaded PostgreSQL dump {snapshot.short_id} of {snapshot.time[:19]} into {host}:{port}.\n"
            "Next: check the applications' data (row counts, a login), then restore MinIO.")
