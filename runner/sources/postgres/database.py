"""`runner restore postgres --database NAME`: one database out of a pg_dumpall snapshot, loaded into a
running server under its own name or a new one (--as), or written as SQL to a file (--to-file).

pg_dumpall writes one part per database, headed `-- Database "NAME" dump`. The dump is read once, up to
the end of the chosen part: the CREATE ROLE and ALTER ROLE lines of its global part are kept aside, and
the part is written out as it is, COPY data untouched. Each role the part names (as owner, grantee or
grantor) and the global part defines is created just before it is first named, and only where it does
not exist (loading, the server's roles are left out; in a file, a DO block checks): an existing role is
left as it is. Under a new name, the lines of that part naming the database are rewritten: CREATE
DATABASE, \\connect, and ALTER, COMMENT, GRANT, REVOKE ... DATABASE and ALTER ROLE ... IN DATABASE
(which would otherwise change the database of the old name).

Loaded into a server, nothing else on it changes. A database of the target name is refused unless
--force, which renames it aside first (<name>_before_restore_<UTC time>) as the whole-server restore
does; a load that fails drops what it created and renames the old one back.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection
from pathlib import Path
from typing import BinaryIO

from runner.engine import JobError
from runner.restic import Snapshot
from runner.restoring import RestoreError, RestoreRequest, fetched, moved_aside_name
from runner.sources.postgres.backup import DUMP_FILENAME, NAME
from runner.sources.postgres.restore import (
    BUILT_IN,
    CLUSTER_END,
    COPY,
    CREATE_DATABASE,
    END_OF_COPY,
    IDENTIFIER,
    SECTION,
    DumpPlan,
    failed_load,
    ident,
    load_dump,
    move_aside,
    prepare_load,
    roll_back,
    save_roles,
    server_state,
    target_server,
    unquoted,
)
from runner.units import size_text
from runner.workspace import hand_to_job_user, job_dir

ROLE_STATEMENT = re.compile(rb"^(?:CREATE|ALTER) ROLE (" + IDENTIFIER + rb")[ ;]")
# Statements that name roles (pg_dump writes each on one line), and the words a role name follows in them
NAMES_ROLES = re.compile(rb"^(?:ALTER|GRANT|REVOKE|CREATE POLICY|CREATE USER MAPPING|SET SESSION AUTHORIZATION"
                         rb"|SET ROLE) ")
ROLE = rb'(?:"(?:[^"]|"")+"|[^\s.,"();]+)'
ROLES_AFTER = re.compile(rb"\b(?:TO|FROM|FOR ROLE|FOR USER|ALTER ROLE|GRANTED BY|AUTHORIZATION|MAPPING FOR) ("
                         + ROLE + rb"(?:, " + ROLE + rb")*)(?![\w.])")
# Statements on the database itself, and the name they give it
NAMES_DATABASE = re.compile(rb"^(?:ALTER|COMMENT ON|GRANT|REVOKE|SECURITY LABEL) ")
DATABASE_NAMED = re.compile(rb"\bDATABASE (" + IDENTIFIER + rb")(?=[ ;]|$)")
CONNECT = re.compile(rb"^\\connect\s+(?:-reuse-previous=on\s+)?(\S.*?)\s*$")
SQL_FILE = "database.sql"


def connected_to(argument: bytes) -> str:
    """The database a \\connect argument names, in the forms pg_dump writes: `shop`,
    `"dbname='My Db'"` (libpq's quoting inside psql's), `"dbname=my-db"`."""
    if argument.startswith(b'"') and argument.endswith(b'"'):
        argument = argument[1:-1].replace(b'""', b'"')
    if argument.startswith(b"dbname="):
        argument = argument.removeprefix(b"dbname=")
        if argument.startswith(b"'") and argument.endswith(b"'"):
            argument = re.sub(rb"\\(.)", rb"\1", argument[1:-1])
    return argument.decode("utf-8", "replace")


def connect_line(name: str) -> bytes:
    """`\\connect` to `name`, quoted as pg_dump quotes a name that is not plain."""
    value = name.replace("\\", "\\\\").replace("'", "\\'")
    return ('\\connect -reuse-previous=on "' + f"dbname='{value}'".replace('"', '""') + '"').encode()


def renamed(line: bytes, old: str, new: str) -> bytes:
    """A line of the database's part that names it, naming `new` instead; any other line as it is."""
    if SECTION.match(line):
        return b'-- Database "' + new.encode() + b'" dump'
    if (created := CREATE_DATABASE.match(line)) and unquoted(created.group(1)) == old:
        return line[:created.start(1)] + ident(new).encode() + line[created.end(1):]
    if (connect := CONNECT.match(line)) and connected_to(connect.group(1)) == old:
        return connect_line(new)
    if NAMES_DATABASE.match(line) and (named := DATABASE_NAMED.search(line)) and unquoted(named.group(1)) == old:
        return line[:named.start(1)] + ident(new).encode() + line[named.end(1):]
    return line


def named_roles(line: bytes) -> list[str]:
    """The roles a statement line names as owner, grantee or grantor."""
    if not NAMES_ROLES.match(line):
        return []
    return [unquoted(role) for found in ROLES_AFTER.finditer(line) for role in re.findall(ROLE, found.group(1))]


def role_block(role: str, lines: list[bytes]) -> bytes:
    """The dump's CREATE ROLE and ALTER ROLE lines of `role`, run only where the role does not exist."""
    number, tag = 0, b"$role$"
    while any(tag in line for line in lines):
        number += 1
        tag = b"$role%d$" % number
    literal = ("'" + role.replace("'", "''") + "'").encode()
    return (b"-- a role from the dump's global part, created only where it does not exist\n"
            b"DO " + tag + b" BEGIN IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = " + literal
            + b") THEN\n" + b"".join(lines) + b"END IF; END " + tag + b";\n")


def write_database(dump: Path, name: str, out: BinaryIO, new_name: str | None = None,
                   skip_roles: Collection[str] = (), guarded: bool = True) -> list[str]:
    """Write database `name`'s part of a pg_dumpall file to `out` (under `new_name`, if given), each role it
    names that the dump defines and `skip_roles` does not hold created before it is first named: `guarded`,
    only where it does not exist (for a file loaded anywhere); else as the dump has it (for a server known to
    lack it: an error then never quotes the statement, which may hold a password hash). Reads the dump once,
    up to the end of that part. Returns the roles written."""
    role_lines: dict[str, list[bytes]] = {}  # role -> its CREATE ROLE and ALTER ROLE lines, from the global part
    databases: list[str] = []
    written: list[str] = []
    section: str | None = None
    in_copy = False
    with open(dump, "rb") as handle:
        for raw in handle:
            line = raw.rstrip(b"\r\n")
            if in_copy:
                in_copy = line != END_OF_COPY
                if section == name:
                    out.write(raw)
                continue
            heading = SECTION.match(line)
            if heading or line == CLUSTER_END:
                if section == name:
                    break
                section = heading.group(1).decode("utf-8", "replace") if heading else None
                databases += [section] if section is not None else []
            if section is None:
                statement = ROLE_STATEMENT.match(line)
                if statement and not databases and b" IN DATABASE " not in line:
                    role_lines.setdefault(unquoted(statement.group(1)), []).append(line + b"\n")
                continue
            in_copy = bool(COPY.match(line))
            if section != name:
                continue
            for role in named_roles(line):
                if role in role_lines and role not in skip_roles and role not in written:
                    out.write(role_block(role, role_lines[role]) if guarded else b"".join(role_lines[role]))
                    written.append(role)
            changed = renamed(line, name, new_name) if new_name else line
            out.write(raw if changed == line else changed + b"\n")
    if name not in databases:
        held = [database for database in databases if database not in BUILT_IN]
        raise RestoreError(f"the dump has no database {name!r} (it has: {', '.join(held) or 'none but the built-in'})")
    return written


def private_file(path: Path) -> BinaryIO:
    """A new file only its owner can read (it will hold password hashes), open for writing."""
    path.unlink(missing_ok=True)
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb")


def restore_database(request: RestoreRequest) -> str:
    options = request.options
    name: str = options["database"]
    new_name: str | None = options.get("as_name")
    for each in (name, new_name):
        if each in BUILT_IN:
            raise RestoreError(f"{each} is a database every server has; it is restored only with the whole server "
                               "(`runner restore postgres` without --database)")
    if options.get("to_file"):
        return write_file(request, name, new_name, options["to_file"])
    return load_database(request, name, new_name)


def write_file(request: RestoreRequest, name: str, new_name: str | None, file: Path) -> str:
    if os.path.lexists(file) and not request.force:
        raise RestoreError(f"{file} exists; use --force to move it aside (to {file.name}.before-restore-<UTC time>, "
                           "beside it) and write a new one")
    file.parent.mkdir(parents=True, exist_ok=True)
    partial = file.with_name(f".{file.name}.partial")
    try:
        with fetched(request, NAME) as (snapshot, work):
            with private_file(partial) as out:
                out.write(f"-- database {name} of PostgreSQL snapshot {snapshot.short_id} of {snapshot.time[:19]}"
                          f"{f', as {new_name}' if new_name else ''}: load with psql as a superuser\n".encode())
                roles = write_database(work / DUMP_FILENAME, name, out, new_name)
        aside = moved_aside_name(file) if os.path.lexists(file) else None
        if aside:
            file.rename(aside)
        partial.replace(file)
    finally:
        partial.unlink(missing_ok=True)
    target = new_name or name
    moved = f"The file that was there was moved to {aside}.\n" if aside else ""
    holds = f"; it holds the password hashes of the roles it creates ({', '.join(roles)})" if roles else ""
    return (f"wrote database {name}{described(new_name)} of PostgreSQL snapshot {snapshot.short_id} of "
            f"{snapshot.time[:19]} to {file} ({size_text(file.stat().st_size)}, mode 0600{holds}).\n{moved}"
            f"Next: load it with `psql -v ON_ERROR_STOP=1 -U postgres -d postgres -f {file}`: it creates the "
            f"database {target} (which must not exist) and the roles it needs where they are missing.")


def described(new_name: str | None) -> str:
    return f" as {new_name}" if new_name else ""


def load_database(request: RestoreRequest, name: str, new_name: str | None) -> str:
    settings, engine = request.settings, request.engine
    server, target = target_server(request), new_name or name
    if target in server_state(engine, server).databases and not request.force:
        raise RestoreError(f"database {target} already exists on {server.host}:{server.port}; use --force to rename "
                           f"it aside (to {target}_before_restore_<UTC time>) and load in its place, or --as NEW_NAME "
                           "to load beside it (nothing was changed)")
    with fetched(request, NAME) as (snapshot, work):
        before = server_state(engine, server)
        sql = work / SQL_FILE
        with private_file(sql) as out:
            roles = write_database(work / DUMP_FILENAME, name, out, new_name, skip_roles=before.roles, guarded=False)
        hand_to_job_user(sql, settings)
        plan = DumpPlan({role: 0 for role in roles}, [target], None, [])  # what roll_back removes
        aside = prepare_load(plan, before)
        undo = job_dir(work / "undo", settings)
        save_roles(engine, server, set(), undo)  # existing roles are left as they are: nothing to set back
        move_aside(engine, server, aside)
        try:
            ok, said = load_dump(settings, engine, sql, server.host, server.port, server.user, server.networks,
                                 server.pgpass, f"cat /dump/{SQL_FILE}")
        except JobError as error:  # the load could not even run: undone all the same
            ok, said = False, str(error)
        if not ok:
            raise RestoreError(failed_load(said, aside, roll_back(engine, server, plan, aside, before, undo)))
    return loaded(snapshot, name, new_name, f"{server.host}:{server.port}", roles, aside)


def loaded(snapshot: Snapshot, name: str, new_name: str | None, where: str, roles: list[str],
           aside: dict[str, str]) -> str:
    created = f", with the roles it needs that were missing ({', '.join(roles)})" if roles else ""
    kept = "".join(f"The database that was there is kept, renamed: {old} as {new}; drop it once the restore is "
                   "checked.\n" for old, new in aside.items())
    return (f"loaded database {name}{described(new_name)} of PostgreSQL dump {snapshot.short_id} of "
            f"{snapshot.time[:19]} into {where}{created}; the server's other databases were not touched.\n{kept}"
            f"Next: check its data (`runner snapshots show {snapshot.short_id} --source postgres` lists the tables and "
            f"row counts the backup recorded), then point the applications at {new_name or name}.")
