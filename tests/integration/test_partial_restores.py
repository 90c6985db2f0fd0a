"""Partial restores through the CLI, against real backups: one PostgreSQL database (into a live server,
under a new name, over an existing one, or to a file), one MinIO bucket or key prefix, one path of the
plain files. Each brings back exactly what was chosen and leaves everything else as it was."""

import json
import re
import stat
from contextlib import contextmanager

import pytest
from click.testing import CliRunner

from runner import images
from runner.cli import cli as runner_cli
from runner.selftest import tree_fingerprint
from runner.sources.minio.backup import MANIFEST, OBJECTS
from tests.faults.test_restore_safety import everything, plant_a_dump_failing_halfway
from tests.integration import test_files
from tests.integration.conftest import private_file, run_tools, write_config
from tests.integration.services import S3, Postgres
from tests.integration.test_sources import SAMPLE_DATABASES, configure, fill_buckets, minio_settings, postgres_settings

# Roles the shop database needs: its owner and a grantee, which a server it is restored into may lack
PRODUCTION_ROLES = """
CREATE ROLE app LOGIN PASSWORD 'app password';
CREATE ROLE reporter NOLOGIN;
CREATE ROLE bystander NOLOGIN;
ALTER DATABASE shop OWNER TO app;
\\connect shop
ALTER TABLE customers OWNER TO app;
GRANT SELECT ON orders TO reporter;
"""
# A live server: the same databases changed since the backup, and one the backup does not have
LIVE = """
\\connect shop
INSERT INTO customers (name) VALUES ('customer added after the backup');
\\connect notes
UPDATE note SET body = 'edited after the backup' WHERE id = 7;
\\connect postgres
CREATE DATABASE ledger;
\\connect ledger
CREATE TABLE entry (id int PRIMARY KEY, amount numeric);
INSERT INTO entry SELECT g, g * 1.5 FROM generate_series(1, 50) g;
"""


def cli(settings, root, *args):
    config = write_config(settings, root / "runner.toml")
    return CliRunner().invoke(runner_cli, ["--config", str(config), *map(str, args)], prog_name="runner")


@pytest.fixture(scope="module")
def stack(tmp_path_factory, engine, settings, testcontainers_env):
    images.build(settings, ["runner", "testbed-postgres", "testbed-s3"])  # the S3 upload runs in the runner image
    root = tmp_path_factory.mktemp("partial")
    with Postgres(settings) as production, S3(settings) as s3:
        production.load(SAMPLE_DATABASES + PRODUCTION_ROLES)
        objects = fill_buckets(s3)
        configured = configure(settings, root, postgres=postgres_settings(production, root, settings),
                               minio=minio_settings(s3, root, settings))
        assert cli(configured, root, "repo", "init").exit_code == 0
        backed_up = cli(configured, root, "exec", "backup", "postgres", "minio", "--json")
        assert backed_up.exit_code == 0, backed_up.output
        snapshots = {r["source"]: r["snapshot_id"] for r in json.loads(backed_up.stdout)}
        shown = cli(configured, root, "snapshots", "show", snapshots["postgres"][:8], "--source", "postgres", "--json")
        assert shown.exit_code == 0, shown.output
        yield {"settings": configured, "root": root, "production": production, "s3": s3, "objects": objects,
               "contents": production.table_contents(), "manifest": json.loads(shown.stdout)["contents"]["databases"],
               "genuine": snapshots["postgres"][:12]}


@contextmanager
def live_server(stack, genuine=False):
    """A live server and the restore command for it: of the genuine snapshot, or of the latest one."""
    settings, root = stack["settings"], stack["root"]
    snapshot = ("--snapshot", stack["genuine"]) if genuine else ()
    with Postgres(settings) as live:
        live.load(SAMPLE_DATABASES + LIVE)
        pgpass = private_file(root / f"{live.name}.pgpass", f"*:*:*:postgres:{live.password}\n", settings)
        yield live, ("restore", "postgres", "--container", live.name, "--pgpass", pgpass, *snapshot)


def dumped(server, database):
    """pg_dump of one database, less the random key of its \\restrict lines: equal when the database is."""
    result = server.exec(["pg_dump", "-U", "postgres", "-d", database])
    assert result.exit_code == 0, result.output
    return [line for line in result.output.decode().splitlines() if not line.startswith(("\\restrict", "\\unrestrict"))]


def tables_of(contents, database):
    return {key.split(":", 1)[1]: rows for key, rows in contents.items() if key.split(":", 1)[0] == database}


def roles(server):
    return server.sql("SELECT rolname FROM pg_roles WHERE rolname !~ '^pg_' ORDER BY 1").split()


# PostgreSQL ------------------------------------------------------------------------------------


def test_one_database_is_loaded_under_a_new_name_and_nothing_else_on_the_server_changes(stack):
    settings, root = stack["settings"], stack["root"]
    with live_server(stack, genuine=True) as (live, restore):
        others = {database: dumped(live, database) for database in ("shop", "notes", "ledger", "postgres")}
        assert roles(live) == ["postgres"]
        refused = cli(settings, root, *restore, "--database", "shop")
        assert refused.exit_code == 1
        assert "database shop already exists" in refused.output and "--as NEW_NAME" in refused.output

        loaded = cli(settings, root, *restore, "--database", "shop", "--as", "shop_restored")
        assert loaded.exit_code == 0, loaded.output
        assert "the server's other databases were not touched" in loaded.output and "Next:" in loaded.output
        assert {database: dumped(live, database) for database in others} == others  # byte for byte
        restored = tables_of(live.table_contents(), "shop_restored")
        assert restored == tables_of(stack["contents"], "shop")  # every row as backed up
        assert {table: len(rows) for table, rows in restored.items()} == stack["manifest"]["shop"]
        assert roles(live) == ["app", "postgres", "reporter"]  # what shop needs, not bystander
        assert live.sql("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'shop_restored'").strip() \
            == "app"
        assert live.sql("SELECT has_table_privilege('reporter', 'orders', 'SELECT')", "shop_restored").strip() == "t"


def test_a_forced_restore_of_one_database_keeps_the_old_one_renamed_and_leaves_the_others(stack):
    settings, root = stack["settings"], stack["root"]
    with live_server(stack, genuine=True) as (live, restore):
        live.sql("CREATE ROLE app LOGIN PASSWORD 'the live password'")
        password = live.sql("SELECT rolpassword FROM pg_authid WHERE rolname = 'app'")
        old_shop = tables_of(live.table_contents(), "shop")
        others = {database: dumped(live, database) for database in ("notes", "ledger", "postgres")}
        forced = cli(settings, root, *restore, "--database", "shop", "--force")
        assert forced.exit_code == 0, forced.output
        [aside] = re.findall(r"\bshop as (shop_before_restore_\d{8}_\d{6})\b", forced.output)
        contents = live.table_contents()
        assert tables_of(contents, "shop") == tables_of(stack["contents"], "shop")
        assert tables_of(contents, aside) == old_shop  # the old one, as it was
        assert {database: dumped(live, database) for database in others} == others
        assert live.sql("SELECT rolpassword FROM pg_authid WHERE rolname = 'app'") == password  # left as it was
        assert "drop it once the restore is checked" in forced.output


def test_one_database_written_to_a_file_loads_into_another_server(stack, tmp_path, settings):
    configured, root = stack["settings"], stack["root"]
    file = tmp_path / "out" / "notes.sql"
    restore = ("restore", "postgres", "--snapshot", stack["genuine"])
    written = cli(configured, root, *restore, "--database", "notes", "--as", "notes_copy", "--to-file", file)
    assert written.exit_code == 0, written.output
    assert stat.S_IMODE(file.stat().st_mode) == 0o600 and "Next:" in written.output and "psql" in written.output
    again = cli(configured, root, *restore, "--database", "notes", "--to-file", file)
    assert again.exit_code == 1 and "exists; use --force" in again.output
    forced = cli(configured, root, *restore, "--database", "shop", "--to-file", file, "--force")
    assert forced.exit_code == 0, forced.output
    [aside] = [path for path in file.parent.iterdir() if path.name.startswith("notes.sql.before-restore-")]
    with Postgres(settings) as fresh:
        for sql in (aside, file):  # notes as notes_copy, then shop, with the roles it needs
            run_tools(settings, "sh", "-c", 'psql -v ON_ERROR_STOP=1 -qX -h "$0" -U postgres -d postgres -f "$1"',
                      fresh.address, f"/sql/{sql.name}", mounts=(f"{file.parent}:/sql:ro",),
                      env={"PGPASSWORD": fresh.password})
        contents = fresh.table_contents()
        assert tables_of(contents, "notes_copy") == tables_of(stack["contents"], "notes")
        assert tables_of(contents, "shop") == tables_of(stack["contents"], "shop")
        assert {key.split(":")[0] for key in contents} == {"notes_copy", "shop"}


def test_a_database_the_snapshot_lacks_is_named_and_nothing_is_written(stack, tmp_path):
    result = cli(stack["settings"], stack["root"], "restore", "postgres", "--snapshot", stack["genuine"], "--database",
                 "shops", "--to-file", tmp_path / "x.sql")
    assert result.exit_code == 1 and "the dump has no database 'shops' (it has: notes, shop)" in result.output
    assert list(tmp_path.iterdir()) == []


def test_a_single_database_load_that_fails_leaves_the_server_as_it_was(engine, stack, tmp_path):
    plant_a_dump_failing_halfway(engine, stack, tmp_path)  # an error in the middle of shop's part, as the latest
    with live_server(stack) as (live, restore):
        before = everything(live)
        failed = cli(stack["settings"], stack["root"], *restore, "--database", "shop", "--force")
        assert failed.exit_code == 1
        assert "division by zero" in failed.output and "Nothing of it was kept" in failed.output, failed.output
        assert everything(live) == before  # shop renamed back, the half-loaded one and the roles it made dropped


# MinIO -----------------------------------------------------------------------------------------


def keys(s3):
    return {f"{bucket['Name']}/{item['Key']}" for bucket in s3.client.list_buckets()["Buckets"]
            for item in s3.client.list_objects_v2(Bucket=bucket["Name"]).get("Contents", [])}


def files_under(directory):
    return {str(path.relative_to(directory)) for path in directory.rglob("*") if path.is_file()}


def test_a_bucket_prefix_restore_brings_back_exactly_those_objects_with_their_metadata(stack, tmp_path, settings):
    configured, root, source = stack["settings"], stack["root"], stack["s3"]
    chosen = {path for path in stack["objects"] if path.startswith("photos/dir1/")}
    assert chosen and any(path.startswith("photos/tmp/dir1/") for path in stack["objects"])  # a prefix, not a match
    with S3(settings) as fresh:
        restore = ("restore", "minio", "--endpoint", fresh.endpoint, "--network", "podman", "--bucket", "photos")
        result = cli(configured, root, *restore, "--prefix", "dir1/", "--to-dir", tmp_path / "copy")
        assert result.exit_code == 0, result.output
        assert f"{len(chosen)} objects uploaded" in result.output and "Next:" in result.output
        assert keys(fresh) == chosen
        for path in chosen:
            bucket, key = path.split("/", 1)
            original, restored = (s3.client.head_object(Bucket=bucket, Key=key) for s3 in (source, fresh))
            assert (restored["ContentType"], restored["Metadata"]) == (original["ContentType"], original["Metadata"])
            assert fresh.client.get_object(Bucket=bucket, Key=key)["Body"].read() == stack["objects"][path][0]
        assert files_under(tmp_path / "copy") == {MANIFEST, *(f"{OBJECTS}/{path}" for path in chosen)}
        manifest = json.loads((tmp_path / "copy" / MANIFEST).read_text())
        assert set(manifest["objects"]) == chosen and manifest["selected"] == {"bucket": "photos", "prefix": "dir1/"}

        refused = cli(configured, root, *restore, "--prefix", "dir3/", "--to-dir", tmp_path / "more")
        assert refused.exit_code == 1
        assert "already holds objects in the buckets to be written: photos" in refused.output
        assert keys(fresh) == chosen and not (tmp_path / "more").exists()
        forced = cli(configured, root, *restore, "--prefix", "dir3/", "--to-dir", tmp_path / "more", "--force")
        assert forced.exit_code == 0, forced.output
        assert keys(fresh) == chosen | {path for path in stack["objects"] if path.startswith("photos/dir3/")}


def test_a_bucket_restored_to_a_directory_holds_that_bucket_only(stack, tmp_path):
    result = cli(stack["settings"], stack["root"], "restore", "minio", "--bucket", "documents", "--to-dir",
                 tmp_path / "documents")
    assert result.exit_code == 0, result.output
    documents = {path for path in stack["objects"] if path.startswith("documents/")}
    assert files_under(tmp_path / "documents") == {MANIFEST, *(f"{OBJECTS}/{path}" for path in documents)}
    for path in documents:
        assert (tmp_path / "documents" / OBJECTS / path).read_bytes() == stack["objects"][path][0]
    missing = cli(stack["settings"], stack["root"], "restore", "minio", "--bucket", "videos", "--to-dir",
                  tmp_path / "videos")
    assert missing.exit_code == 1 and "no bucket 'videos' (it has: documents, photos)" in missing.output
    assert not (tmp_path / "videos").exists()


# Plain files -----------------------------------------------------------------------------------


def test_a_files_path_restore_brings_back_exactly_that_subtree(engine, settings, tmp_path):
    configured, data = test_files.backed_up(engine, settings, tmp_path)
    chosen = data / "nested"
    target = tmp_path / "restored"
    result = test_files.invoke(configured, tmp_path, "restore", "files", "--path", f"{chosen}/", "--to-dir", target)
    assert result.exit_code == 0, result.output
    assert "Next:" in result.output
    assert tree_fingerprint(target / str(chosen).lstrip("/")) == tree_fingerprint(chosen)
    above = {str(parent.relative_to("/")) for parent in chosen.parents if parent != parent.parent}
    beside = {str(path.relative_to(target)) for path in target.rglob("*")} - above
    assert {path for path in beside if not path.startswith(str(chosen).lstrip("/"))} == set()  # nothing else

    one = tmp_path / "one"
    single = test_files.invoke(configured, tmp_path, "restore", "files", "--path", data / "README.txt", "--to-dir", one)
    assert single.exit_code == 0, single.output
    assert [path for path in one.rglob("*") if not path.is_dir()] == [one / str(data / "README.txt").lstrip("/")]

    refused = test_files.invoke(configured, tmp_path, "restore", "files", "--path", chosen, "--to-dir", target)
    assert refused.exit_code == 1 and "is not empty; use --force" in refused.output
    missing = test_files.invoke(configured, tmp_path, "restore", "files", "--path", data / "absent", "--to-dir",
                                tmp_path / "none")
    assert missing.exit_code == 1 and f"{data / 'absent'} is not in files snapshot" in missing.output
    assert not (tmp_path / "none").exists()
