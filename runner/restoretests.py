"""Monthly restore tests: the latest snapshot of each source, restored into throwaway containers on an
isolated network (Podman `--internal`: no route to anything but each other), then compared with
what was recorded at backup time. Containers, network and staging are removed even on failure.
Each phase is timed; the durations are the data for RTO planning.
"""

from __future__ import annotations

import json
import secrets
import time
from contextlib import contextmanager
from pathlib import Path

import hvac
import requests
from loguru import logger

from runner import recover
from runner.destinations import Destination
from runner.engine import Engine, JobError, JobSpec, Mount
from runner.recover import RestoreError
from runner.results import RunResult, Status
from runner.settings import Settings
from runner.sources import SourceError, minio, postgres, vault
from runner.workspace import hand_to_job_user, job_dir, remove_tree

THROWAWAY_USER = "postgres"


class Mismatch(Exception):
    """The restored data differs from what was backed up."""


class Phases:
    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextmanager
    def timed(self, name: str):
        started = time.monotonic()
        try:
            yield
        finally:
            self.seconds[name] = round(time.monotonic() - started, 2)


def run(settings: Settings, engine: Engine, source: str, destination: Destination) -> RunResult:
    phases = Phases()
    work = job_dir(settings.paths.staging_dir / f"restore-test-{source}-{secrets.token_hex(3)}", settings)
    started = time.monotonic()
    status, figures = Status.OK, {}
    try:
        access = recover.open_repository(destination, source)
        message, figures = TESTS[source](settings, engine, access, work, phases)
    except Mismatch as error:
        status, message = Status.RESTORE_MISMATCH, f"restore test failed: {error}"
    except (RestoreError, JobError, SourceError) as error:
        status, message = Status.FAILED, f"restore test could not run: {error}"
    finally:
        remove_tree(work)
    figures = {**figures, "phase_seconds": phases.seconds}
    log = logger.info if status is Status.OK else logger.error
    log("restore test of {} from {}: {} ({})", source, destination.name, message, phases.seconds)
    return RunResult(source, destination.name, status, message, figures.get("snapshot_id"),
                     time.monotonic() - started, figures)


# Vault -------------------------------------------------------------------------------------------

def test_vault(settings: Settings, engine: Engine, access, work: Path, phases: Phases):
    snapshot = recover.find_snapshot(engine, access, "vault")
    with phases.timed("fetch"):
        restored_bytes = recover.fetch(settings, engine, access, snapshot, work / "restored")
    file = work / "restored" / vault.INSIDE.lstrip("/") / vault.SNAPSHOT
    with phases.timed("verify_sums"):
        try:
            vault.verify_snapshot(file)
        except SourceError as error:
            raise Mismatch(str(error)) from None
    config = settings.restore_tests
    mounts = [Mount(file.parent, "/snapshot")]
    args = ["internal", "vault-probe", "--address", "", "--snapshot", f"/snapshot/{vault.SNAPSHOT}"]
    if config.vault_unseal_keys_file:
        mounts.append(Mount(config.vault_unseal_keys_file, "/run/secrets/unseal-keys"))
        args += ["--unseal-keys-file", "/run/secrets/unseal-keys"]
    if config.vault_canary:
        mounts.append(Mount(settings.secrets.approle_dir, "/run/secrets/approle"))
        canary = f"{settings.secrets.kv_prefix}/{config.vault_canary}"
        args += ["--approle-dir", "/run/secrets/approle", "--kv-mount", settings.secrets.kv_mount,
                 "--canary", canary, "--canary-key", config.vault_canary_key]
    with engine.isolated_network("restore-test-vault") as network, phases.timed("restore"):
        with engine.service("restore-test-vault", config.vault_image or settings.images.openbao, network,
                            timeout=config.timeout) as server:
            args[3] = f"http://{server.address}:8200"
            probe = engine.run(JobSpec(name="vault-probe", image=settings.images.runner, argv=tuple(args),
                                           mounts=tuple(mounts), networks=(network,), timeout=600))
    outcome = json.loads(probe.stdout[-1]) if probe.stdout else {}
    if not probe.ok or not outcome.get("accepted"):
        raise Mismatch(f"the restored server did not accept the snapshot: {outcome.get('detail') or probe.describe()}")
    if outcome.get("canary") == "missing":
        raise Mismatch(f"the restored Vault lacks the canary secret: {outcome.get('detail')}")
    verified = {"read": "snapshot restored, Vault unsealed, canary secret read back",
                "skipped": f"snapshot restored; {outcome.get('detail')}"}.get(outcome.get("canary"), outcome.get("detail"))
    return verified, {"snapshot_id": snapshot["id"], "restored_bytes": restored_bytes,
                      "verified": outcome.get("canary")}


def vault_probe(address: str, snapshot: Path, unseal_keys_file: Path | None, approle_dir: Path | None,
                kv_mount: str, canary: str, canary_key: str) -> dict:
    """Runs inside the isolated network (in the runner image): initialize the throwaway server,
    restore the snapshot into it, unseal with the production keys if given, read the canary."""
    deadline = time.monotonic() + 120
    while True:
        try:
            requests.get(f"{address}/v1/sys/health", timeout=5)
            break
        except requests.RequestException:
            if time.monotonic() > deadline:
                return {"accepted": False, "detail": f"the throwaway server at {address} never answered"}
            time.sleep(0.5)
    throwaway = hvac.Client(url=address)
    keys = throwaway.sys.initialize(secret_shares=1, secret_threshold=1)
    throwaway.sys.submit_unseal_key(keys["keys"][0])
    while _health_code(address) != 200:  # unsealed, then the raft node must become active (leader)
        if time.monotonic() > deadline:
            return {"accepted": False, "detail": f"the throwaway server at {address} did not become active"}
        time.sleep(0.5)
    response = requests.post(f"{address}/v1/sys/storage/raft/snapshot-force", data=snapshot.read_bytes(),
                             headers={"X-Vault-Token": keys["root_token"]}, timeout=300)
    if response.status_code not in (200, 204):
        return {"accepted": False, "detail": f"HTTP {response.status_code}: {response.text[:300]}"}
    return _verify_restored(address, unseal_keys_file, approle_dir, kv_mount, canary, canary_key)


def _verify_restored(address: str, unseal_keys_file: Path | None, approle_dir: Path | None, kv_mount: str,
                     canary: str, canary_key: str, patience: float = 180) -> dict:
    """The restore settles asynchronously (the server may answer unsealed, then seal with the
    snapshot's keys): keep looking until the canary reads, or a state holds for STEADY seconds."""
    keys = unseal_keys_file.read_text().split() if unseal_keys_file else []
    deadline, steady_since, last_state, error = time.monotonic() + patience, time.monotonic(), None, None
    while time.monotonic() < deadline:
        state = _health(address)
        if state != last_state:
            steady_since, last_state = time.monotonic(), state
        steady = time.monotonic() - steady_since >= STEADY
        if state == "sealed":
            if keys:
                for key in keys:
                    requests.put(f"{address}/v1/sys/unseal", json={"key": key}, timeout=10)
            elif steady:
                return {"accepted": True, "canary": "skipped", "detail": "the restored Vault is sealed and no unseal "
                        "keys are configured: only the snapshot's structure and its acceptance were verified"}
        elif state == "unsealed":
            if not canary or not approle_dir:
                if steady:
                    return {"accepted": True, "canary": "skipped", "detail": "no canary configured: data not read back"}
            else:
                try:
                    data = _read_canary(address, approle_dir, kv_mount, canary)
                except (hvac.exceptions.VaultError, requests.RequestException) as caught:
                    error = caught
                else:
                    if data.get(canary_key):
                        return {"accepted": True, "canary": "read", "detail": f"{kv_mount}/{canary} read back"}
                    return {"accepted": True, "canary": "missing", "detail": f"{kv_mount}/{canary} has no {canary_key!r}"}
        time.sleep(1)
    detail = f"{kv_mount}/{canary}: {type(error).__name__}" if error else f"the restored Vault stayed {last_state}"
    return {"accepted": True, "canary": "missing", "detail": detail}


STEADY = 8


def _health_code(address: str) -> int:
    try:
        return requests.get(f"{address}/v1/sys/health", timeout=5).status_code
    except requests.RequestException:
        return 0


def _health(address: str) -> str:
    return {200: "unsealed", 429: "unsealed", 473: "unsealed", 503: "sealed"}.get(_health_code(address), "down")


def _read_canary(address: str, approle_dir: Path, kv_mount: str, canary: str) -> dict:
    client = hvac.Client(url=address)
    client.auth.approle.login(role_id=(approle_dir / "role-id").read_text().strip(),
                              secret_id=(approle_dir / "secret-id").read_text().strip())
    return client.secrets.kv.v2.read_secret_version(path=canary, mount_point=kv_mount,
                                                    raise_on_deleted_version=True)["data"]["data"]


# PostgreSQL --------------------------------------------------------------------------------------

def test_postgres(settings: Settings, engine: Engine, access, work: Path, phases: Phases):
    snapshot = recover.find_snapshot(engine, access, "postgres")
    try:
        sidecar = recover.find_snapshot(engine, access, f"for:{snapshot['id']}")
    except RestoreError:
        raise Mismatch(f"snapshot {snapshot['id'][:8]} has no manifest to compare with") from None
    with phases.timed("fetch"):
        restored_bytes = recover.fetch(settings, engine, access, snapshot, work / "dump")
        recover.fetch(settings, engine, access, sidecar, work / "manifest")
    expected = json.loads((work / "manifest" / "sidecar" / postgres.MANIFEST).read_text())
    production = _production_address(settings, engine)
    with engine.isolated_network("restore-test-postgres") as network:
        starting = time.monotonic()
        with engine.service("restore-test-postgres", settings.restore_tests.postgres_image, network,
                            env={"POSTGRES_HOST_AUTH_METHOD": "trust"}, timeout=settings.restore_tests.timeout) as server:
            _wait_for_postgres(engine, server)
            phases.seconds["start"] = round(time.monotonic() - starting, 2)
            isolation = _isolation(engine, server, production)
            with phases.timed("load"):
                ok, said = recover.load_dump(settings, engine, work / "dump" / postgres.DUMP_FILENAME, server.address,
                                             5432, THROWAWAY_USER, (network,))
            if not ok:
                raise Mismatch(f"the dump did not load: {said}")
            with phases.timed("verify"):
                actual = _manifest_of(settings, engine, server.address, network, work / "verify")
    differences = compare_manifests(expected, actual)
    if differences:
        raise Mismatch("; ".join(differences[:10]))
    tables = sum(len(tables) for tables in expected["databases"].values())
    return (f"{tables} tables in {len(expected['databases'])} databases restored with equal rows",
            {"snapshot_id": snapshot["id"], "restored_bytes": restored_bytes, "tables": tables, "isolation": isolation})


def _production_address(settings: Settings, engine: Engine) -> str | None:
    if not settings.sources.postgres.enabled:
        return None
    status = engine.container_status(settings.sources.postgres.container)
    return next(iter(status.addresses.values()), None) if status.exists else None


def _wait_for_postgres(engine: Engine, server) -> None:
    deadline = time.monotonic() + 120
    while engine.exec_in(server.name, ["pg_isready", "-h", server.address, "-q"]).exit_code != 0:
        if time.monotonic() > deadline:
            raise RestoreError("the throwaway PostgreSQL did not start")
        time.sleep(0.5)


def _isolation(engine: Engine, server, production: str | None) -> str:
    """From inside the throwaway server: the production server must be out of reach."""
    if not production:
        return "not checked (no production PostgreSQL container)"
    probe = engine.exec_in(server.name, ["pg_isready", "-h", production, "-t", "3"])
    if probe.exit_code == 0:
        raise RestoreError(f"the isolated network reaches production PostgreSQL at {production}; test stopped")
    return f"production PostgreSQL at {production} unreachable"


def _manifest_of(settings: Settings, engine: Engine, host: str, network: str, out: Path) -> dict:
    job_dir(out, settings)
    script = ('dump-with-manifest --manifest /out/manifest.json -- pg_dumpall -h "$0" -U postgres --no-password'
              ' > /dev/null')
    result = engine.run(JobSpec(name="verify-dump", argv=("sh", "-c", script, host), networks=(network,),
                                mounts=(Mount(out, "/out", read_only=False),), timeout=settings.restore_tests.timeout))
    if not result.ok:
        raise RestoreError(f"could not dump the restored server: {' '.join(result.output_tail[-2:])}")
    return json.loads((out / "manifest.json").read_text())


def compare_manifests(expected: dict, actual: dict) -> list[str]:
    """Every table of the backup's manifest must be in the restored server, with equal rows.
    Checksums are compared only when both manifests were made the same way (an older backup's
    manifest hashed rows differently), row counts always."""
    same_checksums = expected.get("format", 1) == actual.get("format", 1)
    differences = []
    for database, tables in expected["databases"].items():
        for table, figures in tables.items():
            found = actual["databases"].get(database, {}).get(table)
            where = f"{database}: {table}"
            if found is None:
                differences.append(f"{where} is missing")
            elif found["rows"] != figures["rows"]:
                differences.append(f"{where} has {found['rows']} rows, the backup had {figures['rows']}")
            elif same_checksums and found["checksum"] != figures["checksum"]:
                differences.append(f"{where}: row contents differ from the backup")
    return differences


# MinIO -------------------------------------------------------------------------------------------

def test_minio(settings: Settings, engine: Engine, access, work: Path, phases: Phases):
    snapshot = recover.find_snapshot(engine, access, "minio")
    with phases.timed("fetch"):
        restored_bytes = recover.fetch(settings, engine, access, snapshot, work / "restored")
    root = work / "restored" / minio.INSIDE.lstrip("/")
    with phases.timed("verify"):
        try:
            manifest = json.loads((root / minio.MANIFEST).read_text())
        except FileNotFoundError:
            raise Mismatch("the snapshot has no manifest") from None
        differences = compare_objects(manifest, root / minio.OBJECTS)
    if differences:
        raise Mismatch("; ".join(differences[:10]))
    figures = {"snapshot_id": snapshot["id"], "restored_bytes": restored_bytes, "objects": len(manifest["objects"])}
    message = f"{len(manifest['objects'])} objects restored with equal size, checksum and recorded metadata"
    if settings.restore_tests.s3_image:
        with phases.timed("s3"):
            differences = through_s3(settings, engine, root, manifest, work)
        if differences:
            raise Mismatch("through the S3 API: " + "; ".join(differences[:10]))
        figures["s3_compared"] = len(manifest["objects"])
        message += ", and loaded into a throwaway S3 server with equal content types and metadata"
    return message, figures


def through_s3(settings: Settings, engine: Engine, root: Path, manifest: dict, work: Path) -> list[str]:
    """Upload the restored objects into a throwaway S3 server, list them back through its API, compare."""
    credentials = work / "s3-credentials"
    credentials.write_text("[default]\naws_access_key_id = restore-test\naws_secret_access_key = restore-test-key\n")
    credentials.chmod(0o400)
    hand_to_job_user(credentials, settings)
    with engine.isolated_network("restore-test-s3") as network:
        with engine.service("restore-test-s3", settings.restore_tests.s3_image, network,
                            timeout=settings.restore_tests.timeout) as server:
            endpoint = f"http://{server.address}:9000"
            recover.upload_objects(settings, engine, root, endpoint, credentials, network, work / "upload")
            listing = work / "listing"
            job_dir(listing, settings)
            argv = ("sh", "-c", 'exec "$@" > /listing/objects.json', "list", "rclone", "lsjson", "--recursive",
                    "--files-only", "--metadata", "--hash", "target:")
            result = engine.run(JobSpec(
                name="list-s3", argv=argv, networks=(network,),
                mounts=(Mount(work / "upload", "/work"), Mount(listing, "/listing", read_only=False),
                        Mount(credentials, minio.CREDENTIALS)),
                env={"RCLONE_CONFIG": "/work/rclone.conf", "AWS_SHARED_CREDENTIALS_FILE": minio.CREDENTIALS}))
            if not result.ok:
                raise RestoreError(f"could not list the throwaway S3 server: {' '.join(result.output_tail[-2:])}")
    found = {item["Path"]: item for item in json.loads((listing / "objects.json").read_text())}
    differences = [f"{path} is missing" for path in sorted(manifest["objects"].keys() - found.keys())]
    for path, entry in sorted(manifest["objects"].items()):
        item = found.get(path)
        if item is None:
            continue
        user = {k: v for k, v in (entry.get("metadata") or {}).items() if k not in recover.SYSTEM_METADATA}
        got = {k: v for k, v in (item.get("Metadata") or {}).items() if k in user}
        if item["Size"] != entry["size"]:
            differences.append(f"{path} has {item['Size']} bytes, the backup had {entry['size']}")
        elif entry.get("md5") and (item.get("Hashes") or {}).get("md5") != entry["md5"]:
            differences.append(f"{path}: content differs")
        elif item.get("MimeType") != entry.get("content_type"):
            differences.append(f"{path}: content type {item.get('MimeType')}, the backup had {entry.get('content_type')}")
        elif got != user:
            differences.append(f"{path}: metadata {got}, the backup had {user}")
    return differences


def compare_objects(manifest: dict, objects: Path) -> list[str]:
    differences = []
    present = {str(p.relative_to(objects)) for p in objects.rglob("*") if p.is_file()} if objects.exists() else set()
    for path, entry in manifest["objects"].items():
        file = objects / path
        if path not in present:
            differences.append(f"{path} is missing")
        elif file.stat().st_size != entry["size"]:
            differences.append(f"{path} has {file.stat().st_size} bytes, the backup had {entry['size']}")
        elif minio.sha256_of(file) != entry["sha256"]:
            differences.append(f"{path}: content differs from the backup")
        elif entry.get("content_type") is None or "metadata" not in entry:
            differences.append(f"{path}: the manifest lost its content type or metadata")
    differences += [f"{path} is in the snapshot but not in its manifest" for path in sorted(present - manifest["objects"].keys())]
    return differences


TESTS = {"vault": test_vault, "postgres": test_postgres, "minio": test_minio}
