"""Destinations: where a source's repository lives and what a job container needs to reach it.

Each destination kind turns its settings into a RepositoryAccess for one source: the restic
repository as the job container sees it, the files to mount, the network, and a preflight that
fails fast with a message naming what is wrong.
"""

from __future__ import annotations

import base64
import binascii
import configparser
import json
import re
import shlex
import socket
import struct
from dataclasses import dataclass, field
from pathlib import Path

from runner import rclone, restic
from runner.engine import Engine, JobSpec, Mount
from runner.secrets.files import (
    SecretFile,
    SecretFileError,
    check_secret_file,
    kv_value,
)
from runner.settings import (
    GDriveDestination,
    LocalDestination,
    NasDestination,
    S3Destination,
    Settings,
)
from runner.workspace import job_dir, write_atomically

SECRETS = "/run/secrets"
PASSWORD = f"{SECRETS}/restic-password"
CACHE = "/cache"
LOCAL_REPO = "/repo"


ED25519 = "ssh-ed25519"
_PEM = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", re.S)
_OPENSSH_MAGIC = b"openssh-key-v1\0"
_PEM_TYPES = {"RSA PRIVATE KEY": "ssh-rsa", "DSA PRIVATE KEY": "ssh-dss", "EC PRIVATE KEY": "ecdsa"}
# A PKCS#8 key names its algorithm by an object identifier (here DER-encoded, as it appears in the key).
_PKCS8_ALGORITHMS = {"06032b6570": ED25519, "06092a864886f70d010101": "ssh-rsa", "06072a8648ce3d0201": "ecdsa",
                     "06072a8648ce380401": "ssh-dss"}


class DestinationUnavailable(Exception):
    """The destination cannot be used now (unreachable, missing key...); other destinations go on."""


class RepositoryMissing(Exception):
    """No repository at the location: it is created only by `runner repo init`."""


@dataclass(frozen=True)
class RepositoryAccess:
    destination: str
    source: str
    location: str  # as a person reads it, e.g. sftp:backup@nas:/backups/homeserver/vault
    repository: restic.Repository
    mounts: tuple[Mount, ...]
    networks: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    timeout: int | None = None
    local_path: Path | None = None  # the repository's directory, when it is on this host


def init_hint(destination: str, source: str) -> str:
    return f"initialize it with `runner repo init --destination {destination} --source {source}`"


@dataclass(frozen=True)
class PrivateKey:
    """What an SSH private key file holds, read from its header and its unencrypted public part."""

    type: str  # as OpenSSH names it (ssh-ed25519, ssh-rsa, ecdsa-sha2-nistp256, ...); "" when unknown
    format: str  # "OpenSSH", "PEM", "PKCS#8", or what the file is instead
    encrypted: bool = False

    def describe(self) -> str:
        if self.format not in ("OpenSSH", "PEM", "PKCS#8"):
            return f"not an SSH private key ({self.format})"
        passphrase = ", protected by a passphrase" if self.encrypted else ""
        return f"a key of type {self.type or 'unknown'} in {self.format} format{passphrase}"


def private_key(text: str) -> PrivateKey:
    """The type and format of an SSH private key file's content (never its secret part)."""
    match = _PEM.search(text)
    if not match:
        return PrivateKey("", "no '-----BEGIN ... PRIVATE KEY-----' line")
    label, body = match.group(1), match.group(2)
    if label in _PEM_TYPES:  # the traditional PEM formats (ssh-keygen -m PEM for RSA, DSA, ECDSA)
        return PrivateKey(_PEM_TYPES[label], "PEM", encrypted="Proc-Type: 4,ENCRYPTED" in body)
    if label == "ENCRYPTED PRIVATE KEY":
        return PrivateKey("", "PKCS#8", encrypted=True)
    try:
        data = base64.b64decode("".join(body.split()), validate=True)
    except (binascii.Error, ValueError):
        return PrivateKey("", f"{label} with a body that is not base64")
    if label == "PRIVATE KEY":
        found = [name for oid, name in _PKCS8_ALGORITHMS.items() if bytes.fromhex(oid) in data[:32]]
        return PrivateKey(found[0] if found else "", "PKCS#8")
    if label != "OPENSSH PRIVATE KEY":
        return PrivateKey("", f"a '{label}' block")
    if not data.startswith(_OPENSSH_MAGIC):
        return PrivateKey("", "a damaged OpenSSH key")
    try:
        # openssh-key-v1: cipher, kdf, kdf options, number of keys, then the public key, which starts with its type
        fields, position = [], len(_OPENSSH_MAGIC)
        for _ in range(3):
            (length,) = struct.unpack_from(">I", data, position)
            fields.append(data[position + 4:position + 4 + length])
            position += 4 + length
        position += 8  # the number of keys (1), and the public key's length
        (length,) = struct.unpack_from(">I", data, position)
        key_type = data[position + 4:position + 4 + length].decode("ascii")
    except (struct.error, UnicodeDecodeError):
        return PrivateKey("", "a damaged OpenSSH key")
    return PrivateKey(key_type, "OpenSSH", encrypted=fields[0] != b"none")


class Destination:
    kind = ""

    def __init__(self, name: str, config, settings: Settings):
        self.name = name
        self.config = config
        self.settings = settings

    @property
    def quota(self) -> int:
        return self.config.daily_upload_quota

    def password_file(self, source: str) -> Path:
        template = self.config.password_file or self.settings.restic.password_file
        if template:
            return Path(template.format(source=source))
        return self.settings.paths.secrets_dir / f"restic-{source}.password"

    def secret_path(self, configured: Path | None, suffix: str) -> Path:
        return configured or self.settings.paths.secrets_dir / f"{self.name}-{suffix}"

    def preflight(self) -> None:
        """Raise DestinationUnavailable when the destination cannot be used now."""

    def secret_files(self) -> list[SecretFile]:
        """The files, besides the repository passwords, that Vault Agent renders for this destination."""
        return []

    def diagnose(self, engine: Engine, access: RepositoryAccess) -> str:
        """After restic failed to open the repository: what the transport itself says, if anything."""
        return ""

    def access(self, source: str, create: bool = False) -> RepositoryAccess:
        password = self.password_file(source)
        try:
            check_secret_file(self.settings, password, f"repository password file of {source} on {self.name}")
        except SecretFileError as error:
            raise DestinationUnavailable(str(error)) from None
        location, mounts, networks, env, options = self._reach(source, create)
        limit = max(1, self.config.bandwidth_limit // 1024) if self.config.bandwidth_limit else None
        cache = job_dir(self.settings.paths.cache_dir / "restic", self.settings)
        repository = restic.Repository(location, PASSWORD, cache_dir=CACHE, options=options,
                                       limit_upload_kib=limit, limit_download_kib=limit,
                                       compression=self.settings.restic.compression)
        return RepositoryAccess(
            destination=self.name, source=source, location=self.describe(source), repository=repository,
            mounts=(Mount(password, PASSWORD), Mount(cache, CACHE, read_only=False), *mounts),
            networks=networks, env=env, timeout=self.config.timeout, local_path=self.local_repository(source),
        )

    def local_repository(self, source: str) -> Path | None:
        return None

    def describe(self, source: str) -> str:
        raise NotImplementedError

    def _reach(self, source: str, create: bool):
        """(restic location, mounts, networks, environment, restic options) for one source."""
        raise NotImplementedError


class Local(Destination):
    kind = "local"
    config: LocalDestination

    def path(self, source: str) -> Path:
        return Path(self.config.path.format(source=source))

    def local_repository(self, source: str) -> Path | None:
        return self.path(source)

    def describe(self, source: str) -> str:
        return str(self.path(source))

    def _reach(self, source: str, create: bool):
        path = self.path(source)
        if create:
            job_dir(path, self.settings)
        elif not (path / "config").is_file():
            raise RepositoryMissing(f"no repository at {path}: {init_hint(self.name, source)}")
        return LOCAL_REPO, (Mount(path, LOCAL_REPO, read_only=False),), (), {}, ()


class Nas(Destination):
    kind = "nas"
    config: NasDestination
    KEY = f"{SECRETS}/ssh-key"
    KNOWN_HOSTS = f"{SECRETS}/known_hosts"

    @property
    def key_file(self) -> Path:
        return self.secret_path(self.config.private_key_file, "ssh-key")

    @property
    def known_hosts_file(self) -> Path:
        return self.secret_path(self.config.known_hosts_file, "known_hosts")

    def preflight(self) -> None:
        try:
            check_secret_file(self.settings, self.key_file, f"SSH private key of {self.name}")
            check_secret_file(self.settings, self.known_hosts_file, f"known_hosts file of {self.name}")
        except SecretFileError as error:
            raise DestinationUnavailable(str(error)) from None
        self.check_key()
        wait_for_ssh(self.name, self.config.host, self.config.port, self.config.connect_timeout)

    def check_key(self) -> None:
        """The key must be an ed25519 key without a passphrase (a job cannot enter one)."""
        found = private_key(self.key_file.read_text(errors="replace"))
        if found.type == ED25519 and found.format == "OpenSSH" and not found.encrypted:
            return
        secrets = self.settings.secrets
        raise DestinationUnavailable(
            f"SSH private key of {self.name} {self.key_file} is {found.describe()}; the NAS needs an ed25519 key "
            "without a passphrase, in OpenSSH format: make one with `ssh-keygen -t ed25519 -N '' -C offsite-backup "
            "-f id_ed25519`, add id_ed25519.pub to the NAS user's authorized_keys, and store the private key with "
            f"`vault kv patch {secrets.kv_mount}/{secrets.kv_prefix}/nas/{self.name} private_key=@id_ed25519`")

    def secret_files(self) -> list[SecretFile]:
        kv_path = f"nas/{self.name}"
        return [SecretFile(self.key_file, kv_path, ("private_key",), kv_value("private_key") + "\n",
                           f"SSH private key for {self.name}"),
                SecretFile(self.known_hosts_file, kv_path, ("known_hosts",), kv_value("known_hosts") + "\n",
                           f"pinned host key of {self.name}")]

    def ssh_command(self) -> str:
        c = self.config
        options = {
            "IdentitiesOnly": "yes", "UserKnownHostsFile": self.KNOWN_HOSTS, "GlobalKnownHostsFile": "/dev/null",
            "StrictHostKeyChecking": "yes", "UpdateHostKeys": "no", "BatchMode": "yes",
            "PasswordAuthentication": "no", "ConnectTimeout": str(c.connect_timeout),
            "ServerAliveInterval": str(c.keepalive_interval), "ServerAliveCountMax": str(c.keepalive_count),
        }
        flags = " ".join(f"-o {key}={value}" for key, value in options.items())
        return f"ssh -F /dev/null -i {self.KEY} {flags} -p {c.port} {c.user}@{c.host} -s sftp"

    def diagnose(self, engine: Engine, access: RepositoryAccess) -> str:
        # restic may exit before relaying ssh's own message ("Host key verification failed.");
        # ssh run on its own says reliably why the session could not start.
        probe = engine.run(JobSpec(name=f"ssh-probe-{self.name}", argv=tuple(shlex.split(self.ssh_command())),
                                   mounts=access.mounts, networks=access.networks, timeout=60))
        if probe.ok:
            return ""
        return " ".join(probe.stderr_tail) or f"ssh exited with code {probe.exit_code}"

    def describe(self, source: str) -> str:
        c = self.config
        return f"sftp:{c.user}@{c.host}:{c.path.format(source=source)}"

    def _reach(self, source: str, create: bool):
        mounts = (Mount(self.key_file, self.KEY), Mount(self.known_hosts_file, self.KNOWN_HOSTS))
        return self.describe(source), mounts, (self.config.network,), {}, (f"sftp.command={self.ssh_command()}",)


class GDrive(Destination):
    kind = "gdrive"
    config: GDriveDestination
    REMOTE = "gdrive"
    SERVICE_ACCOUNT = f"{SECRETS}/service-account.json"
    RCLONE_CONFIG = "/run/rclone/rclone.conf"

    @property
    def service_account_file(self) -> Path:
        return self.secret_path(self.config.service_account_file, "service-account.json")

    def preflight(self) -> None:
        path = self.service_account_file
        try:
            check_secret_file(self.settings, path, f"service-account file of {self.name}")
            document = json.loads(path.read_text())
        except SecretFileError as error:
            raise DestinationUnavailable(str(error)) from None
        except (ValueError, UnicodeDecodeError) as error:
            raise DestinationUnavailable(f"service-account file {path} of {self.name} is not JSON: {error}") from None
        missing = [k for k in ("type", "client_email", "private_key")
                   if not isinstance(document, dict) or k not in document]
        if missing or document.get("type") != "service_account":
            raise DestinationUnavailable(
                f"service-account file {path} of {self.name} is not a service-account key "
                f"(missing or wrong: {', '.join(missing) or 'type'})")

    def secret_files(self) -> list[SecretFile]:
        return [SecretFile(self.service_account_file, f"gdrive/{self.name}", ("service_account_json",),
                           kv_value("service_account_json"), f"Google service-account key for {self.name}")]

    def rclone_remote(self) -> tuple[dict[str, str], tuple[Mount, ...]]:
        """The remote's options and the files it needs mounted."""
        remote = rclone.drive_remote(self.config, self.SERVICE_ACCOUNT)
        return remote, (Mount(self.service_account_file, self.SERVICE_ACCOUNT),)

    def describe(self, source: str) -> str:
        return f"rclone:{self.REMOTE}:{self.config.path.format(source=source)}"

    def _reach(self, source: str, create: bool):
        remote, mounts = self.rclone_remote()
        config_file = write_atomically(
            self.settings.paths.state_dir / "rclone" / f"{self.name}.conf",
            rclone.render_config({self.REMOTE: remote}))
        mounts = (*mounts, Mount(config_file, self.RCLONE_CONFIG))
        return self.describe(source), mounts, (self.config.network,), {"RCLONE_CONFIG": self.RCLONE_CONFIG}, ()


class S3(Destination):
    """An S3-compatible bucket. restic reads the keys from the AWS shared-credentials file mounted into the
    job (AWS_SHARED_CREDENTIALS_FILE names its path inside the container): never from argv or from the
    job's environment, which `podman inspect` shows."""

    kind = "s3"
    config: S3Destination
    CREDENTIALS = f"{SECRETS}/aws-credentials"
    PROFILE = "default"

    @property
    def credentials_file(self) -> Path:
        return self.secret_path(self.config.credentials_file, "aws-credentials")

    def preflight(self) -> None:
        keys = self.keys()
        check_endpoint(self.name, self.config, keys)

    def keys(self) -> tuple[str, str]:
        """The access key id and secret key of the rendered credentials file; the errors never quote them."""
        path = self.credentials_file
        try:
            check_secret_file(self.settings, path, f"S3 credentials file of {self.name}")
            return credentials(path.read_text())
        except SecretFileError as error:
            raise DestinationUnavailable(str(error)) from None
        except (ValueError, UnicodeDecodeError) as error:
            secrets = self.settings.secrets
            raise DestinationUnavailable(
                f"S3 credentials file {path} of {self.name} is not an AWS shared-credentials file ({error}); "
                f"store the keys with `vault kv put {secrets.kv_mount}/{secrets.kv_prefix}/s3/{self.name} "
                "access_key_id=... secret_access_key=...`") from None

    def diagnose(self, engine: Engine, access: RepositoryAccess) -> str:
        # restic retries a refused request for many minutes and then names only the operation: asking the
        # endpoint again says whether it refuses the keys (revoked since the preflight) or does not answer.
        try:
            self.preflight()
        except DestinationUnavailable as error:
            return str(error)
        return ""

    def secret_files(self) -> list[SecretFile]:
        body = (f"[{self.PROFILE}]\naws_access_key_id = " + kv_value("access_key_id")
                + "\naws_secret_access_key = " + kv_value("secret_access_key") + "\n")
        return [SecretFile(self.credentials_file, f"s3/{self.name}", ("access_key_id", "secret_access_key"), body,
                           f"S3 access keys for {self.name} (AWS shared-credentials format)")]

    def options(self) -> tuple[str, ...]:
        return (f"s3.region={self.config.region}",)

    def describe(self, source: str) -> str:
        c = self.config
        return f"s3:{c.endpoint}/{c.bucket}/{c.path.format(source=source).strip('/')}"

    def _reach(self, source: str, create: bool):
        env = {"AWS_SHARED_CREDENTIALS_FILE": self.CREDENTIALS, "AWS_PROFILE": self.PROFILE}
        mounts = (Mount(self.credentials_file, self.CREDENTIALS),)
        return self.describe(source), mounts, (self.config.network,), env, self.options()


def credentials(text: str) -> tuple[str, str]:
    """(access key id, secret key) of an AWS shared-credentials file's [default] profile; ValueError
    (never quoting the file) when it has none."""
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(text)
    except configparser.Error:
        raise ValueError("it cannot be read as an INI file") from None
    if not parser.has_section(S3.PROFILE):
        raise ValueError(f"no [{S3.PROFILE}] section")
    section = parser[S3.PROFILE]
    found = (section.get("aws_access_key_id", "").strip(), section.get("aws_secret_access_key", "").strip())
    missing = [key for key, value in zip(("aws_access_key_id", "aws_secret_access_key"), found, strict=True)
               if not value]
    if missing:
        raise ValueError(f"[{S3.PROFILE}] has no {' and no '.join(missing)}")
    return found


def check_endpoint(name: str, config: S3Destination, keys: tuple[str, str]) -> None:
    """The endpoint must answer as an S3 service and take the keys; a bucket that does not exist yet is
    fine (`runner repo init` creates it)."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

    client = boto3.session.Session().client(
        "s3", endpoint_url=config.endpoint, region_name=config.region, aws_access_key_id=keys[0],
        aws_secret_access_key=keys[1], config=Config(
            s3={"addressing_style": "path"}, retries={"max_attempts": 1, "mode": "standard"},
            connect_timeout=config.connect_timeout, read_timeout=config.connect_timeout))
    try:
        client.head_bucket(Bucket=config.bucket)
    except ClientError as error:
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        code = error.response.get("Error", {}).get("Code", "")
        if status == 404 or code in ("NoSuchBucket", "NotFound", "404"):
            return
        if status in (401, 403):
            raise DestinationUnavailable(
                f"{name}: {config.endpoint} refused the keys of the S3 credentials file for bucket {config.bucket} "
                f"(HTTP {status}{', ' + code if code and code != str(status) else ''}): check the access key id "
                "and secret key stored in Vault, and that they may use this bucket") from None
        raise DestinationUnavailable(f"{name}: {config.endpoint} answered HTTP {status} {code} for bucket "
                                     f"{config.bucket}") from None
    except EndpointConnectionError:
        raise DestinationUnavailable(f"{name}: S3 endpoint {config.endpoint} does not answer") from None
    except BotoCoreError as error:
        raise DestinationUnavailable(f"{name}: S3 endpoint {config.endpoint} cannot be used: "
                                     f"{type(error).__name__}") from None


KINDS: dict[str, type[Destination]] = {"local": Local, "nas": Nas, "gdrive": GDrive, "s3": S3}


def configured(settings: Settings, names: tuple[str, ...] | list[str] = ()) -> list[Destination]:
    """The enabled destinations (or the named ones), in configuration order."""
    unknown = set(names) - set(settings.destinations)
    if unknown:
        raise ValueError(f"no destination named {', '.join(sorted(unknown))} "
                         f"(configured: {', '.join(settings.destinations) or 'none'})")
    wanted = [name for name, config in settings.destinations.items() if (name in names if names else config.enabled)]
    return [KINDS[settings.destinations[name].kind](name, settings.destinations[name], settings) for name in wanted]


def wait_for_ssh(name: str, host: str, port: int, timeout: float) -> None:
    """The NAS must accept a TCP connection and greet as an SSH server within the timeout."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as connection:
            connection.settimeout(timeout)
            greeting = connection.recv(64)
    except socket.gaierror as error:
        raise DestinationUnavailable(f"{name}: cannot resolve NAS host {host}: {error.strerror}") from None
    except TimeoutError:
        raise DestinationUnavailable(f"{name}: NAS {host} port {port} did not answer within {timeout} s") from None
    except OSError as error:
        raise DestinationUnavailable(
            f"{name}: cannot reach NAS {host} port {port}: {error.strerror or error}") from None
    if not greeting.startswith(b"SSH-"):
        raise DestinationUnavailable(f"{name}: {host} port {port} answers, but not as an SSH server")
