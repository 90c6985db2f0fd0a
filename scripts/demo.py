"""The full trial on this machine (the README's main command): a home server stand-in from
compose.yaml, its secrets in Vault and rendered by the Vault Agent, backups of Vault, PostgreSQL and
MinIO to the NAS and to a local repository, the restore tests of all three, then the status and the
dashboard. Safe to run again. `demo.py down` removes it all.

Everything lives under $OFFSITE_DEMO (default /var/lib/offsite-demo) and $OFFSITE_DEMO_SECRETS
(default /run/offsite-demo/secrets, on the /run tmpfs).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import hvac
import requests
import tomli_w

PROJECT = Path(__file__).resolve().parents[1]
DEMO = Path(os.environ.get("OFFSITE_DEMO", "/var/lib/offsite-demo"))
SECRETS = Path(os.environ.get("OFFSITE_DEMO_SECRETS", "/run/offsite-demo/secrets"))
CONFIG = DEMO / "runner.toml"
VAULT = "http://127.0.0.1:8200"
NETWORK = "offsite-demo"
JOB_USER = (10001, 10001)
S3_KEYS = {"access_key": "demo-access-key", "secret_key": "demo-secret-key-for-the-s3-server"}
PG_PASSWORD = "demo-postgres-password"
TESTBED = ["testbed-postgres", "testbed-s3", "testbed-nas"]


def step(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def run(*argv, check: bool = True, capture: bool = False, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run([str(a) for a in argv], text=True, capture_output=capture, **kwargs)
    if check and result.returncode != 0:
        sys.exit(f"failed ({result.returncode}): {' '.join(map(str, argv))}\n{result.stderr or ''}")
    return result


def runner(*args, check: bool = True) -> subprocess.CompletedProcess:
    wide = {**os.environ, "COLUMNS": os.environ.get("COLUMNS", "160")}  # tables read better wide
    return run(sys.executable, "-m", "runner", "--config", CONFIG, *args, check=check, env=wide)


def compose(*args) -> None:
    env = {**os.environ, "OFFSITE_DEMO": str(DEMO), "OFFSITE_DEMO_SECRETS": str(SECRETS)}
    run("podman-compose", "-p", "offsite-demo", "-f", PROJECT / "compose.yaml", *args, env=env, capture=True)


def private(path: Path, text: str, owner=None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o400 if owner else 0o600)
    if owner:
        os.chown(path, *owner)
    return path


def address(container: str) -> str:
    inspected = json.loads(run("podman", "inspect", container, capture=True).stdout)[0]
    return inspected["NetworkSettings"]["Networks"][NETWORK]["IPAddress"]


def wait(what: str, ready, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            sys.exit(f"{what} did not become ready within {timeout:.0f} s")
        time.sleep(1)


def vault_state() -> int:
    try:
        return requests.get(f"{VAULT}/v1/sys/health", timeout=3).status_code
    except requests.RequestException:
        return 0


def up() -> None:
    step("building the images (skipped when unchanged)")
    run(sys.executable, "-m", "runner", "images", "build", "tools", "runner", "openbao", *TESTBED)

    step(f"preparing {DEMO} and the NAS's SSH key")
    DEMO.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = DEMO / "nas-key"
    if not key.exists():
        run("podman", "run", "--rm", "--user", "0", "-v", f"{DEMO}:/out", "localhost/offsite-backup/tools:latest",
            "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "offsite-demo", "-f", "/out/nas-key")
    (DEMO / "nas.env").write_text(f"AUTHORIZED_KEYS={(DEMO / 'nas-key.pub').read_text().strip()}\n")

    step("starting the home server: Vault, PostgreSQL, S3, NAS (compose.yaml)")
    compose("up", "-d", "vault", "postgres", "s3", "nas")
    wait("Vault", lambda: vault_state() in (200, 429, 501, 503))
    wait("PostgreSQL", lambda: run("podman", "exec", "offsite-demo-postgres", "pg_isready", "-q", "-h",
                                    address("offsite-demo-postgres"), check=False, capture=True).returncode == 0)

    step("initializing and unsealing Vault (the demo keeps its unseal key and root token in the demo directory)")
    init_file = DEMO / "vault-init.json"
    if vault_state() == 501:
        init = hvac.Client(url=VAULT).sys.initialize(secret_shares=1, secret_threshold=1)
        private(init_file, json.dumps({"unseal_key": init["keys"][0], "root_token": init["root_token"]}))
    init = json.loads(init_file.read_text())
    if vault_state() == 503:
        hvac.Client(url=VAULT).sys.submit_unseal_key(init["unseal_key"])
    wait("Vault to become active", lambda: vault_state() == 200)
    private(DEMO / "root-token", init["root_token"])
    private(DEMO / "unseal-keys", init["unseal_key"] + "\n", JOB_USER)

    step("filling S3 with sample buckets and objects")
    seed_s3(address("offsite-demo-s3"))

    step(f"writing the runner's configuration {CONFIG}")
    write_config()
    run(sys.executable, "-m", "runner", "config", "check", CONFIG)

    step("bootstrapping Vault: policy, AppRole, repository passwords")
    runner("vault", "bootstrap", "--token-file", DEMO / "root-token")

    step("storing the NAS key, PostgreSQL and S3 credentials in Vault")
    store_credentials(init["root_token"])

    step("starting the Vault Agent, which renders the secrets into " + str(SECRETS))
    SECRETS.mkdir(parents=True, exist_ok=True)
    SECRETS.chmod(0o700)
    os.chown(SECRETS, *JOB_USER)
    runner("vault", "agent-config", "-o", DEMO / "agent.hcl")
    compose("up", "-d", "agent")
    wait("the rendered secrets", lambda: all((SECRETS / name).exists() for name in (
        "restic-vault.password", "restic-postgres.password", "restic-minio.password", "nas-ssh-key",
        "nas-known_hosts", "postgres.pgpass", "minio-credentials", "vault-snapshot-token")))

    step("initializing the repositories on the NAS and in the local directory")
    runner("repo", "init")

    step("backing up Vault, PostgreSQL and MinIO to the NAS and to the local repository")
    runner("exec", "backup", "all")

    step("restore tests: each source restored from the NAS into throwaway containers and compared")
    runner("exec", "restore-test", "all")

    step("writing the recovery kit (keep it offline in real life)")
    runner("recovery-kit", "--output", DEMO / "recovery-kit.md", "--force")

    step("status")
    runner("status", check=False)
    runner("dashboard", "--output", DEMO / "dashboard.html")
    print(f"\nDashboard: {DEMO / 'dashboard.html'}\nConfiguration: {CONFIG}\n"
          f"Try: {sys.executable} -m runner --config {CONFIG} repo list")


def seed_s3(host: str) -> None:
    import boto3

    s3 = boto3.client("s3", endpoint_url=f"http://{host}:9000", region_name="us-east-1",
                      aws_access_key_id=S3_KEYS["access_key"], aws_secret_access_key=S3_KEYS["secret_key"])
    wait("S3", lambda: _answers(s3))
    if s3.list_buckets()["Buckets"]:
        print("already filled")
        return
    rng = __import__("random").Random(42)
    kinds = [("photos", "jpg", "image/jpeg"), ("documents", "pdf", "application/pdf"),
             ("documents", "txt", "text/plain"), ("exports", "json", "application/json")]
    for bucket in {kind[0] for kind in kinds}:
        s3.create_bucket(Bucket=bucket)
    for index in range(80):
        bucket, extension, content_type = kinds[index % len(kinds)]
        size = rng.choice([2_000, 40_000, 300_000, 2_000_000])
        body = rng.randbytes(size) if extension in ("jpg", "pdf") else (f"line {index}\n" * (size // 8)).encode()
        s3.put_object(Bucket=bucket, Key=f"{2020 + index % 5}/item-{index:03d}.{extension}", Body=body,
                      ContentType=content_type, Metadata={"owner": f"user{index % 4}"})


def _answers(s3) -> bool:
    try:
        s3.list_buckets()
        return True
    except Exception:  # noqa: BLE001 - any error means "not yet"
        return False


def write_config() -> None:
    settings = {
        "paths": {"state_dir": str(DEMO / "state"), "staging_dir": str(DEMO / "staging"),
                  "cache_dir": str(DEMO / "cache"), "secrets_dir": str(SECRETS)},
        "secrets": {"approle_dir": str(DEMO / "approle"), "render_interval": "30s"},
        "destinations": {
            "nas": {"kind": "nas", "host": address("offsite-demo-nas"), "network": NETWORK, "bandwidth_limit": 0,
                    "path": "/backups/homeserver/{source}"},
            "local": {"kind": "local", "path": str(DEMO / "repositories" / "{source}")},
        },
        "sources": {
            # the Vault container's own address: the runner (on this host) and the agent (on the
            # compose network) both reach it there
            "vault": {"address": f"http://{address('offsite-demo-vault')}:8200"},
            "postgres": {"container": "offsite-demo-postgres", "network": NETWORK},
            "minio": {"endpoint": f"http://{address('offsite-demo-s3')}:9000", "network": NETWORK},
            "files": {"enabled": False},
        },
        "restore_tests": {"destination": "nas", "postgres_image": "localhost/offsite-backup/testbed-postgres:latest",
                          "vault_unseal_keys_file": str(DEMO / "unseal-keys")},
        "monitoring": {"dashboard_file": str(DEMO / "dashboard.html")},
    }
    CONFIG.write_text(tomli_w.dumps(settings))


def store_credentials(token: str) -> None:
    client = hvac.Client(url=VAULT, token=token)
    host_key = run("podman", "exec", "offsite-demo-nas", "cat", "/etc/ssh/ssh_host_ed25519_key.pub",
                   capture=True).stdout.split()[:2]
    values = {
        "nas/nas": {"private_key": (DEMO / "nas-key").read_text(),
                    "known_hosts": f"{address('offsite-demo-nas')} {' '.join(host_key)}"},
        "postgres": {"user": "postgres", "password": PG_PASSWORD},
        "minio": S3_KEYS,
    }
    for path, secret in values.items():
        client.secrets.kv.v2.create_or_update_secret(path=f"offsite-backup/{path}", secret=secret)


def down() -> None:
    step("removing the demo's containers, volumes and files")
    compose("down", "-v")
    for path in (DEMO, SECRETS):
        shutil.rmtree(path, ignore_errors=True)
    print("done")


if __name__ == "__main__":
    {"up": up, "down": down}[sys.argv[1] if len(sys.argv) > 1 else "up"]()
