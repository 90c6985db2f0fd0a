"""Vault's restore test: the latest snapshot's sums verified, then restored into a throwaway
OpenBao/Vault on an isolated network; with the production unseal keys it is unsealed and a canary
secret read back (the probe, runner/sources/vault/probe.py, does that inside the network)."""

from __future__ import annotations

import json

from runner.engine import JobSpec, Mount
from runner.restoring import Mismatch, RestoreError, Trial, Verified
from runner.secrets.files import SecretFileError, check_secret_file
from runner.sources.base import SourceError
from runner.sources.vault.backup import INSIDE, NAME, SNAPSHOT, verify_snapshot

PROBE = ("python3", "-m", "runner.sources.vault.probe")
SECRETS = "/run/secrets"


def restore_test(trial: Trial) -> Verified:
    settings, engine, config = trial.settings, trial.engine, trial.settings.restore_tests
    if config.vault_unseal_keys_file:  # checked (and its keys masked) before anything is fetched
        try:
            check_secret_file(settings, config.vault_unseal_keys_file,
                              "unseal-keys file (restore_tests.vault_unseal_keys_file)")
        except SecretFileError as error:
            raise RestoreError(str(error)) from None
    with trial.repository() as repository, trial.phases.timed("fetch"):
        snapshot = repository.find(NAME)
        restored_bytes = repository.restore(snapshot, trial.work / "restored")
    file = trial.work / "restored" / INSIDE.lstrip("/") / SNAPSHOT
    with trial.phases.timed("verify_sums"):
        try:
            verify_snapshot(file)
        except SourceError as error:
            raise Mismatch(str(error)) from None
    mounts = [Mount(file.parent, "/snapshot")]
    args = ["--snapshot", f"/snapshot/{SNAPSHOT}"]
    if config.vault_unseal_keys_file:
        mounts.append(Mount(config.vault_unseal_keys_file, f"{SECRETS}/unseal-keys"))
        args += ["--unseal-keys-file", f"{SECRETS}/unseal-keys"]
    if config.vault_canary:
        mounts.append(Mount(settings.secrets.approle_dir, f"{SECRETS}/approle"))
        canary = f"{settings.secrets.kv_prefix}/{config.vault_canary}"
        args += ["--approle-dir", f"{SECRETS}/approle", "--kv-mount", settings.secrets.kv_mount,
                 "--canary", canary, "--canary-key", config.vault_canary_key]
    with engine.isolated_network("restore-test-vault") as network, trial.phases.timed("restore"):
        with engine.service("restore-test-vault", config.vault_image or settings.images.openbao, network,
                            timeout=config.timeout) as server:
            probe = engine.run(JobSpec(
                name="vault-probe", image=settings.images.runner, entrypoint=PROBE,
                argv=("--address", f"http://{server.address}:8200", *args), mounts=tuple(mounts),
                networks=(network,), timeout=600))
    try:
        outcome = json.loads(probe.stdout[-1]) if probe.stdout else {}
    except ValueError:
        outcome = {}
    if not isinstance(outcome, dict):
        outcome = {}
    if not probe.ok or not outcome.get("accepted"):
        raise Mismatch(f"the restored server did not accept the snapshot: {outcome.get('detail') or probe.describe()}")
    if outcome.get("canary") == "missing":
        raise Mismatch(f"the restored Vault lacks the canary secret: {outcome.get('detail')}")
    verified = {"read": "snapshot restored, Vault unsealed, canary secret read back",
                "skipped": f"snapshot restored; {outcome.get('detail')}"}.get(str(outcome.get("canary")),
                                                                             outcome.get("detail"))
    return Verified(str(verified), {"snapshot_id": snapshot.id, "restored_bytes": restored_bytes,
                                    "verified": outcome.get("canary")})
