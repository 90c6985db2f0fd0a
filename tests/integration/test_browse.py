"""`runner snapshots` and `runner snapshots show` against real backups of every source: what the
repositories hold, with sizes, manifests and restore tests, in 80 columns and as complete JSON; what
each snapshot holds, in its source's terms; and the ids printed work as a restore's --snapshot.
`exec backup --dry-run` against the same repositories: what would be backed up where, nothing changed."""

import json
import os
import re

import pytest
from click.testing import CliRunner

from runner import images
from runner.cli import cli as runner_cli
from runner.engine import Mount
from runner.monitoring.history import open_history
from runner.repository import opened
from runner.restoring import destination_for
from runner.sources.postgres import backup as postgres
from tests.integration.conftest import write_config
from tests.integration.services import S3, OpenBao, Postgres
from tests.integration.test_files import configure as files_settings
from tests.integration.test_sources import (
    SAMPLE_DATABASES,
    configure,
    fill_buckets,
    minio_settings,
    postgres_settings,
    vault_settings,
)

SOURCES = ("vault", "postgres", "minio", "files")


def cli(settings, root, *args, columns=None):
    config = write_config(settings, root / "runner.toml")
    env = {"COLUMNS": str(columns)} if columns else None
    return CliRunner().invoke(runner_cli, ["--config", str(config), *map(str, args)], prog_name="runner", env=env)


def backup(settings, root, *sources):
    result = cli(settings, root, "exec", "backup", *sources, "--json")
    assert result.exit_code == 0, result.output
    return {r["source"]: r for r in json.loads(result.stdout)}


@pytest.fixture(scope="module")
def stack(tmp_path_factory, engine, settings, testcontainers_env):
    images.build(settings, ["testbed-postgres", "testbed-s3"])
    root = tmp_path_factory.mktemp("browse")
    data = files_settings(settings, root).sources.files.paths[0]  # a sample tree: binary, empty, nested, a link
    with OpenBao(settings) as bao, Postgres(settings) as production, S3(settings) as s3:
        production.load(SAMPLE_DATABASES)
        objects = fill_buckets(s3)
        configured = configure(settings, root, vault=vault_settings(bao, root, settings),
                               postgres=postgres_settings(production, root, settings),
                               minio=minio_settings(s3, root, settings), files={"paths": [str(data)]})
        configured = configured.model_copy(update={"restore_tests": configured.restore_tests.model_copy(
            update={"postgres_image": images.testbed_tag("postgres")})})
        assert cli(configured, root, "repo", "init").exit_code == 0
        first = backup(configured, root, "all")
        tested = cli(configured, root, "exec", "restore-test", "postgres", "--json")
        assert tested.exit_code == 0, tested.output
        second = backup(configured, root, "postgres")
        planted = plant_a_dump_without_manifest(engine, configured, root / "plant")
        yield {"settings": configured, "root": root, "data": data, "objects": objects, "backups": first,
               "postgres": [first["postgres"]["snapshot_id"], second["postgres"]["snapshot_id"], planted]}


def plant_a_dump_without_manifest(engine, settings, work):
    with opened(settings, engine, destination_for(settings, None), "postgres") as repo:
        repo.restore(repo.find("postgres"), work)
        return repo.backup(tags=["postgres"], command=["cat", f"/dump/{postgres.DUMP_FILENAME}"],
                           filename=postgres.DUMP_FILENAME, mounts=[Mount(work, "/dump")]).summary.snapshot_id


def restic_snapshots(engine, stack, source):
    settings = stack["settings"]
    with opened(settings, engine, destination_for(settings, None), source) as repo:
        return repo.snapshots()


def listed(stack):
    result = cli(stack["settings"], stack["root"], "snapshots", "--json")
    assert result.exit_code == 0, result.output
    return {entry["source"]: entry for entry in json.loads(result.stdout)}


def test_the_listing_holds_what_restic_holds_with_sizes_manifests_and_tests(engine, stack):
    listing = listed(stack)
    assert list(listing) == list(SOURCES)
    for source, entry in listing.items():
        held = restic_snapshots(engine, stack, source)
        assert entry["error"] is None and entry["restore_tests_known"] is True
        assert {s["id"] for s in entry["snapshots"]} | {m["id"] for m in entry["manifests"]} == {s.id for s in held}
        for snapshot in entry["snapshots"]:
            assert set(snapshot) == {"id", "short_id", "time", "size", "tags", "paths", "hostname", "manifest_id",
                                     "restore_test_passed_at"}
            assert snapshot["short_id"] == snapshot["id"][:8] and source in snapshot["tags"]
        backed_up = stack["backups"][source]
        [first] = [s for s in entry["snapshots"] if s["id"] == backed_up["snapshot_id"]]
        assert first["size"] == backed_up["figures"]["total_bytes_processed"] > 0
    rows = {s["id"]: s for s in listing["postgres"]["snapshots"]}
    tested, untested, planted = stack["postgres"]
    manifests = {m["for"]: m["id"] for m in listing["postgres"]["manifests"]}
    assert set(manifests) == {tested, untested}
    assert [rows[i]["manifest_id"] for i in (tested, untested, planted)] == [manifests[tested], manifests[untested],
                                                                                None]
    assert rows[tested]["restore_test_passed_at"] is not None
    assert rows[untested]["restore_test_passed_at"] is None and rows[planted]["restore_test_passed_at"] is None
    assert [s["id"] for s in listing["postgres"]["snapshots"]] == [tested, untested, planted]  # newest last
    assert all(s["manifest_id"] is None for source in ("vault", "minio", "files") for s in listing[source]["snapshots"])


def test_the_table_fits_80_columns_and_says_manifest_and_tested(stack):
    result = cli(stack["settings"], stack["root"], "snapshots", columns=80)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= 80, result.output
    assert sum(line.split() == ["id", "time", "size", "tags", "manifest", "tested"] for line in lines) == 4
    rows = {line.split()[0]: line.split() for line in lines if re.match(r"^[0-9a-f]{8} ", line)}
    tested, untested, planted = (snapshot[:8] for snapshot in stack["postgres"])
    assert rows[tested][-2:] == ["yes", listed(stack)["postgres"]["snapshots"][0]["restore_test_passed_at"][:10]]
    assert rows[untested][-2:] == ["yes", "-"] and rows[planted][-2:] == ["no", "-"]
    vault = stack["backups"]["vault"]["snapshot_id"][:8]
    assert rows[vault][-2:] == ["-", "-"] and re.fullmatch(r"\d+(\.\d)?", rows[vault][3])  # a size, with its unit
    assert "postgres on local" in result.output and "minio on local" in result.output


def show(stack, *args):
    result = cli(stack["settings"], stack["root"], "snapshots", "show", *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_show_postgres_names_the_databases_tables_and_rows(stack):
    tested = stack["postgres"][0]
    shown = show(stack, tested[:8])  # looked for in every source's repository
    assert shown["source"] == "postgres" and shown["snapshot"]["id"] == tested
    assert shown["contents"]["databases"] == {
        "notes": {"public.note": 300},
        "shop": {"public.audit": 0, "public.customers": 500, "public.orders": 2000}}
    text = cli(stack["settings"], stack["root"], "snapshots", "show", tested[:8], "--source", "postgres").output
    assert re.search(r"shop\s+public\.orders\s+2,000", text) and "2 databases, 4 tables, 2,800 rows" in text
    planted = cli(stack["settings"], stack["root"], "snapshots", "show", stack["postgres"][2][:8])
    assert planted.exit_code == 1 and "has no manifest beside it" in planted.output


def test_show_minio_names_the_buckets_and_the_objects_under_a_prefix(stack):
    snapshot = stack["backups"]["minio"]["snapshot_id"]
    objects = stack["objects"]
    shown = show(stack, snapshot[:10], "--source", "minio")
    for bucket in ("photos", "documents"):
        mine = [body for path, (body, _, _) in objects.items() if path.startswith(f"{bucket}/")]
        assert shown["contents"]["buckets"][bucket] == {"objects": len(mine), "bytes": sum(map(len, mine))}
    under = show(stack, snapshot[:10], "--prefix", "photos/dir1/")
    assert set(under["contents"]["objects"]) == {path for path in objects if path.startswith("photos/dir1/")}
    assert {entry["content_type"] for entry in under["contents"]["objects"].values()} == {"image/jpeg"}


def test_show_vault_names_the_raft_index_and_term(stack):
    backed_up = stack["backups"]["vault"]
    shown = show(stack, backed_up["snapshot_id"][:8])
    assert shown["contents"]["raft_index"] == backed_up["figures"]["raft_index"]
    assert shown["contents"]["raft_term"] == backed_up["figures"]["raft_term"]


def test_show_files_names_the_tree_at_its_original_paths(stack):
    data, snapshot = stack["data"], stack["backups"]["files"]["snapshot_id"]
    nodes = {node["path"]: node for node in show(stack, snapshot[:8])["contents"]["nodes"]}
    tree = {str(path) for path in data.rglob("*")} | {str(data)}
    assert {path for path in nodes if path.startswith(str(data))} == tree
    assert nodes[str(data / "link-to-readme")]["type"] == "symlink"
    assert nodes[str(data / "nested" / "random.bin")]["size"] == os.path.getsize(data / "nested" / "random.bin")
    nested = show(stack, snapshot[:8], "--prefix", data / "nested")["contents"]["nodes"]
    assert {node["path"] for node in nested} == {str(data / "nested")} | {str(p) for p in (data / "nested").rglob("*")}


def test_an_unknown_id_is_named_with_where_it_was_looked_for(stack):
    result = cli(stack["settings"], stack["root"], "snapshots", "show", "00000000")
    assert result.exit_code == 1
    assert "no snapshot 00000000 in the vault, postgres, minio, files repositories on local" in result.output


def test_every_id_the_listing_prints_restores(stack, tmp_path):
    settings, root = stack["settings"], stack["root"]
    table = cli(settings, root, "snapshots", columns=80).output
    printed = re.findall(r"^([0-9a-f]{8}) ", table, re.M)
    assert stack["postgres"][0][:8] in printed
    first = {source: stack["backups"][source]["snapshot_id"][:8] for source in SOURCES}
    first["postgres"] = stack["postgres"][0][:8]  # not the latest: that is the planted one
    assert set(first.values()) <= set(printed)
    restores = {
        "vault": ("--output", tmp_path / "vault.snap"),
        "postgres": ("--database", "notes", "--to-file", tmp_path / "notes.sql"),
        "minio": ("--bucket", "documents", "--to-dir", tmp_path / "minio"),
        "files": ("--path", stack["data"] / "nested", "--to-dir", tmp_path / "files"),
    }
    for source, options in restores.items():
        result = cli(settings, root, "restore", source, "--snapshot", first[source], *options)
        assert result.exit_code == 0, result.output
        assert f" {first[source]} of " in result.output, result.output


def test_a_backup_dry_run_names_what_and_where_and_changes_nothing(engine, stack):
    settings, root = stack["settings"], stack["root"]
    spare = {"kind": "local", "path": str(root / "spare" / "{source}")}  # never initialized
    destinations = {**settings.model_dump()["destinations"], "spare": spare}
    wider = settings.model_validate({**settings.model_dump(), "destinations": destinations})
    before = {source: {s.id for s in restic_snapshots(engine, stack, source)} for source in SOURCES}
    runs_before = len(open_history(settings.paths.state_dir).runs())
    staged_before = sorted(path.name for path in settings.paths.staging_dir.iterdir())

    result = cli(wider, root, "exec", "backup", "--dry-run", "--json")
    assert result.exit_code == 1, result.output  # the spare destination has no repositories
    outcome = {(r["source"], r["destination"]): r for r in json.loads(result.stdout)}
    assert set(outcome) == {(source, destination) for source in SOURCES for destination in ("local", "spare")}
    for source in SOURCES:
        assert outcome[(source, "local")]["status"] == "ok", outcome[(source, "local")]
        assert outcome[(source, "local")]["message"].endswith(f"to {root / 'repos' / source}")
        assert outcome[(source, "spare")]["status"] == "repository missing"
        assert "runner repo init --destination spare" in outcome[(source, "spare")]["message"]
    assert "buckets documents, photos at" in outcome[("minio", "local")]["message"]
    assert str(stack["data"]) in outcome[("files", "local")]["message"]
    assert "pg_dumpall of " in outcome[("postgres", "local")]["message"]

    assert {source: {s.id for s in restic_snapshots(engine, stack, source)} for source in SOURCES} == before
    assert len(open_history(settings.paths.state_dir).runs()) == runs_before  # nothing recorded
    assert sorted(path.name for path in settings.paths.staging_dir.iterdir()) == staged_before  # nothing staged


def test_a_backup_dry_run_fails_only_the_source_whose_preflight_fails(stack):
    settings, root = stack["settings"], stack["root"]
    minio = settings.sources.minio.model_copy(update={"buckets": ["photos", "no-such-bucket"]})
    broken = settings.model_copy(update={"sources": settings.sources.model_copy(update={"minio": minio})})
    result = cli(broken, root, "exec", "backup", "--dry-run", columns=80)
    assert result.exit_code == 1
    rows = {line.split()[0]: line.split()[2] for line in result.output.splitlines()
            if line.split() and line.split()[0] in SOURCES}
    assert rows == {"vault": "ok", "postgres": "ok", "minio": "failed", "files": "ok"}, result.output
    assert "no-such-bucket" in result.output and max(map(len, result.output.splitlines())) <= 80
