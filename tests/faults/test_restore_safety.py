"""Restores that must not damage what is there: a forced restore into a directory holding files moves
it aside whole; a forced PostgreSQL restore renames the databases it replaces aside, and one whose
load fails leaves the server exactly as it was. Real restic, real PostgreSQL, through the CLI."""

import json
import re
from contextlib import contextmanager

import pytest
from click.testing import CliRunner

from runner import images
from runner.cli import cli as runner_cli
from runner.engine import Mount
from runner.repository import opened
from runner.restoring import destination_for
from runner.selftest import tree_fingerprint
from runner.sources.postgres import backup as postgres
from runner.sources.postgres.contents import manifest_path
from tests.integration import test_files
from tests.integration.conftest import private_file, write_config
from tests.integration.services import Postgres
from tests.integration.test_sources import SAMPLE_DATABASES, configure, postgres_settings

# besides the sample databases: a role that exists on both servers, one that only the backup has,
# and a table in the `postgres` database (which a restore cannot rename aside)
PRODUCTION_EXTRAS = """
\\connect postgres
CREATE ROLE app LOGIN PASSWORD 'password at backup time';
CREATE ROLE reporter NOLOGIN;
CREATE TABLE kept (id int PRIMARY KEY, note text);
INSERT INTO kept VALUES (1, 'one'), (2, 'two');
"""
# a server that holds the same databases, changed since the backup
LIVE_CHANGES = """
CREATE ROLE app LOGIN PASSWORD 'password changed since';
\\connect shop
INSERT INTO customers (name) VALUES ('customer added after the backup');
"""


def cli(settings, root, *args):
    config = write_config(settings, root / "runner.toml")
    return CliRunner().invoke(runner_cli, ["--config", str(config), *map(str, args)], prog_name="runner")


@pytest.fixture(scope="module")
def production(tmp_path_factory, engine, settings, testcontainers_env):
    images.build(settings, ["testbed-postgres"])
    root = tmp_path_factory.mktemp("safety")
    with Postgres(settings) as server:
        server.load(SAMPLE_DATABASES + PRODUCTION_EXTRAS)
        configured = configure(settings, root, postgres=postgres_settings(server, root, settings))
        assert cli(configured, root, "repo", "init").exit_code == 0
        backed_up = cli(configured, root, "exec", "backup", "postgres", "--json")
        assert backed_up.exit_code == 0, backed_up.output
        [result] = json.loads(backed_up.stdout)
        yield {"settings": configured, "root": root, "server": server, "genuine": result["snapshot_id"][:12],
               "contents": server.table_contents(), "kept": server.sql("SELECT * FROM kept ORDER BY id")}


@contextmanager
def live_server(production, *changes):
    settings, root = production["settings"], production["root"]
    with Postgres(settings) as live:
        live.load(SAMPLE_DATABASES + LIVE_CHANGES + "".join(changes))
        pgpass = private_file(root / f"{live.name}.pgpass", f"*:*:*:postgres:{live.password}\n", settings)
        yield live, ("restore", "postgres", "--container", live.name, "--pgpass", pgpass)


def everything(server):
    """What a failed restore must leave as it was: databases, every table's rows, roles with their passwords."""
    return {"databases": server.sql("SELECT datname FROM pg_database ORDER BY 1"),
            "tables": server.table_contents(),
            "postgres tables": server.sql("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"),
            "roles": server.sql("SELECT rolname, rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin, "
                                "rolconnlimit, rolpassword, rolvaliduntil FROM pg_authid ORDER BY 1")}


def test_forced_files_restore_moves_the_old_directory_aside_and_leaves_nothing_stale(engine, settings, tmp_path):
    configured, data = test_files.backed_up(engine, settings, tmp_path)
    target = tmp_path / "restored"
    (target / "etc" / "old").mkdir(parents=True)
    (target / "etc" / "old" / "stale.conf").write_text("from an earlier restore")
    (target / str(data).lstrip("/")).mkdir(parents=True)
    (target / str(data).lstrip("/") / "deleted-since.txt").write_text("not in the backup")
    old = tree_fingerprint(target)
    refused = test_files.invoke(configured, tmp_path, "restore", "files", "--to-dir", str(target))
    assert refused.exit_code == 1 and "is not empty; use --force" in refused.output
    assert tree_fingerprint(target) == old

    forced = test_files.invoke(configured, tmp_path, "restore", "files", "--to-dir", str(target), "--force")
    assert forced.exit_code == 0, forced.output
    [aside] = [path for path in tmp_path.iterdir() if path.name.startswith("restored.before-restore-")]
    assert tree_fingerprint(aside) == old  # all of it, nothing deleted
    assert f"moved to {aside}" in forced.output
    restored = target / str(data).lstrip("/")
    assert tree_fingerprint(restored) == tree_fingerprint(data)  # exactly the backup: no stale file beside it
    assert [path.name for path in target.iterdir()] == [str(data).lstrip("/").split("/")[0]]


def test_forced_postgres_restore_replaces_the_databases_and_keeps_the_old_ones_renamed(production):
    settings, root = production["settings"], production["root"]
    with live_server(production) as (live, restore):
        old = live.table_contents()
        refused = cli(settings, root, *restore, "--snapshot", production["genuine"])
        assert refused.exit_code == 1 and "already holds data" in refused.output

        forced = cli(settings, root, *restore, "--snapshot", production["genuine"], "--force")
        assert forced.exit_code == 0, forced.output
        aside = dict(re.findall(r"\b(shop|notes) as (\1_before_restore_\d{8}_\d{6})\b", forced.output))
        assert set(aside) == {"shop", "notes"}, forced.output
        contents = live.table_contents()
        assert {key: rows for key, rows in contents.items() if key.split(":")[0] in ("shop", "notes")} \
            == production["contents"]
        renamed = {key: rows for key, rows in contents.items() if "_before_restore_" in key}
        assert {re.sub(r"_before_restore_\d{8}_\d{6}:", ":", key): rows for key, rows in renamed.items()} == old
        assert {key.split(":")[0] for key in renamed} == set(aside.values())  # the old ones, as they were
        assert live.sql("SELECT * FROM kept ORDER BY id") == production["kept"]  # the postgres database's part
        assert live.sql("SELECT rolname FROM pg_roles WHERE rolname IN ('app', 'reporter') ORDER BY 1").split() \
            == ["app", "reporter"]


def test_a_forced_postgres_restore_whose_load_fails_leaves_the_server_exactly_as_it_was(engine, production, tmp_path):
    plant_a_dump_failing_halfway(engine, production, tmp_path)
    settings, root = production["settings"], production["root"]
    with live_server(production) as (live, restore):
        before = everything(live)
        failed = cli(settings, root, *restore, "--force")  # the latest snapshot: the planted one
        assert failed.exit_code == 1
        assert "division by zero" in failed.output and "Nothing of it was kept" in failed.output, failed.output
        assert "databases and roles are as they were" in failed.output
        assert everything(live) == before  # notes loaded, shop halfway: dropped; the old ones renamed back;
        # reporter (created by the dump) dropped, app's password (changed by the dump) set back


def plant_a_dump_failing_halfway(engine, production, tmp_path):
    """The genuine dump with an error in the middle of the `shop` database, as the latest snapshot."""
    settings = production["settings"]
    with opened(settings, engine, destination_for(settings, None), "postgres") as repo:
        snapshot = repo.find("postgres", production["genuine"])
        repo.restore(snapshot, tmp_path / "dump")
        sidecar = repo.find(f"for:{snapshot.manifest_key}")
        repo.dump(sidecar, manifest_path(sidecar), tmp_path / "manifest")
        dump = tmp_path / "dump" / postgres.DUMP_FILENAME
        dump.chmod(0o644)
        text = dump.read_text()
        shop = text.index("\\connect shop")
        halfway = text.index("\\.\n", shop) + 3  # after the first table's rows
        dump.write_text(text[:halfway] + "SELECT 1/0;\n" + text[halfway:])
        planted = repo.backup(tags=["postgres"], command=["cat", f"/dump/{postgres.DUMP_FILENAME}"],
                              filename=postgres.DUMP_FILENAME, sidecar=f"/manifest/{postgres.MANIFEST}",
                              mounts=[Mount(tmp_path / "dump", "/dump"), Mount(tmp_path / "manifest", "/manifest")])
        assert planted.sidecar is not None and not planted.sidecar_problem


def test_a_forced_postgres_restore_that_could_not_be_undone_is_refused(production):
    settings, root = production["settings"], production["root"]
    with live_server(production, "\\connect postgres\nCREATE TABLE kept (id int);\n") as (live, restore):
        before = everything(live)
        clash = cli(settings, root, *restore, "--snapshot", production["genuine"], "--force")
        assert clash.exit_code == 1
        assert "the postgres database already holds tables the dump creates (public.kept)" in clash.output
        assert everything(live) == before

        live.sql("DROP TABLE kept")
        live.get_wrapped_container().exec_run(["psql", "-U", "postgres", "-d", "shop", "-c", "SELECT pg_sleep(120)"],
                                              detach=True)
        wait_for(lambda: live.sql("SELECT count(*) FROM pg_stat_activity WHERE datname = 'shop'").strip() == "1")
        before = everything(live)
        busy = cli(settings, root, *restore, "--snapshot", production["genuine"], "--force")
        assert busy.exit_code == 1 and "in use: shop (1 connection)" in busy.output, busy.output
        assert everything(live) == before


def wait_for(condition, seconds=30):
    import time

    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.3)
