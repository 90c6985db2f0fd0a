import re
import subprocess

import pytest

from runner.restoring import Phases, RestoreError, put_in_place, refuse_non_empty
from runner.sources.postgres.restore import DumpPlan, aside_names, dump_plan, staged_feed


def _restored_tree(root):
    (root / "objects" / "photos").mkdir(parents=True)
    (root / "objects" / "photos" / "cat.jpg").write_bytes(b"jpeg")
    (root / "manifest.json").write_text("{}")
    return root


def _tree(root):
    return {str(path.relative_to(root)): path.read_bytes() for path in root.rglob("*") if path.is_file()}


def test_a_restored_tree_is_moved_into_a_missing_or_empty_target(tmp_path):
    for target in (tmp_path / "missing", tmp_path / "empty"):
        if target.name == "empty":
            target.mkdir()
        restored = _restored_tree(tmp_path / f".{target.name}.partial" / "restored")
        assert put_in_place(restored, target) is None
        assert (target / "objects" / "photos" / "cat.jpg").read_bytes() == b"jpeg"
        assert not restored.exists()  # moved, not copied
    assert sorted(path.name for path in tmp_path.iterdir()) == [".empty.partial", ".missing.partial", "empty",
                                                                 "missing"]


def test_a_target_holding_files_is_moved_aside_whole_and_nothing_stale_stays(tmp_path):
    target = tmp_path / "minio"
    (target / "objects" / "photos").mkdir(parents=True)
    (target / "objects" / "photos" / "cat.jpg").write_bytes(b"old cat")
    (target / "objects" / "stale").write_text("deleted since the backup")
    (target / "link").symlink_to("elsewhere")
    before = _tree(target)
    aside = put_in_place(_restored_tree(tmp_path / "partial"), target)
    assert _tree(target) == {"objects/photos/cat.jpg": b"jpeg", "manifest.json": b"{}"}
    assert aside is not None and aside.parent == tmp_path
    assert re.fullmatch(r"minio\.before-restore-\d{8}T\d{6}Z", aside.name)
    assert _tree(aside) == before and (aside / "link").readlink().name == "elsewhere"  # nothing deleted


def test_two_forced_restores_in_the_same_second_keep_both_old_trees(tmp_path):
    target = tmp_path / "files"
    asides = []
    for number in range(3):
        target.mkdir(exist_ok=True)
        (target / "generation").write_text(str(number))
        asides.append(put_in_place(_restored_tree(tmp_path / f"partial{number}"), target))
        (target / "manifest.json").unlink()
        for path in sorted(target.rglob("*"), reverse=True):
            path.unlink() if path.is_file() else path.rmdir()
    assert len(set(asides)) == 3
    assert sorted((aside / "generation").read_text() for aside in asides) == ["0", "1", "2"]


def test_a_non_empty_target_is_refused_without_force_naming_where_its_contents_would_go(tmp_path):
    (tmp_path / "target").mkdir()
    (tmp_path / "target" / "file").write_text("x")
    with pytest.raises(RestoreError, match=r"is not empty; use --force to move its contents aside \(to "
                                           r"target\.before-restore-<UTC time>"):
        refuse_non_empty(tmp_path / "target", force=False)
    refuse_non_empty(tmp_path / "target", force=True)


# PostgreSQL: a pg_dumpall file read for a staged load ------------------------------------------------

DUMP = r'''--
-- PostgreSQL database cluster dump
--

CREATE ROLE app;
ALTER ROLE app WITH LOGIN PASSWORD 'SCRAM-SHA-256$4096:hash';
CREATE ROLE postgres;
ALTER ROLE postgres WITH SUPERUSER LOGIN;
CREATE ROLE "Odd ""Role""";

--
-- Database "template1" dump
--

\connect template1

--
-- Database "My Db" dump
--

CREATE DATABASE "My Db" WITH TEMPLATE = template0 ENCODING = 'UTF8';
\connect -reuse-previous=on "dbname='My Db'"
CREATE TABLE public.note (id integer, body text);
COPY public.note (id, body) FROM stdin;
1	CREATE DATABASE inside_data;
\.

--
-- Database "postgres" dump
--

\connect postgres

CREATE TABLE public.kept (id integer);
CREATE UNLOGGED TABLE "Odd Schema"."T" (id integer);
COPY public.kept (id) FROM stdin;
CREATE TABLE public.not_a_table (
\.

--
-- Database "shop" dump
--

CREATE DATABASE shop WITH TEMPLATE = template0 ENCODING = 'UTF8';
\connect shop
CREATE TABLE public.kept (id integer);

--
-- PostgreSQL database cluster dump complete
--
'''


@pytest.fixture
def dump(tmp_path):
    path = tmp_path / "pg_dumpall.sql"
    path.write_text(DUMP)
    return path


def test_a_dump_names_its_roles_databases_and_the_tables_it_creates_in_postgres(dump):
    plan = dump_plan(dump)
    lines = DUMP.splitlines()
    assert {role: lines[number - 1] for role, number in plan.roles.items()} == {
        "app": "CREATE ROLE app;", "postgres": "CREATE ROLE postgres;", 'Odd "Role"': 'CREATE ROLE "Odd ""Role""";'}
    assert plan.databases == ["My Db", "shop"]  # not the COPY data's line
    start, connect, end = plan.postgres
    assert lines[start - 1] == '-- Database "postgres" dump' and lines[connect - 1] == r"\connect postgres"
    assert lines[end - 1] == "--" and lines[end] == '-- Database "shop" dump'  # the part ends before it
    assert plan.postgres_tables == ["public.kept", '"Odd Schema"."T"']


def test_the_staged_feed_leaves_out_existing_roles_and_loads_postgres_last_in_one_transaction(dump):
    feed = staged_feed(dump_plan(dump), {"postgres", "pg_monitor"}, str(dump))
    fed = subprocess.run(["bash", "-c", f"set -o pipefail; {feed}"], capture_output=True, text=True, check=True).stdout
    assert "CREATE ROLE postgres;" not in fed and "CREATE ROLE app;" in fed
    kept = [line for line in DUMP.splitlines() if line != "CREATE ROLE postgres;"]
    assert sorted(fed.splitlines()) == sorted([*kept, "BEGIN;", "COMMIT;"])  # every other line, once
    tail = fed[fed.index('-- Database "postgres" dump'):]
    assert tail.startswith('-- Database "postgres" dump\n--\n\n\\connect postgres\nBEGIN;\n')
    assert tail.rstrip().endswith("COMMIT;") and '-- Database "shop"' not in tail
    assert fed.index("CREATE DATABASE shop") < fed.index("BEGIN;")


def test_a_dump_without_a_postgres_part_is_fed_as_it_is():
    plan = DumpPlan({"postgres": 3}, ["shop"], None, [])
    assert staged_feed(plan, {"postgres"}, "/dump/x.sql") == "sed -n '3d;p' /dump/x.sql"


def test_databases_moved_aside_get_a_free_name_that_fits_an_identifier():
    names = aside_names(["shop", "x" * 63], {"shop"}, "20261130_052700")
    assert names["shop"] == "shop_before_restore_20261130_052700"
    assert len(names["x" * 63].encode()) == 63 and names["x" * 63].endswith("_before_restore_20261130_052700")
    with pytest.raises(RestoreError, match="already taken; nothing was changed"):
        aside_names(["shop"], {"shop", "shop_before_restore_20261130_052700"}, "20261130_052700")


# Browsing: which snapshots passed a restore test ---------------------------------------------------------


def test_the_snapshots_a_restore_test_passed_on_come_from_the_history(tmp_path):
    from datetime import UTC, datetime

    from runner.monitoring.history import open_history
    from runner.restoring import passed_tests
    from runner.results import RunResult, Status
    from runner.settings import Settings

    settings = Settings(paths={"state_dir": tmp_path, "staging_dir": tmp_path, "cache_dir": tmp_path,
                               "secrets_dir": tmp_path})
    history = open_history(tmp_path)
    at = [datetime(2026, 11, day, 3, tzinfo=UTC) for day in (1, 2, 3)]
    history.record("restore-test", RunResult("postgres", "local", Status.OK, "", "aaaa"), ended_at=at[0])
    history.record("restore-test", RunResult("postgres", "local", Status.OK, "", "aaaa"), ended_at=at[1])
    history.record("restore-test", RunResult("postgres", "nas", Status.RESTORE_MISMATCH, "", "bbbb"), ended_at=at[2])
    history.record("backup", RunResult("postgres", "local", Status.OK, "", "cccc"), ended_at=at[2])
    assert passed_tests(settings) == {("postgres", "local", "aaaa"): "2026-11-02T03:00:00+00:00"}
    (tmp_path / "history.sqlite").write_bytes(b"not a database")
    with pytest.raises(RestoreError, match="the run history cannot be read"):
        passed_tests(settings)


def test_the_phases_are_logged_in_human_units():
    phases = Phases()
    phases.seconds.update({"fetch": 12.0, "load": 63.4, "verify": 0.52})
    assert phases.text() == "fetch 12 s, load 1 min 3 s, verify 0.5 s"
