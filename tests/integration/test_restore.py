"""Restore tests in throwaway containers, and the restore commands, against real backups."""

import json
import subprocess

import pytest
from click.testing import CliRunner

from runner import images
from runner.cli import cli as runner_cli
from runner.engine import INSTANCE_LABEL, Mount, instance
from runner.monitoring.history import open_history
from runner.repository import SIDECAR, opened
from runner.restoring import destination_for
from runner.sources.minio import backup as minio
from runner.sources.postgres import backup as postgres
from runner.sources.vault import backup as vault
from runner.workspace import job_dir
from tests.integration.conftest import private_file, write_config
from tests.integration.services import S3, OpenBao, Postgres
from tests.integration.test_sources import (
    SAMPLE_DATABASES,
    configure,
    fill_buckets,
    minio_settings,
    postgres_settings,
    vault_settings,
)


@pytest.fixture(scope="module")
def stack(tmp_path_factory, engine, settings, testcontainers_env):
    images.build(settings, ["runner", "testbed-postgres", "testbed-s3"])  # the Vault probe runs in the runner image
    root = tmp_path_factory.mktemp("restore")
    with OpenBao(settings) as bao, Postgres(settings) as production, S3(settings) as s3:
        production.load(SAMPLE_DATABASES)
        fill_buckets(s3)
        configured = configure(settings, root, vault=vault_settings(bao, root, settings),
                               postgres=postgres_settings(production, root, settings),
                               minio=minio_settings(s3, root, settings))
        unseal_keys = private_file(root / "unseal-keys", bao.unseal_key + "\n", settings)
        configured = configured.model_copy(update={
            "restore_tests": configured.restore_tests.model_copy(update={
                "postgres_image": images.testbed_tag("postgres"), "vault_unseal_keys_file": unseal_keys,
                "s3_image": images.testbed_tag("s3")}),
            "secrets": configured.secrets.model_copy(update={"approle_dir": root / "approle"})})
        (root / "admin-token").write_text(bao.root_token)
        assert cli(configured, root, "vault", "bootstrap", "--token-file", str(root / "admin-token")).exit_code == 0
        assert cli(configured, root, "repo", "init").exit_code == 0
        backed_up = cli(configured, root, "exec", "backup", "all", "--json")
        assert backed_up.exit_code == 0, backed_up.output
        genuine = {r["source"]: r["snapshot_id"] for r in json.loads(backed_up.stdout)}
        yield {"settings": configured, "root": root, "bao": bao, "production": production, "s3": s3,
               "genuine": genuine}


def cli(settings, root, *args):
    config = write_config(settings, root / "runner.toml")
    return CliRunner().invoke(runner_cli, ["--config", str(config), *args], prog_name="runner")


def restore_test(stack, *sources):
    result = cli(stack["settings"], stack["root"], "exec", "restore-test", *sources, "--json")
    return result.exit_code, {r["source"]: r for r in json.loads(result.stdout)}


def leftovers(stack):
    """This installation's job and throwaway containers and networks still present."""
    label = f"label={INSTANCE_LABEL}={instance(stack['settings'])}"
    containers = subprocess.run(["podman", "ps", "-a", "-q", "--filter", label], capture_output=True, text=True).stdout
    networks = subprocess.run(["podman", "network", "ls", "-q", "--filter", label],
                              capture_output=True, text=True).stdout
    return containers.split(), networks.split()


def repository(engine, stack, source):
    return opened(stack["settings"], engine, destination_for(stack["settings"], None), source)


def test_good_backups_pass_their_restore_tests_and_leave_nothing_behind(stack):
    code, results = restore_test(stack, "all")
    assert code == 0, [r["message"] for r in results.values()]
    assert {s: r["status"] for s, r in results.items()} == {"vault": "ok", "postgres": "ok", "minio": "ok"}
    assert results["vault"]["figures"]["verified"] == "read"
    assert "canary secret read back" in results["vault"]["message"]
    assert results["postgres"]["figures"]["tables"] == 4
    assert "unreachable" in results["postgres"]["figures"]["isolation"]
    assert results["minio"]["figures"]["objects"] == 50
    assert results["minio"]["figures"]["s3_compared"] == 50  # loaded into a throwaway S3, compared through its API
    for result in results.values():
        phases = result["figures"]["phase_seconds"]
        assert phases["fetch"] > 0 and result["figures"]["restored_bytes"] > 0
    assert set(results["postgres"]["figures"]["phase_seconds"]) == {"fetch", "start", "load", "verify"}
    recorded = open_history(stack["settings"].paths.state_dir).runs(kind="restore-test")
    assert {run.source for run in recorded} >= {"vault", "postgres", "minio"}
    assert leftovers(stack) == ([], [])


def test_altered_row_fails_the_postgres_test_naming_the_table(engine, stack, tmp_path):
    with repository(engine, stack, "postgres") as repo:
        snapshot = repo.find("postgres")
        sidecar = repo.find(f"for:{snapshot.manifest_key}")
        repo.restore(snapshot, tmp_path / "dump")
        repo.restore(sidecar, tmp_path / "manifest" / "sidecar")
        dump = tmp_path / "dump" / postgres.DUMP_FILENAME
        dump.chmod(0o644)
        text = dump.read_text()
        assert "\tcustomer 42\t" in text
        dump.write_text(text.replace("\tcustomer 42\t", "\tcustomer 4242\t", 1))
        planted = repo.backup(tags=["postgres"], command=["cat", f"/dump/{postgres.DUMP_FILENAME}"],
                              filename=postgres.DUMP_FILENAME, mounts=[Mount(tmp_path / "dump", "/dump")])
        # its manifest the way backups stored one before backup-with-sidecar: a snapshot of /sidecar tagged
        # for:<the dump's id>, which restore tests still find and read
        repo.backup(tags=["postgres-manifest", f"for:{planted.summary.snapshot_id}"], paths=[SIDECAR],
                    mounts=[Mount(tmp_path / "manifest" / "sidecar", SIDECAR)])
    code, results = restore_test(stack, "postgres")
    assert code == 1
    assert results["postgres"]["status"] == "restore mismatch"
    assert "shop: public.customers: row contents differ" in results["postgres"]["message"]
    assert leftovers(stack) == ([], [])


def test_truncated_vault_snapshot_fails_the_vault_test(engine, stack, tmp_path):
    with repository(engine, stack, "vault") as repo:
        repo.restore(repo.find("vault"), tmp_path / "good")
        bad = job_dir(tmp_path / "vault", stack["settings"])
        good = (tmp_path / "good" / "vault" / vault.SNAPSHOT).read_bytes()
        (bad / vault.SNAPSHOT).write_bytes(good[: len(good) // 2])
        (bad / vault.SNAPSHOT).chmod(0o644)
        repo.backup(tags=["vault"], paths=[f"/vault/{vault.SNAPSHOT}"], mounts=[Mount(bad, "/vault")])
    code, results = restore_test(stack, "vault")
    assert code == 1
    assert (results["vault"]["status"] == "restore mismatch"
            and "not a complete gzip'd tar" in results["vault"]["message"])
    assert leftovers(stack) == ([], [])


def test_missing_object_fails_the_minio_test_naming_it(engine, stack):
    settings = stack["settings"]
    mirror = minio.mirror_dir(settings)
    manifest = json.loads((mirror / minio.MANIFEST).read_text())
    victim = sorted(manifest["objects"])[7]
    (mirror / minio.OBJECTS / victim).unlink()
    with repository(engine, stack, "minio") as repo:
        repo.backup(tags=["minio"], paths=[minio.INSIDE], mounts=[Mount(mirror, minio.INSIDE)])
    code, results = restore_test(stack, "minio")
    assert code == 1
    assert results["minio"]["status"] == "restore mismatch" and f"{victim} is missing" in results["minio"]["message"]


def test_throwaway_network_cannot_reach_production(engine, stack):
    production = engine.container_status(stack["production"].name)
    address = next(iter(production.addresses.values()))
    with engine.isolated_network("isolation-check") as network:
        with engine.service("isolation-check", images.testbed_tag("postgres"), network,
                            env={"POSTGRES_HOST_AUTH_METHOD": "trust"}) as throwaway:
            reached = engine.exec_in(throwaway.name, ["pg_isready", "-h", address, "-t", "3"])
            own = engine.exec_in(throwaway.name, ["getent", "hosts", "deb.debian.org"])
    assert reached.exit_code != 0 and own.exit_code != 0


def test_restore_postgres_into_a_fresh_container_and_refuse_a_used_one(stack, testcontainers_env):
    settings, root = stack["settings"], stack["root"]
    with Postgres(settings) as fresh:
        pgpass = private_file(root / "fresh.pgpass", f"*:*:*:postgres:{fresh.password}\n", settings)
        # the genuine snapshot: a test above planted an altered one as the latest
        args = ("restore", "postgres", "--container", fresh.name, "--pgpass", str(pgpass),
                "--snapshot", stack["genuine"]["postgres"][:12])
        first = cli(settings, root, *args)
        assert first.exit_code == 0, first.output
        assert "Next:" in first.output and "restore MinIO" in first.output
        assert fresh.table_contents() == stack["production"].table_contents()
        again = cli(settings, root, *args)
        assert again.exit_code == 1
        assert "already holds data" in again.output and "database shop" in again.output
