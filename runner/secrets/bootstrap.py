"""`runner vault bootstrap`: prepare Vault for the backups with an administrator token given once.

Creates what is missing and leaves the rest alone: the KV v2 engine and AppRole auth if absent,
the least-privilege policy, the AppRole, its role-id and secret-id files, and a generated password
for each repository whose password is not in Vault yet (never overwriting one: written with
check-and-set 0). Reports the secrets an administrator still has to put in Vault.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path

import hvac
import requests

from runner import logs
from runner.secrets.agent import policy
from runner.secrets.catalog import catalog
from runner.settings import Settings
from runner.workspace import hand_to_job_user, job_dir, write_atomically

TOKEN_TTL = "1h"
TOKEN_MAX_TTL = "24h"


class BootstrapError(Exception):
    pass


@dataclass
class Report:
    created: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # secrets the administrator must still provide


def admin_client(settings: Settings, token: str) -> hvac.Client:
    logs.register_secret(token)
    config = settings.sources.vault
    client = hvac.Client(url=config.address, token=token, verify=str(config.ca_file) if config.ca_file else True,
                         timeout=30)
    try:
        if not client.is_authenticated():
            raise BootstrapError(f"Vault at {config.address} refused the administrator token")
    except requests.RequestException as error:
        raise BootstrapError(f"Vault at {config.address} is unreachable: {error}") from None
    return client


def bootstrap(settings: Settings, token: str) -> Report:
    client = admin_client(settings, token)
    report = Report()
    try:
        _engines(settings, client, report)
        _policy(settings, client, report)
        _approle(settings, client, report)
        _secrets(settings, client, report)
    except hvac.exceptions.VaultError as error:
        raise BootstrapError(f"Vault refused a bootstrap step: {error}") from None
    return report


def _engines(settings: Settings, client: hvac.Client, report: Report) -> None:
    mount = settings.secrets.kv_mount
    engines = client.sys.list_mounted_secrets_engines()["data"]
    if f"{mount}/" not in engines:
        client.sys.enable_secrets_engine("kv", path=mount, options={"version": "2"})
        report.created.append(f"KV version 2 secrets engine at {mount}/")
    elif str((engines[f"{mount}/"].get("options") or {}).get("version")) != "2":
        raise BootstrapError(f"secrets.kv_mount {mount!r} is not a KV version 2 engine")
    if "approle/" not in client.sys.list_auth_methods()["data"]:
        client.sys.enable_auth_method("approle")
        report.created.append("AppRole auth method at auth/approle")


def _policy(settings: Settings, client: hvac.Client, report: Report) -> None:
    name, wanted = settings.secrets.policy, policy(settings)
    try:
        current = client.sys.read_policy(name)["data"]["rules"]
    except hvac.exceptions.InvalidPath:
        current = None
    if current == wanted:
        report.unchanged.append(f"policy {name}")
        return
    client.sys.create_or_update_policy(name, wanted)
    report.created.append(f"policy {name}" + (" (updated)" if current is not None else ""))


def _approle(settings: Settings, client: hvac.Client, report: Report) -> None:
    role, directory = settings.secrets.approle, settings.secrets.approle_dir
    client.auth.approle.create_or_update_approle(
        role, token_policies=[settings.secrets.policy], token_ttl=TOKEN_TTL, token_max_ttl=TOKEN_MAX_TTL,
        token_no_default_policy=True, secret_id_num_uses=0, secret_id_ttl="0",
    )
    report.created.append(f"AppRole {role} (policy {settings.secrets.policy}, "
                          f"tokens {TOKEN_TTL}, at most {TOKEN_MAX_TTL})")
    job_dir(directory, settings)  # private, and readable by the agent, which runs as the job user
    role_id = client.auth.approle.read_role_id(role)["data"]["role_id"]
    role_id_file = directory / "role-id"
    if role_id_file.exists() and role_id_file.read_text().strip() == role_id:
        report.unchanged.append(f"role-id file {role_id_file}")
    else:
        _private(settings, role_id_file, role_id)
        report.created.append(f"role-id file {role_id_file}")
    secret_id_file = directory / "secret-id"
    if secret_id_file.exists():
        report.unchanged.append(f"secret-id file {secret_id_file} (delete it and re-run to issue a new one)")
    else:
        secret_id = client.auth.approle.generate_secret_id(role)["data"]["secret_id"]
        logs.register_secret(secret_id)
        _private(settings, secret_id_file, secret_id)
        report.created.append(f"secret-id file {secret_id_file}")


def _private(settings: Settings, path: Path, text: str) -> None:
    write_atomically(path, text, mode=0o400)
    hand_to_job_user(path, settings)  # the agent runs as the job user


def _read(settings: Settings, client: hvac.Client, kv_path: str) -> dict | None:
    try:
        return client.secrets.kv.v2.read_secret_version(
            path=f"{settings.secrets.kv_prefix}/{kv_path}", mount_point=settings.secrets.kv_mount,
            raise_on_deleted_version=True)["data"]["data"]
    except hvac.exceptions.InvalidPath:
        return None


def _secrets(settings: Settings, client: hvac.Client, report: Report) -> None:
    seen = set()
    for secret in catalog(settings):
        if secret.agent_token or (secret.kv_path, secret.keys) in seen:
            continue
        seen.add((secret.kv_path, secret.keys))
        where = f"{settings.secrets.kv_mount}/{settings.secrets.kv_prefix}/{secret.kv_path}"
        data = _read(settings, client, secret.kv_path)
        if secret.generated:
            if data and all(data.get(k) for k in secret.keys):
                report.unchanged.append(f"{where} ({secret.purpose})")
                continue
            value = secrets.token_urlsafe(36)
            logs.register_secret(value)
            try:
                client.secrets.kv.v2.create_or_update_secret(
                    path=f"{settings.secrets.kv_prefix}/{secret.kv_path}", secret={"password": value},
                    cas=0, mount_point=settings.secrets.kv_mount)
            except hvac.exceptions.InvalidRequest:  # written meanwhile by someone else: keep theirs
                report.unchanged.append(f"{where} ({secret.purpose})")
                continue
            report.created.append(f"{where}: generated {secret.purpose}")
            continue
        absent = [k for k in secret.keys if not (data or {}).get(k)]
        if absent:
            report.missing.append(f"{where}: {', '.join(absent)} ({secret.purpose})")
