"""Disaster-recovery drill on the demo (scripts/try first): Vault, PostgreSQL and MinIO restored
from the NAS into a fresh stack, with only what docs/disaster-recovery.md says a person has: the
recovery kit, the NAS key kept with it, and Vault's unseal key. Each step is the runbook's command;
each service is then checked against the original. Exits non-zero at the first difference.
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

import boto3
import hvac
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from demo import DEMO, JOB_USER, NETWORK, PG_PASSWORD, S3_KEYS, address, private, run, step  # noqa: E402

DRILL = DEMO / "drill"
CONFIG = DRILL / "runner.toml"
FRESH_VAULT = "http://127.0.0.1:8201"
FRESH = {"vault": "offsite-drill-vault", "postgres": "offsite-drill-postgres", "s3": "offsite-drill-s3"}


def runner(*args) -> str:
    result = run(sys.executable, "-m", "runner", "--config", CONFIG, *args, capture=True)
    print(result.stdout, end="")
    return result.stdout


def kit_passwords(kit: str, destination: str) -> dict[str, str]:
    passwords = {}
    for source in ("vault", "postgres", "minio"):
        section = kit.split(f"### {source} on {destination}", 1)[1]
        passwords[source] = re.search(r"Password: (\S+)", section).group(1)
    return passwords


def fresh_stack() -> None:
    step("a fresh home server: empty Vault, PostgreSQL and S3")
    for name in FRESH.values():
        run("podman", "rm", "-f", name, check=False, capture=True)
    run("podman", "run", "-d", "--name", FRESH["vault"], "--network", NETWORK, "-p", "127.0.0.1:8201:8200",
        "localhost/offsite-backup/openbao:latest", capture=True)
    run("podman", "run", "-d", "--name", FRESH["postgres"], "--network", NETWORK,
        "-e", f"POSTGRES_PASSWORD={PG_PASSWORD}", "localhost/offsite-backup/testbed-postgres:latest", capture=True)
    run("podman", "run", "-d", "--name", FRESH["s3"], "--network", NETWORK,
        "localhost/offsite-backup/testbed-s3:latest", capture=True)


def secrets_from_the_kit() -> None:
    step("1. the credentials, without Vault: repository passwords from the recovery kit, the NAS key kept with it")
    kit = (DEMO / "recovery-kit.md").read_text()
    secrets = DRILL / "secrets"
    secrets.mkdir(parents=True, exist_ok=True)
    for source, password in kit_passwords(kit, "nas").items():
        private(secrets / f"restic-{source}.password", password, JOB_USER)
    private(secrets / "nas-ssh-key", (DEMO / "nas-key").read_text(), JOB_USER)
    known_hosts = [line.strip() for line in kit.splitlines() if re.match(r"^\s{4}\S+ ssh-ed25519 ", line)]
    private(secrets / "nas-known_hosts", "\n".join(known_hosts) + "\n", JOB_USER)
    private(DRILL / "fresh.pgpass", f"*:*:*:postgres:{PG_PASSWORD}\n", JOB_USER)
    private(DRILL / "fresh-s3-credentials",
            f"[default]\naws_access_key_id = {S3_KEYS['access_key']}\n"
            f"aws_secret_access_key = {S3_KEYS['secret_key']}\n",
            JOB_USER)
    CONFIG.write_text(f'''[paths]
state_dir = "{DRILL / 'state'}"
staging_dir = "{DRILL / 'staging'}"
cache_dir = "{DRILL / 'cache'}"
secrets_dir = "{secrets}"

[destinations.nas]
kind = "nas"
host = "{address('offsite-demo-nas')}"
network = "{NETWORK}"
bandwidth_limit = 0
''')


def vault_step(original_root_token: str, unseal_key: str) -> None:
    step("2. Vault: the snapshot from the NAS, restored into the new Vault, unsealed with the original key")
    snapshot = DRILL / "vault.snap"
    runner("restore", "vault", "--destination", "nas", "--output", snapshot, "--force")
    wait(lambda: _status(FRESH_VAULT) == 501, "the new Vault")
    init = hvac.Client(url=FRESH_VAULT).sys.initialize(secret_shares=1, secret_threshold=1)
    hvac.Client(url=FRESH_VAULT).sys.submit_unseal_key(init["keys"][0])
    wait(lambda: _status(FRESH_VAULT) == 200, "the new Vault to unseal")
    run("podman", "cp", snapshot, f"{FRESH['vault']}:/tmp/vault.snap")
    run("podman", "exec", "-e", "VAULT_ADDR=http://127.0.0.1:8200", "-e", f"VAULT_TOKEN={init['root_token']}",
        FRESH["vault"], "bao", "operator", "raft", "snapshot", "restore", "-force", "/tmp/vault.snap")
    # the restore settles asynchronously: the server seals itself with the snapshot's keys
    password, deadline = None, time.monotonic() + 180
    while password is None and time.monotonic() < deadline:
        if _status(FRESH_VAULT) == 503:
            requests.put(f"{FRESH_VAULT}/v1/sys/unseal", json={"key": unseal_key}, timeout=10)
        try:
            password = hvac.Client(url=FRESH_VAULT, token=original_root_token).secrets.kv.v2.read_secret_version(
                path="offsite-backup/restic/vault", raise_on_deleted_version=True)["data"]["data"]["password"]
        except (hvac.exceptions.VaultError, requests.RequestException):
            time.sleep(1)
    expected = (DRILL / "secrets" / "restic-vault.password").read_text()
    check(password == expected, "Vault: the restored secrets are the original ones")


def postgres_step() -> None:
    step("3. PostgreSQL: the dump from the NAS, loaded into the new server")
    wait(lambda: run("podman", "exec", FRESH["postgres"], "pg_isready", "-q", "-h", address(FRESH["postgres"]),
                     check=False, capture=True).returncode == 0, "the new PostgreSQL")
    runner("restore", "postgres", "--destination", "nas", "--container", FRESH["postgres"],
           "--pgpass", DRILL / "fresh.pgpass")
    query = ("SELECT string_agg(n, ',' ORDER BY n) FROM (SELECT 'shop:' || count(*) n FROM orders UNION ALL "
             "SELECT 'items:' || count(*) FROM order_items UNION ALL "
             "SELECT 'sum:' || sum(price)::text FROM order_items) c")
    counts = [run("podman", "exec", container, "psql", "-qAtX", "-U", "postgres", "-d", "shop", "-c", query,
                  capture=True).stdout for container in ("offsite-demo-postgres", FRESH["postgres"])]
    check(counts[0] == counts[1], f"PostgreSQL: the restored shop database equals the original ({counts[1].strip()})")


def minio_step() -> None:
    step("4. MinIO: the objects from the NAS, uploaded into the new S3 server with their content types")
    endpoint = f"http://{address(FRESH['s3'])}:9000"
    runner("restore", "minio", "--destination", "nas", "--to-dir", DRILL / "minio", "--force", "--endpoint", endpoint,
           "--credentials-file", DRILL / "fresh-s3-credentials", "--network", NETWORK)
    listings = []
    for host in (address("offsite-demo-s3"), address(FRESH["s3"])):
        s3 = boto3.client("s3", endpoint_url=f"http://{host}:9000", region_name="us-east-1",
                          aws_access_key_id=S3_KEYS["access_key"], aws_secret_access_key=S3_KEYS["secret_key"])
        listing = {}
        for bucket in sorted(b["Name"] for b in s3.list_buckets()["Buckets"]):
            for item in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
                head = s3.head_object(Bucket=bucket, Key=item["Key"])
                listing[f"{bucket}/{item['Key']}"] = (item["Size"], head["ETag"], head["ContentType"],
                                                      head["Metadata"].get("owner"))
        listings.append(listing)
    check(listings[0] == listings[1], f"MinIO: {len(listings[1])} objects with equal bytes, content types and metadata")


def _status(url: str) -> int:
    try:
        return requests.get(f"{url}/v1/sys/health", timeout=3).status_code
    except requests.RequestException:
        return 0


def wait(ready, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            sys.exit(f"{what} did not become ready")
        time.sleep(1)


def check(ok: bool, what: str) -> None:
    print(("verified: " if ok else "MISMATCH: ") + what, flush=True)
    if not ok:
        sys.exit(1)


def main() -> None:
    init = json.loads((DEMO / "vault-init.json").read_text())
    fresh_stack()
    secrets_from_the_kit()
    vault_step(init["root_token"], init["unseal_key"])
    postgres_step()
    minio_step()
    step("the drill restored Vault, PostgreSQL and MinIO from the NAS; removing the fresh stack")
    for name in FRESH.values():
        run("podman", "rm", "-f", name, check=False, capture=True)


if __name__ == "__main__":
    main()
