"""The Vault restore test's probe, run inside the isolated network in the runner image
(`python3 -m runner.sources.vault.probe`): initialize the throwaway server, restore the snapshot
into it, unseal it with the production keys if given, read the canary secret back. It prints one
JSON object: whether the snapshot was accepted, and what could be verified."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import hvac
import requests

STEADY = 8


def vault_probe(address: str, snapshot: Path, unseal_keys_file: Path | None, approle_dir: Path | None,
                kv_mount: str, canary: str, canary_key: str) -> dict[str, object]:
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
                    return {"accepted": True, "canary": "missing",
                            "detail": f"{kv_mount}/{canary} has no {canary_key!r}"}
        time.sleep(1)
    detail = f"{kv_mount}/{canary}: {type(error).__name__}" if error else f"the restored Vault stayed {last_state}"
    return {"accepted": True, "canary": "missing", "detail": detail}




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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python3 -m runner.sources.vault.probe", description=__doc__)
    parser.add_argument("--address", required=True)
    parser.add_argument("--snapshot", required=True, type=Path)
    parser.add_argument("--unseal-keys-file", type=Path)
    parser.add_argument("--approle-dir", type=Path)
    parser.add_argument("--kv-mount", default="secret")
    parser.add_argument("--canary", default="")
    parser.add_argument("--canary-key", default="password")
    args = parser.parse_args(argv)
    print(json.dumps(vault_probe(args.address, args.snapshot, args.unseal_keys_file, args.approle_dir,
                                 args.kv_mount, args.canary, args.canary_key)))


if __name__ == "__main__":
    main()
