"""Backups of Vault, PostgreSQL and MinIO stand-ins into real restic repositories, restored and compared."""

import hashlib
import io
import json
import os
import tarfile

import pytest
from click.testing import CliRunner

from runner import destinations, inventory
from runner.backup import back_up
from runner.cli import cli
from runner.repository import Repository
from runner.results import Status
from runner.settings import Settings
from runner.sources import get as source_named
from runner.sources.minio.backup import MANIFEST, OBJECTS
from runner.sources.vault import backup as vault
from tests.integration.conftest import private_file, run_tools, write_config
from tests.integration.services import S3, OpenBao, Postgres

SOURCES = ("vault", "postgres", "minio", "files")

SAMPLE_DATABASES = """
CREATE DATABASE shop;
CREATE DATABASE notes;
\\connect shop
CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL, email text, joined date);
CREATE TABLE orders (id bigserial PRIMARY KEY, customer int REFERENCES customers, total numeric(10,2),
                     placed timestamptz, items jsonb);
INSERT INTO customers (name, email, joined)
  SELECT 'customer ' || g, 'c' || g || '@example.org', date '2020-01-01' + g FROM generate_series(1, 500) g;
INSERT INTO orders (customer, total, placed, items)
  SELECT 1 + g % 500, (g * 7 % 1000) / 3.0, timestamptz '2024-01-01' + g * interval '1 hour',
         jsonb_build_object('sku', 'A' || g, 'qty', g % 5) FROM generate_series(1, 2000) g;
CREATE TABLE audit (line text);
\\connect notes
CREATE TABLE note (id int PRIMARY KEY, body text, tags text[]);
INSERT INTO note SELECT g, repeat('note text ' || g || E'\\twith tab ', 3), ARRAY['a', 'b' || g]
  FROM generate_series(1, 300) g;
"""


@pytest.fixture(scope="module")
def bao(testcontainers_env, settings):
    with OpenBao(settings) as server:
        yield server


@pytest.fixture(scope="module")
def postgres(testcontainers_env, settings):
    with Postgres(settings) as server:
        server.load(SAMPLE_DATABASES)
        yield server


@pytest.fixture(scope="module")
def s3(testcontainers_env, settings):
    with S3(settings) as server:
        yield server


def configure(base: Settings, tmp_path, **sources) -> Settings:
    for source in SOURCES:
        private_file(tmp_path / f"restic-{source}.password", f"password of {source}", base)
    return Settings(
        paths={**base.paths.model_dump(), "state_dir": tmp_path / "state", "staging_dir": tmp_path / "staging"},
        restic={"password_file": str(tmp_path / "restic-{source}.password")},
        destinations={"local": {"kind": "local", "path": str(tmp_path / "repos" / "{source}")}},
        sources={name: sources.get(name, {"enabled": False}) for name in SOURCES},
    )


def vault_settings(bao, tmp_path, settings):
    token = private_file(tmp_path / "vault-token", bao.root_token, settings)
    return {"address": bao.url, "token_file": str(token)}


def postgres_settings(postgres, tmp_path, settings, **overrides):
    pgpass = private_file(tmp_path / "pgpass", f"*:*:*:postgres:{postgres.password}\n", settings)
    return {"container": postgres.name, "pgpass_file": str(pgpass), **overrides}


def minio_settings(s3, tmp_path, settings, **overrides):
    credentials = private_file(tmp_path / "minio-credentials", "[default]\naws_access_key_id = AKIATESTTESTTEST\n"
                               "aws_secret_access_key = test-secret-key\n", settings)
    return {"endpoint": s3.endpoint, "credentials_file": str(credentials), **overrides}


def invoke(settings, tmp_path, *args):
    config = write_config(settings, tmp_path / "runner.toml")
    result = CliRunner().invoke(cli, ["--config", str(config), *args, "--json"], prog_name="runner")
    return result.exit_code, {entry["source"]: entry for entry in json.loads(result.stdout)}


def backup(settings, tmp_path, *sources):
    code, _ = invoke(settings, tmp_path, "repo", "init")
    assert code == 0
    return invoke(settings, tmp_path, "exec", "backup", *sources)


def repository(engine, settings, source):
    destination = destinations.configured(settings)[0]
    return Repository(engine, destination, destination.access(source))


def snapshots(engine, settings, source, tag=None):
    return repository(engine, settings, source).snapshots(tag or source)


def restore(engine, settings, source, snapshot, target):
    repository(engine, settings, source).restore(snapshot, target)
    return target


def staging_is_empty(settings):
    staging = settings.paths.staging_dir
    return not staging.exists() or [p.name for p in staging.iterdir() if p.name != "minio-mirror"] == []


# Vault -----------------------------------------------------------------------------------------

def test_vault_snapshot_is_backed_up_byte_identical(engine, settings, tmp_path, bao):
    configured = configure(settings, tmp_path, vault=vault_settings(bao, tmp_path, settings))
    code, results = backup(configured, tmp_path, "vault")
    assert code == 0, results
    figures = results["vault"]["figures"]
    [snapshot] = snapshots(engine, configured, "vault")
    restored = restore(engine, configured, "vault", snapshot, tmp_path / "restored") / "vault" / vault.SNAPSHOT
    assert hashlib.sha256(restored.read_bytes()).hexdigest() == figures["snapshot_sha256"]
    assert vault.verify_snapshot(restored)["Index"] == figures["raft_index"]
    assert staging_is_empty(configured)


def test_sealed_vault_takes_no_snapshot(engine, settings, tmp_path, testcontainers_env):
    with OpenBao(settings) as sealed:
        sealed.seal()
        configured = configure(settings, tmp_path, vault=vault_settings(sealed, tmp_path, settings))
        code, results = backup(configured, tmp_path, "vault")
    assert code == 1
    assert results["vault"]["status"] == "failed" and "is sealed: no snapshot taken" in results["vault"]["message"]
    assert snapshots(engine, configured, "vault") == []
    assert staging_is_empty(configured)


@pytest.mark.parametrize("damage", ["truncate", "alter"])
def test_damaged_snapshot_is_not_uploaded(engine, settings, tmp_path, bao, monkeypatch, damage):
    configured = configure(settings, tmp_path, vault=vault_settings(bao, tmp_path, settings))
    good = bao.client.sys.take_raft_snapshot().content
    damaged = good[: len(good) // 2] if damage == "truncate" else altered_snapshot(good)
    real_client = vault.client

    def client_with_damaged_snapshots(settings):
        client = real_client(settings)
        response = client.sys.take_raft_snapshot()
        response._content, response._content_consumed, response.raw = damaged, True, io.BytesIO(damaged)
        client.sys.take_raft_snapshot = lambda: response
        return client

    monkeypatch.setattr(vault, "client", client_with_damaged_snapshots)
    inventory.init(engine, destinations.configured(configured), ["vault"])
    [result] = back_up(configured, engine, source_named("vault"), destinations.configured(configured))
    assert result.status is Status.FAILED
    assert "snapshot" in result.message and ("complete" in result.message or "SHA256SUMS" in result.message)
    assert snapshots(engine, configured, "vault") == []
    assert staging_is_empty(configured)


def altered_snapshot(good: bytes) -> bytes:
    """The same archive with one byte of state.bin flipped: structurally valid, wrong sums."""
    source = tarfile.open(fileobj=io.BytesIO(good), mode="r:gz")
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as target:
        for member in source:
            data = source.extractfile(member).read()
            if member.name == "state.bin":
                data = bytes([data[0] ^ 0xFF]) + data[1:]
            target.addfile(member, io.BytesIO(data))
    return out.getvalue()


# PostgreSQL ------------------------------------------------------------------------------------

def restored_dump(engine, settings, tmp_path):
    dumps = [s for s in snapshots(engine, settings, "postgres") if "postgres-manifest" not in s.tags]
    [snapshot] = dumps
    target = restore(engine, settings, "postgres", snapshot, tmp_path / "restored")
    return snapshot, target / "pg_dumpall.sql"


def manifest_of(engine, settings, tmp_path, snapshot):
    """The manifest stored beside the dump's snapshot: its own snapshot, tagged for:<the dump's run:<key>>."""
    key = snapshot.tag_value("run:")
    assert key and snapshot.manifest_key == key
    [sidecar] = snapshots(engine, settings, "postgres", tag=f"for:{key}")
    assert "postgres-manifest" in sidecar.tags and sidecar.paths == ("/postgres-manifest.json",)
    target = restore(engine, settings, "postgres", sidecar, tmp_path / "manifest")
    return json.loads((target / "postgres-manifest.json").read_text())


def load_into_fresh_server(settings, dump, tmp_path):
    fresh = Postgres(settings)
    fresh.start()
    os.chmod(dump.parent, 0o755)
    os.chmod(dump, 0o644)
    # The fresh server already has its bootstrap role: that one CREATE ROLE is the expected error.
    script = ("sed '/^CREATE ROLE postgres;$/d' /dump/pg_dumpall.sql "
              "| psql -v ON_ERROR_STOP=1 -qX -h \"$0\" -U postgres -d postgres")
    loaded = run_tools(settings, "sh", "-c", script,
                       fresh.address, mounts=(f"{dump.parent}:/dump:ro",), env={"PGPASSWORD": fresh.password})
    return fresh, loaded


@pytest.mark.parametrize("mode", ["network", "exec"])
def test_postgres_dump_restores_equal_rows(engine, settings, tmp_path, postgres, mode):
    configured = configure(settings, tmp_path, postgres=postgres_settings(postgres, tmp_path, settings, mode=mode))
    code, results = backup(configured, tmp_path, "postgres")
    assert code == 0, results
    figures = results["postgres"]["figures"]
    assert figures["total_bytes_processed"] > 100_000 and figures["data_added_packed"] > 0
    snapshot, dump = restored_dump(engine, configured, tmp_path)
    manifest = manifest_of(engine, configured, tmp_path, snapshot)
    assert manifest["databases"]["shop"]["public.orders"]["rows"] == 2000
    assert manifest["databases"]["notes"]["public.note"]["rows"] == 300
    assert manifest["dump_bytes"] == dump.stat().st_size
    fresh, _ = load_into_fresh_server(settings, dump, tmp_path)
    try:
        assert fresh.table_contents() == postgres.table_contents()
    finally:
        fresh.stop()
    assert staging_is_empty(configured)


def test_stopped_postgres_is_refused_in_preflight(engine, settings, tmp_path, testcontainers_env):
    with Postgres(settings) as stopped:
        stopped.get_wrapped_container().stop(timeout=2)
        configured = configure(settings, tmp_path, postgres=postgres_settings(stopped, tmp_path, settings))
        code, results = backup(configured, tmp_path, "postgres")
    assert code == 1
    assert results["postgres"]["status"] == "failed" and "is exited" in results["postgres"]["message"]
    assert snapshots(engine, configured, "postgres") == []


@pytest.mark.parametrize("mode", ["network", "exec"])
def test_dump_failing_midway_leaves_no_snapshot(engine, settings, tmp_path, postgres, mode):
    # A role that can read everything but one table of the second database: pg_dumpall gets
    # through the first databases, then fails.
    postgres.load("""
        DO $$ BEGIN CREATE ROLE dumper LOGIN PASSWORD 'dumper-password';
            EXCEPTION WHEN duplicate_object THEN NULL; END $$;
        \\connect notes
        GRANT SELECT ON ALL TABLES IN SCHEMA public TO dumper;
        \\connect shop
        GRANT SELECT ON ALL TABLES IN SCHEMA public TO dumper;
        GRANT SELECT ON ALL SEQUENCES IN SCHEMA public TO dumper;
        REVOKE SELECT ON audit FROM dumper;
    """)
    pgpass = private_file(tmp_path / "dumper.pgpass", "*:*:*:dumper:dumper-password\n", settings)
    overrides = {"mode": mode, "user": "dumper", "dump_options": ["--no-role-passwords"], "pgpass_file": str(pgpass)}
    configured = configure(settings, tmp_path, postgres=postgres_settings(postgres, tmp_path, settings, **overrides))
    code, results = backup(configured, tmp_path, "postgres")
    assert code == 1
    assert results["postgres"]["status"] == "failed"
    assert "permission denied" in results["postgres"]["message"] or "exit code" in results["postgres"]["message"]
    assert snapshots(engine, configured, "postgres") == []
    assert snapshots(engine, configured, "postgres", tag="postgres-manifest") == []
    assert staging_is_empty(configured)


# MinIO -----------------------------------------------------------------------------------------

def fill_buckets(s3):
    objects = {}
    for bucket in ("photos", "documents"):
        s3.client.create_bucket(Bucket=bucket)
    for index in range(50):
        bucket = "photos" if index % 2 else "documents"
        key = f"{'tmp/' if index % 10 == 3 else ''}dir{index % 4}/object-{index}.{'jpg' if index % 2 else 'txt'}"
        body = os.urandom(1000 + index * 997) if index % 2 else (f"document {index}\n" * (index + 1)).encode()
        content_type = "image/jpeg" if index % 2 else "text/plain"
        s3.client.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type,
                             Metadata={"owner": f"user{index % 3}", "index": str(index)})
        objects[f"{bucket}/{key}"] = (body, content_type, {"owner": f"user{index % 3}", "index": str(index)})
    return objects


def test_minio_mirror_is_backed_up_with_metadata_and_incrementally(engine, settings, tmp_path, s3):
    objects = fill_buckets(s3)
    configured = configure(settings, tmp_path, minio=minio_settings(s3, tmp_path, settings, excludes=["tmp/**"]))
    code, results = backup(configured, tmp_path, "minio")
    assert code == 0, results
    kept = {path: item for path, item in objects.items() if "/tmp/" not in path}
    assert results["minio"]["figures"]["objects"] == len(kept) == 45
    [first] = snapshots(engine, configured, "minio")
    restored = restore(engine, configured, "minio", first, tmp_path / "first") / "minio"
    manifest = json.loads((restored / MANIFEST).read_text())
    restored_objects = restored / OBJECTS
    files = {str(p.relative_to(restored_objects)) for p in restored_objects.rglob("*") if p.is_file()}
    assert files == set(kept)
    for path, (body, content_type, metadata) in kept.items():
        assert (restored_objects / path).read_bytes() == body
        entry = manifest["objects"][path]
        assert entry["sha256"] == hashlib.sha256(body).hexdigest()
        assert entry["content_type"] == content_type
        assert {k: entry["metadata"][k] for k in metadata} == metadata
        bucket, key = path.split("/", 1)
        head = s3.client.head_object(Bucket=bucket, Key=key)
        assert head["ContentType"] == entry["content_type"] and head["Metadata"] == metadata

    changed = sorted(kept)[:2]
    for path in changed:
        bucket, key = path.split("/", 1)
        s3.client.put_object(Bucket=bucket, Key=key, Body=b"changed " + path.encode(), ContentType="text/plain")
    deleted = sorted(kept)[-1]
    s3.client.delete_object(Bucket=deleted.split("/", 1)[0], Key=deleted.split("/", 1)[1])
    code, results = invoke(configured, tmp_path, "exec", "backup", "minio")
    assert code == 0, results
    assert results["minio"]["figures"]["transferred"] == 2
    assert results["minio"]["figures"]["deleted"] == 1
    second = [s for s in snapshots(engine, configured, "minio") if s.id != first.id][0]
    latest = restore(engine, configured, "minio", second, tmp_path / "second") / "minio" / OBJECTS
    assert not (latest / deleted).exists() and (restored_objects / deleted).exists()
    for path in changed:
        assert (latest / path).read_bytes() == b"changed " + path.encode()


# All -------------------------------------------------------------------------------------------

def test_backup_all_goes_on_when_postgres_is_down(engine, settings, tmp_path, bao, s3, testcontainers_env):
    if not list(s3.client.list_buckets()["Buckets"]):
        fill_buckets(s3)
    with Postgres(settings) as down:
        down.get_wrapped_container().stop(timeout=2)
        configured = configure(settings, tmp_path, vault=vault_settings(bao, tmp_path, settings),
                               postgres=postgres_settings(down, tmp_path, settings),
                               minio=minio_settings(s3, tmp_path, settings))
        code, results = backup(configured, tmp_path, "all")
    assert code == 1
    assert results["vault"]["status"] == "ok" and results["minio"]["status"] == "ok"
    assert results["postgres"]["status"] == "failed"
