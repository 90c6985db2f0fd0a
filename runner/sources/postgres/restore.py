"""`runner restore postgres`: a pg_dumpall snapshot loaded into a running PostgreSQL with psql,
stopping at the first error; refused where the server already holds data, unless forced.

The load is all or nothing:
- each database the dump creates that the server already has is renamed aside first, to
  `<name>_before_restore_<UTC time>` (all in one transaction; refused while anything is connected to
  one of them), and stays there after a successful restore;
- the dump's CREATE ROLE of a role that exists is left out (its ALTER ROLE then sets the role as it
  was backed up); the attributes and passwords the existing roles had are saved beforehand;
- the part of the dump for the `postgres` database, which cannot be renamed aside, runs last and in
  one transaction; a forced restore is refused when that database already holds tables the dump
  creates;
- when the load fails, the databases it created are dropped, the old ones renamed back, the roles
  it created dropped and the saved attributes set again; the server's databases and roles are then
  checked against what they were.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import click
from loguru import logger

from runner.engine import Engine, JobError, JobSpec, Mount
from runner.restoring import RestoreError, RestoreRequest, fetched
from runner.settings import Settings
from runner.sources.postgres.backup import DUMP_FILENAME, NAME, PGPASS, pgpass_file
from runner.workspace import job_dir

RESTORE_OPTIONS = [
    click.Option(["--database"], help="Only this database, with the roles it needs (created where they do not exist; "
                                      "existing roles are left as they are); the server's other databases are not "
                                      "touched. Refused when the database exists, unless --force (which renames it "
                                      "aside) or --as."),
    click.Option(["--as", "as_name"], metavar="NEW_NAME", help="With --database: load (or write) it under this name."),
    click.Option(["--to-file"], type=click.Path(path_type=Path, dir_okay=False),
                 help="With --database: write its SQL, roles included, to this file (mode 0600) instead of loading "
                      "it; no server is needed."),
    click.Option(["--container"], help="Podman container running the PostgreSQL to restore into."),
    click.Option(["--host"], help="Or: host name or address of the server ..."),
    click.Option(["--network"], help="... and the Podman network it is reached on."),
    click.Option(["--port"], default=5432, show_default=True, type=int),
    click.Option(["--user"], help="Superuser to load as (default: sources.postgres.user)."),
    click.Option(["--pgpass"], type=click.Path(path_type=Path, dir_okay=False, exists=True),
                 help="pgpass file with that user's password (default: the configured one, if it exists)."),
]

BUILT_IN = ("postgres", "template0", "template1")
NAME_LIMIT = 63  # bytes in a PostgreSQL identifier
SEPARATOR = "\x1f"
# pg_dumpall's plain format, as far as a staged load needs to read it
IDENTIFIER = rb'(?:"(?:[^"]|"")+"|[^\s."(;]+)'
SECTION = re.compile(rb'^-- Database "(.*)" dump$')
CLUSTER_END = b"-- PostgreSQL database cluster dump complete"
CREATE_ROLE = re.compile(rb"^CREATE ROLE (" + IDENTIFIER + rb");$")
CREATE_DATABASE = re.compile(rb"^CREATE DATABASE (" + IDENTIFIER + rb")[ ;]")
CREATE_TABLE = re.compile(rb"^CREATE (?:UNLOGGED |FOREIGN )?TABLE (" + IDENTIFIER + rb"\." + IDENTIFIER + rb")")
CONNECT_POSTGRES = re.compile(rb"""^\\connect (?:postgres|-reuse-previous=on "dbname='postgres'")$""")
COPY = re.compile(rb"^COPY\s.+\sFROM stdin;$")
END_OF_COPY = b"\\."


@dataclass(frozen=True)
class DumpPlan:
    """What a pg_dumpall file creates, as far as a staged load needs to know (line numbers from 1)."""

    roles: dict[str, int]  # role -> line of its CREATE ROLE
    databases: list[str]
    postgres: tuple[int, int, int] | None  # the `postgres` database's part: first line, its \connect, last line
    postgres_tables: list[str]  # tables it creates there, named as pg_dump names them (schema.table)


@dataclass(frozen=True)
class ServerState:
    databases: dict[str, int]  # name -> client connections
    roles: frozenset[str]
    postgres_tables: frozenset[str]  # in the `postgres` database, named as pg_dump names them


def unquoted(quoted: bytes) -> str:
    text = quoted.decode("utf-8", "replace")
    return text[1:-1].replace('""', '"') if text.startswith('"') else text


def dump_plan(dump: Path) -> DumpPlan:
    """Read a pg_dumpall file once (COPY data skipped): the roles and databases it creates, and where its
    part for the `postgres` database is, with the tables that part creates."""
    roles: dict[str, int] = {}
    databases: list[str] = []
    tables: list[str] = []
    section, start, connect, end, in_copy, number = None, 0, 0, 0, False, 0
    with open(dump, "rb") as handle:
        for number, raw in enumerate(handle, 1):
            line = raw.rstrip(b"\r\n")
            if in_copy:
                in_copy = line != END_OF_COPY
                continue
            heading = SECTION.match(line)
            if heading or line == CLUSTER_END:
                if section == b"postgres":
                    end = number - 1
                section = heading.group(1) if heading else None
                start = number if section == b"postgres" else start
            elif COPY.match(line):
                in_copy = True
            elif (role := CREATE_ROLE.match(line)) and section is None:
                roles[unquoted(role.group(1))] = number
            elif database := CREATE_DATABASE.match(line):
                databases.append(unquoted(database.group(1)))
            elif section == b"postgres" and CONNECT_POSTGRES.match(line):
                connect = number
            elif section == b"postgres" and (table := CREATE_TABLE.match(line)):
                tables.append(table.group(1).decode("utf-8", "replace"))
    if section == b"postgres":
        end = number
    if start and not connect:
        raise RestoreError(f"{dump.name}: the part for the postgres database has no \\connect postgres: "
                           "not a pg_dumpall file this restore can stage")
    return DumpPlan(roles, databases, (start, connect, end) if start else None, tables)


def staged_feed(plan: DumpPlan, skip_roles: set[str], dump: str) -> str:
    """Shell commands writing the dump for psql: without the CREATE ROLE lines of `skip_roles`, and with
    the `postgres` database's part moved to the end, in one transaction."""
    deletions = "".join(f"{plan.roles[role]}d;" for role in sorted(skip_roles & plan.roles.keys()))
    if plan.postgres is None:
        return f"sed -n {shlex.quote(deletions + 'p')} {dump}"
    start, connect, end = plan.postgres
    return (f"{{ sed -n '{deletions}1,{start - 1}p;{start - 1}q' {dump} && sed -n '{end + 1},$p' {dump} && "
            f"sed -n '{start},{connect}p;{connect}q' {dump} && echo 'BEGIN;' && "
            f"sed -n '{connect + 1},{end}p;{end}q' {dump} && echo 'COMMIT;'; }}")


def _credentials(pgpass: Path | None) -> tuple[tuple[Mount, ...], dict[str, str]]:
    return ((Mount(pgpass, PGPASS),), {"PGPASSFILE": PGPASS}) if pgpass else ((), {})


@dataclass(frozen=True)
class Server:
    """Where to restore into, and how to log in."""

    host: str
    port: int
    user: str
    networks: tuple[str, ...]
    pgpass: Path | None = None

    def psql(self, *args: str) -> tuple[str, ...]:
        return ("psql", "-qAtX", "-h", self.host, "-p", str(self.port), "-U", self.user, "-d", "postgres", *args)


def load_dump(settings: Settings, engine: Engine, dump: Path, host: str, port: int, user: str,
              networks: tuple[str, ...], pgpass: Path | None = None, feed: str = "") -> tuple[bool, str]:
    """Load a pg_dumpall file with psql, stopping at the first error. `feed` writes the dump for psql
    (staged_feed); by default the whole dump less the CREATE ROLE of the loading role, which would be
    that first error on any fresh server."""
    feed = feed or f"sed {shlex.quote(f'/^CREATE ROLE {user};$/d')} /dump/{dump.name}"
    script = (f"set -o pipefail; {feed} | psql -v ON_ERROR_STOP=1 -qX -h {shlex.quote(host)} -p {port} "
              f"-U {shlex.quote(user)} -d postgres")
    mounts, env = _credentials(pgpass)
    result = engine.run(JobSpec(name="load-dump", argv=("bash", "-c", script),
                                mounts=(Mount(dump.parent, "/dump"), *mounts),
                                networks=networks, env=env, timeout=settings.restore_tests.timeout))
    return result.ok, " ".join(line for line in result.output_tail[-4:] if line.strip())


def run_psql(engine: Engine, server: Server, name: str, *args: str, mounts: tuple[Mount, ...] = (),
              check: bool = True) -> list[str]:
    credentials, env = _credentials(server.pgpass)
    result = engine.run(JobSpec(name=name, networks=server.networks, mounts=(*credentials, *mounts), env=env,
                                timeout=600, argv=server.psql(*args)))
    if check and not result.ok:
        raise RestoreError(f"PostgreSQL at {server.host}:{server.port} as {server.user}: "
                           f"{' '.join(line for line in result.output_tail[-3:] if line.strip())}")
    return result.stdout


def server_state(engine: Engine, server: Server) -> ServerState:
    """The server's databases (with their client connections), roles, and the tables of `postgres`."""
    query = ("SELECT 'database', datname, (SELECT count(*) FROM pg_stat_activity a WHERE a.datname = d.datname "
             "AND a.backend_type = 'client backend') FROM pg_database d "
             "UNION ALL SELECT 'role', rolname, 0 FROM pg_roles "
             "UNION ALL SELECT 'table', quote_ident(schemaname) || '.' || quote_ident(tablename), 0 FROM pg_tables "
             "WHERE schemaname NOT IN ('pg_catalog', 'information_schema')")
    rows = [line.split(SEPARATOR) for line in run_psql(engine, server, "inspect-target", "-F", SEPARATOR, "-c", query)
            if line.strip()]
    if any(len(row) != 3 for row in rows):
        raise RestoreError(f"cannot read what PostgreSQL at {server.host}:{server.port} holds: unexpected answer")
    return ServerState({name: int(count) for kind, name, count in rows if kind == "database"},
                       frozenset(name for kind, name, _ in rows if kind == "role"),
                       frozenset(name for kind, name, _ in rows if kind == "table"))


def ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def aside_names(databases: list[str], taken: set[str], stamp: str) -> dict[str, str]:
    """<name>_before_restore_<stamp> for each database, shortened to fit an identifier; refused on a clash."""
    suffix = f"_before_restore_{stamp}"
    room = NAME_LIMIT - len(suffix.encode())
    names = {name: name.encode()[:room].decode("utf-8", "ignore") + suffix for name in databases}
    clashes = sorted(new for new in names.values() if new in taken or list(names.values()).count(new) > 1)
    if clashes:
        raise RestoreError(f"cannot rename the existing databases aside: {', '.join(clashes)} already taken; "
                           "nothing was changed")
    return names


def save_roles(engine: Engine, server: Server, roles: set[str], undo: Path) -> None:
    """ALTER ROLE statements that give `roles` back their attributes and passwords, written to a file in
    the job's directory (never to its output: they hold password hashes)."""
    if not roles:
        (undo / "roles.sql").write_text("")
        return
    flags = [f"CASE WHEN {column} THEN '{word}' ELSE 'NO{word}' END" for column, word in (
        ("rolsuper", "SUPERUSER"), ("rolinherit", "INHERIT"), ("rolcreaterole", "CREATEROLE"),
        ("rolcreatedb", "CREATEDB"), ("rolcanlogin", "LOGIN"), ("rolreplication", "REPLICATION"),
        ("rolbypassrls", "BYPASSRLS"))]
    query = ("SELECT format('ALTER ROLE %I WITH %s %s %s %s %s %s %s CONNECTION LIMIT %s PASSWORD %L %s;', "
             f"rolname, {', '.join(flags)}, rolconnlimit, rolpassword, "
             "CASE WHEN rolvaliduntil IS NULL THEN '' ELSE format('VALID UNTIL %L', rolvaliduntil) END) "
             f"FROM pg_authid WHERE rolname IN ({', '.join(_literal(role) for role in sorted(roles))})")
    run_psql(engine, server, "save-roles", "-o", "/undo/roles.sql", "-c", query,
              mounts=(Mount(undo, "/undo", read_only=False),))


def roll_back(engine: Engine, server: Server, plan: DumpPlan, aside: dict[str, str], before: ServerState,
               undo: Path) -> list[str]:
    """Undo a failed load; what still differs from `before` (nothing, when it worked)."""
    created = [_literal(name) for name in plan.databases]
    statements = [f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname IN ({', '.join(created)})"
                  ] if created else []
    statements += [f"DROP DATABASE IF EXISTS {ident(name)}" for name in plan.databases]
    statements += [f"ALTER DATABASE {ident(new)} RENAME TO {ident(old)}" for old, new in aside.items()]
    statements += [f"DROP ROLE IF EXISTS {ident(role)}" for role in sorted(plan.roles.keys() - before.roles)]
    args = [arg for statement in statements for arg in ("-c", statement)]
    run_psql(engine, server, "undo-load", *args, "-f", "/undo/roles.sql", mounts=(Mount(undo, "/undo"),),
              check=False)
    after = server_state(engine, server)
    problems = [f"database {name} is there" for name in sorted(after.databases.keys() - before.databases.keys())]
    problems += [f"database {name} is missing" for name in sorted(before.databases.keys() - after.databases.keys())]
    problems += [f"role {name} is there" for name in sorted(after.roles - before.roles)]
    problems += [f"role {name} is missing" for name in sorted(before.roles - after.roles)]
    return problems


def prepare_load(plan: DumpPlan, state: ServerState) -> dict[str, str]:
    """Check that the dump can be loaded all or nothing; the databases to rename aside, old -> new name."""
    clashing = sorted(set(plan.postgres_tables) & state.postgres_tables)
    if clashing:
        raise RestoreError(f"the postgres database already holds tables the dump creates ({', '.join(clashing[:5])}); "
                           "they cannot be renamed aside: move or drop them first (nothing was changed)")
    replaced = [name for name in plan.databases if name in state.databases]
    busy = [f"{name} ({state.databases[name]} connection{'' if state.databases[name] == 1 else 's'})"
            for name in replaced if state.databases[name]]
    if busy:
        raise RestoreError(f"databases the dump replaces are in use: {', '.join(busy)}; stop what is connected to "
                           "them (the applications) and run the restore again (nothing was changed)")
    return aside_names(replaced, set(state.databases), datetime.now(UTC).strftime("%Y%m%d_%H%M%S"))


def target_server(request: RestoreRequest) -> Server:
    """The server named by --container, or --host and --network, and how to log in to it."""
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
    return Server(host, port, user, (network,), pgpass)


def move_aside(engine: Engine, server: Server, aside: dict[str, str]) -> None:
    """Rename the databases old -> new in one transaction: all are renamed, or none."""
    if not aside:
        return
    try:
        run_psql(engine, server, "move-aside", "-c", "; ".join(
            f"ALTER DATABASE {ident(old)} RENAME TO {ident(new)}" for old, new in aside.items()))
    except RestoreError as error:
        raise RestoreError(f"cannot rename the existing databases aside, nothing was changed: {error}") from None
    logger.warning("postgres: renamed aside before loading: {} (if this restore is interrupted, rename them back)",
                   ", ".join(f"{old} -> {new}" for old, new in aside.items()))


def restore(request: RestoreRequest) -> str:
    """Load a pg_dumpall snapshot into a running PostgreSQL, all or nothing. Refuses a server that
    already holds databases or tables unless --force, which renames the databases the dump would
    replace aside (<name>_before_restore_<time>) instead of writing over them. With --database, only
    that database (and the roles it needs), into the server or, with --to-file, into a file."""
    options = request.options
    if options.get("database"):
        from runner.sources.postgres.database import restore_database  # it builds on this module

        return restore_database(request)
    if options.get("as_name") or options.get("to_file"):
        raise RestoreError("--as and --to-file need --database: they apply to one database")
    settings, engine = request.settings, request.engine
    server = target_server(request)
    host, port, user, network, pgpass = server.host, server.port, server.user, server.networks[0], server.pgpass
    state = server_state(engine, server)
    present = [f"database {name}" for name in sorted(state.databases) if name not in BUILT_IN]
    present += [f"table postgres.{name}" for name in sorted(state.postgres_tables)]
    if present and not request.force:
        raise RestoreError(f"the target already holds data ({', '.join(present[:5])}); use --force to load over it "
                           "(the databases the dump replaces are renamed aside, not overwritten)")
    with fetched(request, NAME) as (snapshot, work):
        plan = dump_plan(work / DUMP_FILENAME)
        before = server_state(engine, server)
        aside = prepare_load(plan, before)
        undo = job_dir(work / "undo", settings)
        save_roles(engine, server, set(plan.roles) & before.roles, undo)
        move_aside(engine, server, aside)
        feed = staged_feed(plan, set(before.roles), f"/dump/{DUMP_FILENAME}")
        try:
            ok, said = load_dump(settings, engine, work / DUMP_FILENAME, host, port, user, (network,), pgpass, feed)
        except JobError as error:  # the load could not even run: undone all the same
            ok, said = False, str(error)
        if not ok:
            problems = roll_back(engine, server, plan, aside, before, undo)
            raise RestoreError(failed_load(said, aside, problems))
    kept = ", ".join(f"{old} as {new}" for old, new in aside.items())
    return (f"loaded PostgreSQL dump {snapshot.short_id} of {snapshot.time[:19]} into {host}:{port}.\n"
            + (f"The databases that were there are kept, renamed: {kept}; drop them once the restore is "
               "checked.\n" if kept else "")
            + "Next: check the applications' data (row counts, a login), then restore MinIO.")


def failed_load(said: str, aside: dict[str, str], problems: list[str]) -> str:
    if problems:
        kept = ", ".join(f"{old} as {new}" for old, new in aside.items())
        return (f"loading the dump stopped at an error: {said}. Undoing the load left the server different from "
                f"before: {'; '.join(problems)}" + (f" (the databases that were there: {kept})" if kept else ""))
    return (f"loading the dump stopped at an error: {said}. Nothing of it was kept: the databases it created were "
            "dropped" + (f", those that were there renamed back ({', '.join(aside)})" if aside else "")
            + ", the roles it created dropped and the existing roles' attributes set back; the server's databases "
            "and roles are as they were")
