"""Faults in the sources: each fails its own source, alerted once; the other sources are backed up."""

import os

import pytest

from tests.faults.harness import Scenario, small_disk
from tests.integration.services import S3, OpenBao, Postgres
from tests.integration.test_sources import SAMPLE_DATABASES


@pytest.fixture(scope="module")
def bao(testcontainers_env, settings):
    with OpenBao(settings) as server:
        yield server


@pytest.fixture(scope="module")
def postgres(testcontainers_env, settings):
    with Postgres(settings) as server:
        server.load(SAMPLE_DATABASES)
        yield server


@pytest.fixture
def scenario(settings, tmp_path, smtp, engine):
    return Scenario(settings, tmp_path, smtp, engine)


def vault_source(scenario, bao):
    return {"address": bao.url, "token_file": str(scenario.secret(scenario.root / "vault-token", bao.root_token))}


def postgres_source(scenario, server, **overrides):
    pgpass = scenario.secret(scenario.root / "pgpass", f"*:*:*:postgres:{server.password}\n")
    return {"container": server.name, "pgpass_file": str(pgpass), **overrides}


def initialized(scenario, sources):
    scenario.configure(sources)
    assert scenario.run("repo", "init").code == 0


def assert_others_backed_up(scenario, outcome, *sources):
    for source in sources:
        assert outcome.status(source) == "ok", outcome.message(source)
        assert scenario.recorded("backup", source) == "ok"
        assert len(scenario.snapshots(source)) == 1
        scenario.assert_check_clean(source)
        scenario.assert_not_alerted(source)


def test_sealed_vault_fails_only_vault(scenario, bao):
    initialized(scenario, {"vault": vault_source(scenario, bao), "files": {}})
    bao.seal()
    try:
        outcome = scenario.run("exec", "backup")
    finally:
        bao.unseal()
    assert outcome.code == 1
    assert outcome.status("vault") == "failed" and "is sealed: no snapshot taken" in outcome.message("vault")
    assert scenario.recorded("backup", "vault") == "failed"
    assert scenario.snapshots("vault") == []
    scenario.assert_alerted_once("backup failed", "vault", "local")
    assert_others_backed_up(scenario, outcome, "files")


def test_postgres_down_fails_only_postgres(scenario, bao, settings, testcontainers_env):
    with Postgres(settings) as stopped:
        stopped.get_wrapped_container().stop(timeout=2)
        initialized(scenario, {"vault": vault_source(scenario, bao), "postgres": postgres_source(scenario, stopped),
                               "files": {}})
        outcome = scenario.run("exec", "backup")
    assert outcome.code == 1
    assert outcome.status("postgres") == "failed" and "is exited" in outcome.message("postgres")
    assert scenario.snapshots("postgres") == []
    scenario.assert_alerted_once("backup failed", "postgres", "local")
    assert_others_backed_up(scenario, outcome, "vault", "files")


def test_dump_failing_midway_stores_no_snapshot(scenario, postgres):
    # a role that can read everything but one table: pg_dumpall gets through the first databases, then fails
    postgres.load("""
        DO $$ BEGIN CREATE ROLE faultdumper LOGIN PASSWORD 'fault-dumper-password';
            EXCEPTION WHEN duplicate_object THEN NULL; END $$;
        \\connect notes
        GRANT SELECT ON ALL TABLES IN SCHEMA public TO faultdumper;
        \\connect shop
        GRANT SELECT ON ALL TABLES IN SCHEMA public TO faultdumper;
        GRANT SELECT ON ALL SEQUENCES IN SCHEMA public TO faultdumper;
        REVOKE SELECT ON audit FROM faultdumper;
    """)
    pgpass = scenario.secret(scenario.root / "dumper.pgpass", "*:*:*:faultdumper:fault-dumper-password\n")
    initialized(scenario, {"postgres": {"container": postgres.name, "pgpass_file": str(pgpass), "user": "faultdumper",
                                        "dump_options": ["--no-role-passwords"]}, "files": {}})
    outcome = scenario.run("exec", "backup")
    assert outcome.code == 1
    assert outcome.status("postgres") == "failed" and "permission denied" in outcome.message("postgres")
    assert scenario.snapshots("postgres") == []
    assert scenario.repository("postgres").snapshots("postgres-manifest") == []
    scenario.assert_alerted_once("backup failed", "postgres", "local")
    assert_others_backed_up(scenario, outcome, "files")


@pytest.fixture
def small_staging(scenario):
    """Staging on a 64 KiB filesystem: a Vault snapshot does not fit."""
    with small_disk(scenario.root / "staging", "64k") as staging:
        yield staging


def test_staging_disk_full_fails_only_the_source_that_stages(scenario, bao, postgres, small_staging):
    bao.client.secrets.kv.v2.create_or_update_secret(path="bulk", secret={"blob": "x" * 200_000})
    initialized(scenario, {"vault": vault_source(scenario, bao), "postgres": postgres_source(scenario, postgres),
                           "files": {}})
    outcome = scenario.run("exec", "backup")
    assert outcome.code == 1
    assert outcome.status("vault") == "failed" and "No space left" in outcome.message("vault")
    assert scenario.snapshots("vault") == []
    assert list(small_staging.iterdir()) == []  # the partial snapshot is gone
    scenario.assert_alerted_once("backup failed", "vault", "local")
    assert_others_backed_up(scenario, outcome, "postgres", "files")


def test_an_unexpected_error_in_one_source_is_contained(scenario, bao):
    # the engine refuses to give a job the host's /root: an error no source plans for
    initialized(scenario, {"vault": vault_source(scenario, bao), "files": {"paths": ["/root"]}})
    outcome = scenario.run("exec", "backup")
    assert outcome.code == 1
    assert outcome.status("files") == "failed" and "/root" in outcome.message("files")
    assert scenario.recorded("backup", "files") == "failed"
    assert scenario.snapshots("files") == []
    scenario.assert_alerted_once("backup failed", "files", "local")
    assert_others_backed_up(scenario, outcome, "vault")


def test_an_object_the_mirror_cannot_hold_leaves_the_others_backed_up(scenario, settings, testcontainers_env):
    unstorable = "photos/" + "x" * 300 + "/long.jpg"  # a 300-byte path component: no Linux filesystem holds it
    with S3(settings) as s3:
        s3.client.create_bucket(Bucket="photos")
        kept = {f"photos/cat-{index}.jpg": os.urandom(2000 + index) for index in range(5)}
        for path, body in {**kept, unstorable: b"an object with a very long name"}.items():
            s3.client.put_object(Bucket="photos", Key=path.split("/", 1)[1], Body=body)
        credentials = scenario.secret(scenario.root / "minio-credentials", "[default]\naws_access_key_id = AKIAFAULT\n"
                                      "aws_secret_access_key = fault-suite-s3-secret\n")
        initialized(scenario, {"minio": {"endpoint": s3.endpoint, "credentials_file": str(credentials)}, "files": {}})
        outcome = scenario.run("exec", "backup")
    assert outcome.code == 1
    assert outcome.status("minio") == "partial" and unstorable in outcome.message("minio")
    assert scenario.recorded("backup", "minio") == "partial"
    [snapshot] = scenario.snapshots("minio")  # stored, with everything else
    restored = scenario.root / "restored"
    scenario.repository("minio").restore(snapshot, restored)
    objects = restored / "minio" / "objects"
    assert {str(p.relative_to(objects)): p.read_bytes() for p in objects.rglob("*") if p.is_file()} == kept
    mail = scenario.assert_alerted_once("backup incomplete", "minio", "local")
    assert "could not be backed up" in mail and "file name too long" in mail
    scenario.assert_check_clean("minio")
    assert_others_backed_up(scenario, outcome, "files")


def test_a_bucket_the_configuration_leaves_out_is_noticed_once(scenario, settings, testcontainers_env):
    with S3(settings) as s3:
        for bucket in ("photos", "archive"):
            s3.client.create_bucket(Bucket=bucket)
            s3.client.put_object(Bucket=bucket, Key="a.txt", Body=b"kept")
        credentials = scenario.secret(scenario.root / "minio-credentials", "[default]\naws_access_key_id = AKIAFAULT\n"
                                      "aws_secret_access_key = fault-suite-s3-secret\n")
        initialized(scenario, {"minio": {"endpoint": s3.endpoint, "credentials_file": str(credentials),
                                         "buckets": ["photos"]}})
        for _ in range(2):
            outcome = scenario.run("exec", "backup")
            assert outcome.code == 0 and outcome.results[("minio", "local")]["figures"]["uncovered_buckets"] == [
                "archive"]
    mail = scenario.assert_alerted_once("bucket archive not backed up", "minio", "-", event="NOTICE")
    assert "sources.minio.buckets" in mail
