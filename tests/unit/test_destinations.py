import base64
import json
import socket
import struct
import textwrap
import threading
from pathlib import Path

import pytest

from runner import destinations, rclone
from runner.destinations import DestinationUnavailable, GDrive, Nas, PrivateKey, RepositoryMissing, private_key
from runner.settings import GDriveDestination, Settings


def settings_with(tmp_path, **destination_configs) -> Settings:
    return Settings(paths={"state_dir": tmp_path / "state", "staging_dir": tmp_path / "staging",
                           "cache_dir": tmp_path / "cache", "secrets_dir": tmp_path / "secrets"},
                    destinations=destination_configs)


def secret(path: Path, content: str = "x", mode: int = 0o400) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    path.chmod(mode)
    return path


def test_default_is_one_local_destination(tmp_path):
    [only] = destinations.configured(Settings())
    assert only.name == "local" and only.kind == "local"
    assert only.describe("vault") == "/var/lib/offsite-backup/repositories/vault"


def test_password_files_per_source_with_destination_override(tmp_path):
    settings = settings_with(tmp_path, a={"kind": "local"}, b={"kind": "local", "password_file": "/keys/{source}-b"})
    a, b = destinations.configured(settings)
    assert a.password_file("vault") == tmp_path / "secrets" / "restic-vault.password"
    assert a.password_file("postgres") == tmp_path / "secrets" / "restic-postgres.password"
    assert b.password_file("vault") == Path("/keys/vault-b")


def test_disabled_destinations_are_skipped_unless_named(tmp_path):
    settings = settings_with(tmp_path, on={"kind": "local"}, off={"kind": "local", "enabled": False})
    assert [d.name for d in destinations.configured(settings)] == ["on"]
    assert [d.name for d in destinations.configured(settings, ["off"])] == ["off"]
    with pytest.raises(ValueError, match="no destination named nope"):
        destinations.configured(settings, ["nope"])


def test_local_backup_access_requires_an_initialized_repository(tmp_path):
    settings = settings_with(tmp_path, local={"kind": "local", "path": str(tmp_path / "repos" / "{source}")})
    secret(tmp_path / "secrets" / "restic-files.password")
    [local] = destinations.configured(settings)
    with pytest.raises(RepositoryMissing, match="runner repo init --destination local --source files"):
        local.access("files")
    assert not (tmp_path / "repos").exists()


def test_password_file_must_be_private(tmp_path):
    settings = settings_with(tmp_path, local={"kind": "local"})
    secret(tmp_path / "secrets" / "restic-files.password", mode=0o644)
    [local] = destinations.configured(settings)
    with pytest.raises(DestinationUnavailable, match="readable by group or others"):
        local.access("files")


def nas(tmp_path, **overrides) -> Nas:
    settings = settings_with(tmp_path, nas={"kind": "nas", "host": "nas.tail.ts.net", "port": 2222, **overrides})
    return destinations.configured(settings)[0]


def test_ssh_command_is_strict_and_keeps_links_alive(tmp_path):
    command = nas(tmp_path, connect_timeout=7, keepalive_interval=20, keepalive_count=3).ssh_command()
    for option in ("StrictHostKeyChecking=yes", "UpdateHostKeys=no", "BatchMode=yes", "GlobalKnownHostsFile=/dev/null",
                   f"UserKnownHostsFile={Nas.KNOWN_HOSTS}", "ConnectTimeout=7", "ServerAliveInterval=20",
                   "ServerAliveCountMax=3", "PasswordAuthentication=no"):
        assert f"-o {option}" in command
    assert command.startswith(f"ssh -F /dev/null -i {Nas.KEY} ")
    assert command.endswith("-p 2222 backup@nas.tail.ts.net -s sftp")


def test_nas_defaults_follow_the_specification(tmp_path):
    destination = nas(tmp_path)
    assert destination.describe("vault") == "sftp:backup@nas.tail.ts.net:/backups/homeserver/vault"
    assert destination.config.bandwidth_limit == 10_000_000
    assert destination.key_file == tmp_path / "secrets" / "nas-ssh-key"
    assert destination.known_hosts_file == tmp_path / "secrets" / "nas-known_hosts"


def test_nas_access_limits_bandwidth_both_ways(tmp_path):
    destination = nas(tmp_path)
    secret(tmp_path / "secrets" / "restic-vault.password")
    access = destination.access("vault")
    assert access.repository.limit_upload_kib == access.repository.limit_download_kib == 10_000_000 // 1024
    assert access.networks == ("podman",)
    assert {m.target for m in access.mounts} >= {Nas.KEY, Nas.KNOWN_HOSTS, destinations.PASSWORD}
    assert all(m.read_only for m in access.mounts if m.target != destinations.CACHE)


def test_nas_preflight_names_missing_key(tmp_path):
    with pytest.raises(DestinationUnavailable, match="SSH private key of nas .*nas-ssh-key does not exist"):
        nas(tmp_path).preflight()


def test_nas_preflight_fails_fast_on_a_closed_port(tmp_path):
    destination = nas(tmp_path, host="127.0.0.1", port=free_port(), connect_timeout=2)
    secret(destination.key_file, openssh_key("ssh-ed25519"))
    secret(destination.known_hosts_file)
    with pytest.raises(DestinationUnavailable, match=r"cannot reach NAS 127\.0\.0\.1 port \d+"):
        destination.preflight()


def test_nas_preflight_rejects_a_port_that_is_not_ssh(tmp_path):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        threading.Thread(target=lambda: server.accept()[0].sendall(b"HTTP/1.1 400 Bad Request\r\n"),
                         daemon=True).start()
        with pytest.raises(DestinationUnavailable, match="answers, but not as an SSH server"):
            destinations.wait_for_ssh("nas", "127.0.0.1", port, 2)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def drive(tmp_path, **overrides) -> GDrive:
    return destinations.configured(settings_with(tmp_path, gdrive={"kind": "gdrive", **overrides}))[0]


@pytest.mark.parametrize("content, problem", [
    ("not json", "is not JSON"),
    (json.dumps({"type": "authorized_user", "client_email": "a", "private_key": "b"}), "not a service-account key"),
    (json.dumps({"type": "service_account"}), "client_email, private_key"),
])
def test_drive_preflight_checks_the_service_account(tmp_path, content, problem):
    destination = drive(tmp_path)
    secret(destination.service_account_file, content)
    with pytest.raises(DestinationUnavailable, match=problem):
        destination.preflight()


def test_drive_remote_follows_the_specification():
    remote = rclone.drive_remote(GDriveDestination(kind="gdrive", impersonate="me@example.org"), "/run/secrets/sa.json")
    assert remote == {"type": "drive", "scope": "drive", "service_account_file": "/run/secrets/sa.json",
                      "chunk_size": "100M", "stop_on_upload_limit": "true", "impersonate": "me@example.org"}
    assert GDriveDestination(kind="gdrive").daily_upload_quota == 750_000_000_000


def test_rendered_rclone_config_is_ini():
    text = rclone.render_config({"gdrive": {"type": "drive", "scope": "drive"}})
    assert text == "[gdrive]\ntype = drive\nscope = drive\n"
    with pytest.raises(ValueError):
        rclone.render_config({"x": {"type": "drive\n[evil]"}})


def test_drive_access_writes_config_without_the_key(tmp_path):
    destination = drive(tmp_path)
    secret(destination.service_account_file, '{"private_key": "-----BEGIN PRIVATE KEY-----"}')
    secret(tmp_path / "secrets" / "restic-minio.password")
    access = destination.access("minio")
    assert access.repository.location == "rclone:gdrive:Backups/homeserver/minio"
    assert access.env == {"RCLONE_CONFIG": GDrive.RCLONE_CONFIG}
    config = next(m.source for m in access.mounts if m.target == GDrive.RCLONE_CONFIG)
    assert "PRIVATE KEY" not in config.read_text() and GDrive.SERVICE_ACCOUNT in config.read_text()


def armoured(label: str, data: bytes, headers: str = "") -> str:
    body = "\n".join(textwrap.wrap(base64.b64encode(data).decode(), 70))
    return f"-----BEGIN {label}-----\n{headers}{body}\n-----END {label}-----\n"


def openssh_key(key_type: str, cipher: str = "none") -> str:
    """A key file laid out as ssh-keygen writes it (openssh-key-v1), with dummy key material."""
    def string(value: bytes) -> bytes:
        return struct.pack(">I", len(value)) + value

    public = string(key_type.encode()) + string(bytes(32))
    kdf = b"none" if cipher == "none" else b"bcrypt"
    blob = (b"openssh-key-v1\0" + string(cipher.encode()) + string(kdf) + string(b"") + struct.pack(">I", 1)
            + string(public) + string(bytes(64)))
    return armoured("OPENSSH PRIVATE KEY", blob)


# PKCS#8 PrivateKeyInfo: version 0, then the algorithm's object identifier
PKCS8_ED25519 = bytes.fromhex("302e020100300506032b657004220420") + bytes(32)
PKCS8_RSA = bytes.fromhex("308204bd020100300d06092a864886f70d0101010500048204a7") + bytes(64)


@pytest.mark.parametrize("text, found", [
    (openssh_key("ssh-ed25519"), PrivateKey("ssh-ed25519", "OpenSSH")),
    (openssh_key("ssh-ed25519", cipher="aes256-ctr"), PrivateKey("ssh-ed25519", "OpenSSH", encrypted=True)),
    (openssh_key("ssh-rsa"), PrivateKey("ssh-rsa", "OpenSSH")),
    (openssh_key("ecdsa-sha2-nistp256"), PrivateKey("ecdsa-sha2-nistp256", "OpenSSH")),
    (openssh_key("sk-ssh-ed25519@openssh.com"), PrivateKey("sk-ssh-ed25519@openssh.com", "OpenSSH")),
    (armoured("RSA PRIVATE KEY", bytes(600)), PrivateKey("ssh-rsa", "PEM")),
    (armoured("RSA PRIVATE KEY", bytes(600), "Proc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00FF\n\n"),
     PrivateKey("ssh-rsa", "PEM", encrypted=True)),
    (armoured("EC PRIVATE KEY", bytes(100)), PrivateKey("ecdsa", "PEM")),
    (armoured("PRIVATE KEY", PKCS8_RSA), PrivateKey("ssh-rsa", "PKCS#8")),
    (armoured("PRIVATE KEY", PKCS8_ED25519), PrivateKey("ssh-ed25519", "PKCS#8")),
    (armoured("ENCRYPTED PRIVATE KEY", bytes(100)), PrivateKey("", "PKCS#8", encrypted=True)),
])
def test_private_key_type_is_read_from_the_file(text, found):
    assert private_key(text) == found


@pytest.mark.parametrize("text, described", [
    ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPglwKleQ6LNglAByJatb15cu/VXSDTs8M1ClmBAbX7O runner\n",
     "not an SSH private key (no '-----BEGIN ... PRIVATE KEY-----' line)"),
    (armoured("CERTIFICATE", bytes(10)), "not an SSH private key (a 'CERTIFICATE' block)"),
    (armoured("OPENSSH PRIVATE KEY", b"openssh-key-v1\0\0\0"), "not an SSH private key (a damaged OpenSSH key)"),
    (openssh_key("ssh-rsa"), "a key of type ssh-rsa in OpenSSH format"),
    (armoured("RSA PRIVATE KEY", bytes(600), "Proc-Type: 4,ENCRYPTED\n\n"),
     "a key of type ssh-rsa in PEM format, protected by a passphrase"),
])
def test_what_a_key_file_is_described_as(text, described):
    assert private_key(text).describe() == described


@pytest.mark.parametrize("text, described", [
    (armoured("RSA PRIVATE KEY", bytes(600)), "is a key of type ssh-rsa in PEM format;"),
    (openssh_key("ecdsa-sha2-nistp256"), "is a key of type ecdsa-sha2-nistp256 in OpenSSH format;"),
    (openssh_key("ssh-ed25519", cipher="aes256-ctr"), "in OpenSSH format, protected by a passphrase;"),
    (armoured("PRIVATE KEY", PKCS8_ED25519), "is a key of type ssh-ed25519 in PKCS#8 format;"),
])
def test_nas_preflight_refuses_a_key_that_is_not_ed25519_before_connecting(tmp_path, text, described):
    destination = nas(tmp_path, host="127.0.0.1", port=free_port(), connect_timeout=2)
    secret(destination.key_file, text)
    secret(destination.known_hosts_file)
    with pytest.raises(DestinationUnavailable) as caught:
        destination.preflight()
    message = str(caught.value)
    assert message.startswith(f"SSH private key of nas {destination.key_file} ")
    assert described in message
    assert "ssh-keygen -t ed25519 -N '' " in message and "vault kv patch secret/offsite-backup/nas/nas " in message

