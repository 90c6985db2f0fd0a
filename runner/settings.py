"""The one configuration schema: a TOML file plus RUNNER_* environment overrides.

Precedence, highest first: environment (RUNNER_SECTION__FIELD), the TOML file, the defaults below.
The file is `--config PATH`, else $RUNNER_CONFIG, else DEFAULT_CONFIG_PATH (which may be absent:
the defaults then stand alone).
"""

from __future__ import annotations

import contextvars
import ipaddress
import os
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

DEFAULT_CONFIG_PATH = Path("/etc/offsite-backup/runner.toml")
CONFIG_ENV = "RUNNER_CONFIG"
ENV_PREFIX = "RUNNER_"
ENV_DELIMITER = "__"

_DURATION = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: Any) -> Any:
    """Accept seconds as an integer or a string such as '90s', '15m', '6h', '2d'."""
    if isinstance(value, str):
        match = _DURATION.match(value)
        if not match:
            raise ValueError("expected a duration such as 90, '90s', '15m', '6h' or '2d'")
        return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    return value


Seconds = Annotated[int, BeforeValidator(parse_duration), Field(gt=0)]

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?)(b?)\s*$", re.IGNORECASE)
_POWERS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4}


def parse_size(value: Any) -> Any:
    """Bytes as an integer, or '750GB' / '10MB' (powers of 1000), '100MiB' / '100M' (powers of 1024)."""
    if isinstance(value, str):
        match = _SIZE.match(value)
        if not match:
            raise ValueError("expected a size such as 1048576, '10MB', '750GB', '100MiB' or '100M'")
        number, prefix, binary, byte = match.groups()
        base = 1000 if byte and not binary else 1024
        return int(float(number) * base ** _POWERS[prefix.lower()])
    return value


Bytes = Annotated[int, BeforeValidator(parse_size), Field(ge=0)]


_DNS_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
_PODMAN_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")  # Podman's rule for container and network names
_USER_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
_ROLE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@$-]{0,62}")


def host_name(value: str) -> str:
    """A DNS name or an IP address: nothing an ssh or database client could take for an option."""
    try:
        ipaddress.ip_address(value)
        return value
    except ValueError:
        pass
    labels = value.removesuffix(".").split(".")
    if len(value) > 253 or not all(_DNS_LABEL.fullmatch(label) for label in labels):
        raise ValueError("must be a DNS name (dot-separated labels of letters, digits and '-', none starting or "
                         "ending with '-') or an IP address")
    return value


def s3_endpoint(value: str) -> str:
    """http(s)://HOST[:PORT]: a URL restic and the preflight read alike, without path, user or query."""
    match = re.fullmatch(r"(https?)://(\[[0-9a-fA-F:.]+\]|[^/:@?#\[\]]+)(?::(\d{1,5}))?/?", value)
    if not match or (match.group(3) and not 0 < int(match.group(3)) < 65536):
        raise ValueError("must be http://HOST[:PORT] or https://HOST[:PORT], without a path")
    host_name(match.group(2).strip("[]"))
    return value.rstrip("/")


def podman_name(value: str) -> str:
    if not _PODMAN_NAME.fullmatch(value):
        raise ValueError("must be a Podman name: letters, digits, '_', '.' and '-', starting with a letter or digit")
    return value


def user_name(value: str) -> str:
    if not _USER_NAME.fullmatch(value):
        raise ValueError("must be a user name: up to 64 letters, digits, '_', '.' and '-', not starting with '-' "
                         "or '.'")
    return value


def user_and_group(value: str) -> str:
    """USER or USER:GROUP, names or numbers (as `podman exec --user` takes them)."""
    for part in value.split(":", 1):
        user_name(part)
    return value


def role_name(value: str) -> str:
    if not _ROLE_NAME.fullmatch(value):
        raise ValueError("must be a role name: up to 63 letters, digits, '_', '.', '@', '$' and '-', not "
                         "starting with '-', '.', '@' or '$'")
    return value


def optional(check: Callable[[str], str]) -> Callable[[str], str]:
    """The check, for a setting whose empty value means something of its own."""
    return lambda value: check(value) if value else value


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class PathSettings(Section):
    state_dir: Path = Field(
        Path("/var/lib/offsite-backup"),
        description="Run history, metrics and the runner's own bookkeeping live here.",
    )
    staging_dir: Path = Field(
        Path("/var/lib/offsite-backup/staging"),
        description="Temporary files of a job in progress (e.g. a Vault snapshot before upload); "
        "emptied after each job.",
    )
    cache_dir: Path = Field(
        Path("/var/cache/offsite-backup"),
        description="restic's cache, kept between runs so backups do not re-read repository indexes.",
    )
    secrets_dir: Path = Field(
        Path("/run/offsite-backup/secrets"),
        description="Directory where Vault Agent renders the secret files (a tmpfs); "
        "jobs get individual files from it mounted read-only.",
    )

    @field_validator("*")
    @classmethod
    def _absolute(cls, path: Path) -> Path:
        if not path.is_absolute():
            raise ValueError("must be an absolute path")
        return path


class PodmanSettings(Section):
    url: str = Field(
        "unix:///run/podman/podman.sock",
        description="Podman API socket. Rootless: unix:///run/user/UID/podman/podman.sock.",
    )


class ImageSettings(Section):
    tools: str = Field(
        "localhost/offsite-backup/tools:latest",
        description="Image that job containers run: restic, rclone, PostgreSQL client tools, ssh.",
    )
    runner: str = Field(
        "localhost/offsite-backup/runner:latest",
        description="Image of the runner itself, started by the Quadlet units.",
    )
    base: str = Field(
        "docker.io/library/debian:trixie-slim",
        description="Base image of the project's images. When it can be neither found locally nor "
        "pulled, `runner images build` builds `base_fallback` from `debian_mirror` with debootstrap.",
    )
    base_fallback: str = Field(
        "localhost/debian:trixie",
        description="Name of the base image built with debootstrap on hosts without a registry.",
    )
    openbao: str = Field(
        "localhost/offsite-backup/openbao:latest",
        description="OpenBao image: runs the Vault Agent that renders the secrets (Vault's API, so it "
        "serves HashiCorp Vault too), and the demo's Vault.",
    )
    debian_mirror: str = Field(
        "http://deb.debian.org/debian", description="Debian mirror used by debootstrap."
    )
    debian_suite: str = Field("trixie", description="Debian release of the base image.")
    python_version: str = Field(
        "3.13",
        pattern=r"^3\.\d+$",
        description="Version of the base image's python3 (3.13 on Debian 13): the runner image's "
        "wheels are fetched on the host for this version, so its build needs no network.",
    )


class JobSettings(Section):
    user: str = Field(
        "10001:10001",
        description="UID:GID job containers run as (the tools image's `offsite` user). "
        "Directories a job writes to are handed to this user.",
    )
    userns: str = Field(
        "",
        description="User namespace mode for job containers; empty for Podman's default. "
        "Rootless installations use 'keep-id' together with `user` set to the backup user's UID:GID.",
    )
    timeout: Seconds = Field(
        6 * 3600, description="Default limit on one job container's run time (seconds or '6h')."
    )
    pids_limit: int = Field(512, gt=0, description="Maximum number of processes in a job container.")
    memory_limit: str = Field(
        "", description="Memory limit of a job container, such as '2g'; empty for no limit."
    )
    tmpfs_size: str = Field("256m", description="Size of the tmpfs mounted at /tmp in job containers.")

    @field_validator("user")
    @classmethod
    def _numeric_non_root(cls, value: str) -> str:
        if not re.fullmatch(r"\d+(:\d+)?", value):
            raise ValueError(f"must be UID or UID:GID in numbers, got {value!r}")
        if value.split(":")[0] == "0":
            raise ValueError("job containers never run as root (UID 0)")
        return value


class RetentionSettings(Section):
    keep_daily: int = Field(7, ge=0, description="Keep the last snapshot of each of this many most recent days.")
    keep_monthly: int = Field(12, ge=0, description="Keep the last snapshot of each of this many most recent months.")
    keep_yearly: int = Field(2, ge=0, description="Keep the last snapshot of each of this many most recent years.")
    minimum_snapshots: int = Field(
        3, ge=1, description="The most recent snapshots always kept (restic --keep-last), whatever their dates; "
        "nothing is forgotten in a repository holding fewer."
    )
    check_weeks: int = Field(
        8, ge=1, description="The weekly check reads 1/N of the data, a different part each week, so all "
        "of it is read every N weeks (1: read everything each time).",
    )


class LockSettings(Section):
    wait: Seconds = Field(
        900, description="How long a run waits for another runner job on the same repository before it "
        "gives up and reports itself skipped.",
    )
    retry_lock: Seconds = Field(
        600, description="How long restic waits for a lock held by someone else (restic --retry-lock).",
    )
    stale_after: Seconds = Field(
        600, description="A restic lock left by a job of an older runner version (host name "
        "'offsite-backup-job') is removed once it is this old. Locks of current jobs are removed as soon as "
        "their job container is gone, whatever their age.",
    )


class RestoreTestSettings(Section):
    destination: str = Field(
        "", description="Destination the restore tests always read from. Empty: every enabled destination in turn "
        "(each run tests each source on the destination it was tested on longest ago, never tested first).",
    )
    postgres_image: str = Field(
        "docker.io/library/postgres:17",
        description="Image of the throwaway PostgreSQL (the official image's contract); "
        "match production's major version.",
    )
    vault_image: str = Field("", description="Image of the throwaway Vault/OpenBao server; empty: images.openbao.")
    s3_image: str = Field(
        "", description="Image of a throwaway S3 server (e.g. MinIO's) to load the restored objects into and compare "
        "through the S3 API, listening on port 9000; empty: compare the restored files only."
    )
    vault_unseal_keys_file: Path | None = Field(
        None, description="Unseal keys of the production Vault (one per line), for unsealing the restored copy "
        "when it comes up sealed. Without them only the snapshot's structure and its acceptance are verified.",
    )
    vault_canary: str = Field(
        "restic/vault", description="KV path (below secrets.kv_prefix) read back from the restored Vault, "
        "logged in with the runner's AppRole; empty to skip.",
    )
    vault_canary_key: str = Field("password", description="Key that must be present and non-empty at vault_canary.")
    timeout: Seconds = Field(7200, description="Time limit of each restore test.")


class SecretSettings(Section):
    kv_mount: str = Field("secret", description="Mount path of the KV version 2 engine holding the backup secrets.")
    kv_prefix: str = Field("offsite-backup", description="Path under kv_mount where the backup secrets live.")
    policy: str = Field(
        "offsite-backup", description="Name of the least-privilege policy `runner vault bootstrap` writes."
    )
    approle: str = Field("offsite-backup", description="Name of the AppRole the Vault Agent logs in with.")
    approle_dir: Path = Field(
        Path("/etc/offsite-backup/approle"),
        description="Directory of the AppRole's role-id and secret-id files (written by bootstrap, read by the agent).",
    )
    render_interval: Seconds = Field(
        300, description="How often the agent re-reads the secrets, so a changed one is re-rendered."
    )
    placeholder: str = Field(
        "<no value>", description="What a template renders for a missing value; a file containing it is refused."
    )


class MonitoringSettings(Section):
    rpo: Seconds = Field(86400, description="Recovery point objective: a source without a successful backup for "
                         "longer than this is reported (status, metrics) and alerted.")
    size_change: float = Field(0.5, gt=0, description="Alert when a backup's size differs from the previous "
                               "successful one of the same source by more than this fraction (0.5 = 50 %).")
    success_rate_floor: float = Field(
        0.995, ge=0, le=1, description="Alert when a source's backups to a destination succeeded less often than "
        "this over the last 30 days (0.995: 99.5 %, the success criterion); runs put off by a quota or a lock "
        "count for neither side. Judged once at least 7 backups ran in those 30 days."
    )
    restore_test_every: Seconds = Field(
        35 * 86400, description="A source whose last passed restore test on a destination the restore tests read "
        "from is older than this times the number of those destinations (they are visited in turn), or that has "
        "none while its first good backup there is older than that, is reported (status, metrics) and alerted. "
        "The tests run monthly; the default leaves a few days' slack."
    )
    metrics_file: Path | None = Field(
        None, description="Prometheus textfile-collector file, rewritten after every run. Empty: "
        "'<paths.state_dir>/metrics/offsite_backup.prom' (point node_exporter's collector directory there).",
    )
    dashboard_file: Path | None = Field(
        None, description="HTML dashboard regenerated after every run (empty: only on `runner dashboard`)."
    )


class AlertSettings(Section):
    email_to: list[str] = Field([], description="Recipients of alert mails; empty: alerts go to the log only.")
    email_from: str = Field("offsite-backup@localhost", description="Sender of alert mails.")
    smtp_host: str = Field("localhost", description="SMTP server.")
    smtp_port: int = Field(587, ge=1, le=65535, description="SMTP port (587: submission with STARTTLS).")
    starttls: bool = Field(True, description="Upgrade the connection with STARTTLS before logging in.")
    smtp_ca_file: Path | None = Field(
        None, description="CA certificate to verify the SMTP server with; empty: the system's."
    )
    smtp_login: bool = Field(True, description="Log in with the credentials file.")
    smtp_credentials_file: Path | None = Field(
        None, description="SMTP user name (first line) and password (second line). "
        "Empty: '<paths.secrets_dir>/smtp-credentials'."
    )
    apprise_urls_file: Path | None = Field(
        None, description="Notifications beyond mail, through Apprise: a secret file (mode 0600, rendered by Vault "
        "Agent from <kv_prefix>/apprise) with one Apprise URL per line (ntfy://, gotify://, matrix://, slack://, "
        "tgram://, discord://, json:// webhooks...; '#' starts a comment). Every alert the mail carries goes to "
        "each of them too. Empty: mail only."
    )
    ping_urls_file: Path | None = Field(
        None, description="Start, success and failure pings in the healthchecks.io convention for the scheduled "
        "jobs: a secret file (mode 0600, rendered by Vault Agent from <kv_prefix>/pings) with one 'JOB = BASE-URL' "
        "line per job, JOB one of backup-<source>, check, prune, restore-test, copy, status. A job started by its "
        "systemd unit fetches BASE-URL/start, then BASE-URL when it succeeded or BASE-URL/fail when it failed. "
        "Empty: no pings."
    )

    @model_validator(mode="before")
    @classmethod
    def _ping_urls_moved(cls, data: Any) -> Any:
        for old in ("success_ping_url", "failure_ping_url"):
            if isinstance(data, dict) and old in data:
                raise ValueError(
                    f"alerts.{old} was replaced by alerts.ping_urls_file (ping URLs carry a token, so they live in "
                    "a secret file, not in the configuration): put one 'JOB = BASE-URL' line per scheduled job in "
                    "that file and remove alerts.success_ping_url and alerts.failure_ping_url")
        return data


class LogSettings(Section):
    level: Literal["TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR"] = Field(
        "INFO", description="Lowest level written to the log (stderr, which systemd sends to the journal)."
    )
    format: Literal["text", "json"] = Field(
        "text", description="'text' reads well in the journal; 'json' is one object per line."
    )
    job_output: Literal["DEBUG", "INFO"] = Field(
        "INFO",
        description="Level at which job containers' messages (stderr) are logged; their "
        "machine-readable stdout is logged at DEBUG.",
    )


_NAME = r"^[a-z0-9][a-z0-9-]*$"


class ResticSettings(Section):
    host: str = Field(
        "homeserver",
        description="Host name recorded in every snapshot. Keep it stable: restic finds a backup's "
        "parent snapshot by host and paths.",
    )
    compression: Literal["auto", "max", "off"] = Field(
        "auto", description="Compression of new data in the repositories (repository format 2)."
    )
    password_file: str = Field(
        "",
        description="Repository password file; '{source}' is replaced by the source name. Empty: "
        "'<paths.secrets_dir>/restic-{source}.password'. Each source may have its own password; "
        "a destination may override this with its own `password_file`.",
    )


class DestinationBase(Section):
    enabled: bool = Field(True, description="A disabled destination is skipped by every command.")
    password_file: str = Field(
        "", description="Overrides restic.password_file for this destination ('{source}' allowed)."
    )
    bandwidth_limit: Bytes = Field(0, description="Bytes per second, up and down ('10MB'); 0 for no limit.")
    daily_upload_quota: Bytes = Field(
        0, description="Bytes that may be uploaded per UTC day; a backup that would pass it is "
        "deferred. 0 for no quota.",
    )
    timeout: Seconds | None = Field(None, description="Time limit of one job on this destination; "
                                    "empty for jobs.timeout.")
    copy_from: str = Field(
        "", description="Fill this destination by copying another destination's snapshots (`runner exec copy`, "
        "with restic copy) instead of backing the sources up to it: `exec backup` leaves it out. The name of "
        "another enabled destination; empty: backed up from the sources.",
    )


class LocalDestination(DestinationBase):
    kind: Literal["local"] = Field(description="A directory on this host (or a mounted disk).")
    path: str = Field(
        "/var/lib/offsite-backup/repositories/{source}",
        description="Repository directory; '{source}' is replaced by the source name.",
    )


class NasDestination(DestinationBase):
    kind: Literal["nas"] = Field(description="A NAS reached over SSH/SFTP (restic's sftp backend).")
    host: str = Field(description="DNS name or IP address of the NAS (e.g. its Tailscale name).")
    port: int = Field(22, ge=1, le=65535, description="SSH port of the NAS.")
    user: str = Field("backup", description="SSH user on the NAS.")
    path: str = Field(
        "/backups/homeserver/{source}",
        description="Repository path on the NAS; '{source}' is replaced by the source name.",
    )
    private_key_file: Path | None = Field(
        None, description="Ed25519 private key. Empty: '<paths.secrets_dir>/<name>-ssh-key'."
    )
    known_hosts_file: Path | None = Field(
        None,
        description="Pinned host key(s) of the NAS in known_hosts format ('[host]:port' for a port "
        "other than 22). Empty: '<paths.secrets_dir>/<name>-known_hosts'. Unknown or changed "
        "keys are refused, never accepted on first use.",
    )
    connect_timeout: Seconds = Field(10, description="Seconds to wait for the NAS to answer.")
    keepalive_interval: Seconds = Field(
        15, description="Seconds between SSH keep-alive probes (ServerAliveInterval)."
    )
    keepalive_count: int = Field(
        4, ge=1, description="Unanswered keep-alive probes after which the link counts as dead."
    )
    network: str = Field(
        "podman",
        description="Podman network of the job containers that talk to the NAS ('host' to use the "
        "host's network directly).",
    )
    bandwidth_limit: Bytes = Field(10_000_000, description="Bytes per second, up and down; 0 for no limit.")

    _host = field_validator("host")(host_name)
    _user = field_validator("user")(user_name)
    _network = field_validator("network")(podman_name)


class GDriveDestination(DestinationBase):
    kind: Literal["gdrive"] = Field(description="Google Drive through rclone (restic's rclone backend).")
    service_account_file: Path | None = Field(
        None,
        description="Google service-account JSON key. Empty: '<paths.secrets_dir>/<name>-service-account.json'. "
        "Referenced by the rendered rclone remote, never copied into it.",
    )
    path: str = Field(
        "Backups/homeserver/{source}",
        description="Repository folder in the Drive; '{source}' is replaced by the source name.",
    )
    chunk_size: str = Field("100M", pattern=r"^\d+[KMG]?$", description="rclone drive upload chunk size.")
    team_drive: str = Field(
        "", description="ID of a shared drive to use (service accounts own no storage of their own)."
    )
    impersonate: str = Field(
        "", description="User to impersonate with domain-wide delegation (Google Workspace)."
    )
    daily_upload_quota: Bytes = Field(
        750_000_000_000, description="Drive's upload cap per day; a backup that would pass it is deferred."
    )
    network: str = Field("podman", description="Podman network of the job containers that talk to Google.")

    _network = field_validator("network")(podman_name)


class S3Destination(DestinationBase):
    kind: Literal["s3"] = Field(description="An S3-compatible object store (restic's s3 backend).")
    endpoint: str = Field(
        description="URL of the S3 service, scheme included ('https://s3.eu-central-1.example.com', "
        "'http://10.0.0.5:9000'), as the job containers reach it."
    )
    bucket: str = Field(
        pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$",
        description="Bucket holding the repositories (restic creates it at `runner repo init` if it is absent).",
    )
    path: str = Field(
        "offsite/{source}",
        description="Repository prefix in the bucket; '{source}' is replaced by the source name.",
    )
    region: str = Field("us-east-1", pattern=r"^[a-z0-9-]{1,40}$", description="Region of the bucket.")
    credentials_file: Path | None = Field(
        None,
        description="AWS shared-credentials file ([default] aws_access_key_id, aws_secret_access_key), rendered "
        "by Vault Agent. Empty: '<paths.secrets_dir>/<name>-aws-credentials'. The keys are never taken from "
        "the environment.",
    )
    connect_timeout: Seconds = Field(10, description="Seconds to wait for the endpoint to answer in the preflight.")
    network: str = Field("podman", description="Podman network of the job containers that talk to the endpoint.")

    _endpoint = field_validator("endpoint")(s3_endpoint)
    _network = field_validator("network")(podman_name)


DestinationConfig = Annotated[LocalDestination | NasDestination | GDriveDestination | S3Destination,
                              Field(discriminator="kind")]
DESTINATION_KINDS = ("local", "nas", "gdrive", "s3")


_HTTP_URL = re.compile(r"https?://[^\s/?#@]+(:\d+)?([/?#]\S*)?", re.IGNORECASE)


def http_url(value: str) -> str:
    if not _HTTP_URL.fullmatch(value):
        raise ValueError("must be an http:// or https:// URL with a host")
    return value


class ExecHook(Section):
    kind: Literal["exec"] = Field(description="A command run with `podman exec` in a running container; no shell "
                                  "unless the command names one in the container.")
    container: str = Field(description="Name of the running container to run the command in.")
    command: list[str] = Field(min_length=1, description="The command as a list of arguments, e.g. "
                               "['redis-cli', 'save']; the first one is the program.")
    user: str = Field("", description="User (USER or USER:GROUP) to run it as; empty: the container's.")
    timeout: Seconds = Field(60, description="Time limit; a command still running then counts as failed.")

    _container = field_validator("container")(podman_name)
    _user = field_validator("user")(optional(user_and_group))

    @field_validator("command")
    @classmethod
    def _program_named(cls, command: list[str]) -> list[str]:
        if not command[0].strip():
            raise ValueError("the first argument (the program) is empty")
        return command


class StopHook(Section):
    kind: Literal["stop"] = Field(description="Containers stopped for the duration of the backup and always "
                                  "started again afterwards (before the after hooks), even when the backup fails "
                                  "or the runner is stopped; only in `before`.")
    containers: list[str] = Field(min_length=1, description="Names of the containers to stop (in this order; "
                                  "they are started again in the reverse order). One already stopped is left so.")
    timeout: Seconds = Field(60, description="Seconds a container gets to stop before it is killed, and the time "
                             "limit of starting it again.")

    @field_validator("containers")
    @classmethod
    def _names(cls, containers: list[str]) -> list[str]:
        return [podman_name(name) for name in containers]


class HttpHook(Section):
    kind: Literal["http"] = Field(description="An HTTP request sent by the runner itself.")
    method: Literal["GET", "HEAD", "POST", "PUT"] = Field("POST", description="HTTP method; no body is sent.")
    url: str = Field("", description="URL to request, when it holds no secret (it is logged); else use url_file.")
    url_file: Path | None = Field(None, description="File (mode 0600 or 0400, e.g. rendered by Vault Agent) holding "
                                  "the URL, for a URL that carries a token: it is never logged.")
    expected_status: int | None = Field(None, ge=100, le=599, description="Status the response must have; "
                                        "empty: any 2xx.")
    timeout: Seconds = Field(60, description="Time limit of the request.")

    _url = field_validator("url")(optional(http_url))

    @model_validator(mode="after")
    def _one_url(self) -> HttpHook:
        if bool(self.url) == (self.url_file is not None):
            raise ValueError("give exactly one of url and url_file")
        if self.url_file is not None and not self.url_file.is_absolute():
            raise ValueError("url_file must be an absolute path")
        return self


Hook = Annotated[ExecHook | StopHook | HttpHook, Field(discriminator="kind")]
HOOK_KINDS = ("exec", "stop", "http")


class HookSettings(Section):
    before: list[Hook] = Field([], description="Run in order before the source is read; the first that fails "
                               "fails the source's backup on every destination (the after hooks still run).")
    after: list[Hook] = Field([], description="Run in order after the backup, whatever its outcome (after the "
                              "containers stopped by `before` are started again).")
    on_error: list[Hook] = Field([], description="Run in order when the backup failed on any destination, before "
                                 "`after`.")

    @field_validator("after", "on_error")
    @classmethod
    def _no_stop(cls, hooks: list) -> list:
        if any(isinstance(hook, StopHook) for hook in hooks):
            raise ValueError("a 'stop' hook belongs in `before` (its containers are started again by themselves)")
        return hooks


def hooks_field() -> Any:
    return Field(default_factory=HookSettings, description="Commands, container stops and HTTP requests around this "
                 "source's backup (see docs/sources.md, Hooks).")


class FilesSource(Section):
    enabled: bool = Field(True, description="Back up `paths` (when there are any).")
    paths: list[Path] = Field(
        [], description="Directories or files to back up (e.g. configuration); none: the source is off."
    )
    excludes: list[str] = Field([], description="restic exclude patterns.")
    hooks: HookSettings = hooks_field()

    @field_validator("paths")
    @classmethod
    def _absolute_paths(cls, paths: list[Path]) -> list[Path]:
        for path in paths:
            if not path.is_absolute():
                raise ValueError(f"{str(path)!r} must be an absolute path")
        return paths


class VaultSource(Section):
    enabled: bool = Field(True, description="Back up Vault's raft storage.")
    address: str = Field(
        "http://127.0.0.1:8200", description="Vault (or OpenBao) API address, as the runner reaches it."
    )
    token_file: Path | None = Field(
        None, description="Token allowed to read sys/storage/raft/snapshot. "
        "Empty: '<paths.secrets_dir>/vault-snapshot-token'."
    )
    ca_file: Path | None = Field(None, description="CA certificate for Vault's TLS; empty for the system's CAs.")
    allow_standby: bool = Field(False, description="Accept a standby node (the snapshot request is forwarded).")
    timeout: Seconds = Field(600, description="Time limit for health check and snapshot download.")
    hooks: HookSettings = hooks_field()


class PostgresSource(Section):
    enabled: bool = Field(True, description="Back up every database of the PostgreSQL server with pg_dumpall.")
    mode: Literal["network", "exec"] = Field(
        "network",
        description="'network': the job container joins the PostgreSQL container's network and runs pg_dumpall "
        "there. 'exec': pg_dumpall runs inside the PostgreSQL container (`podman exec`), for a server "
        "reachable only from inside it.",
    )
    container: str = Field(
        "postgres", description="Name of the Podman container running PostgreSQL; empty for a server reached "
        "only by `host` and `port` on `network` (e.g. a rootless runner backing up a server of another user), "
        "which needs `host` and the network mode."
    )
    network: str = Field("", description="Network to reach it on (network mode). Empty: the container's first network.")
    host: str = Field(
        "", description="Host name to connect to (network mode). Empty: the container's address on `network`."
    )
    port: int = Field(5432, ge=1, le=65535, description="PostgreSQL port (network mode).")
    user: str = Field("postgres", description="Role that dumps (a superuser, or see dump_options).")
    pgpass_file: Path | None = Field(
        None, description="pgpass file with the role's password (network mode). "
        "Empty: '<paths.secrets_dir>/postgres.pgpass'."
    )
    dump_options: list[str] = Field(
        [], description="Extra pg_dumpall options, e.g. ['--no-role-passwords'] for a role that is not a superuser."
    )
    exec_user: str = Field("postgres", description="OS user pg_dumpall runs as inside the container (exec mode).")

    _names = field_validator("container", "network")(optional(podman_name))  # empty: see the descriptions
    _host = field_validator("host")(optional(host_name))
    _user = field_validator("user")(role_name)
    hooks: HookSettings = hooks_field()

    _exec_user = field_validator("exec_user")(user_and_group)


class MinioSource(Section):
    enabled: bool = Field(True, description="Back up MinIO's buckets (any S3 API) through an rclone mirror.")
    endpoint: str = Field("http://127.0.0.1:9000", description="S3 endpoint, as the job container reaches it.")
    network: str = Field("podman", description="Podman network of the mirror job ('host' for the host's own).")
    region: str = Field("us-east-1", description="S3 region name.")
    credentials_file: Path | None = Field(
        None, description="Access keys in AWS shared-credentials format ([default] aws_access_key_id=..., "
        "aws_secret_access_key=...). Empty: '<paths.secrets_dir>/minio-credentials'."
    )
    buckets: list[str] = Field([], description="Buckets to back up; empty for every bucket.")
    excludes: list[str] = Field([], description="rclone filter patterns of objects to leave out (e.g. 'tmp/**').")
    bandwidth_limit: Bytes = Field(0, description="Bytes per second read from the S3 server; 0 for no limit.")
    mirror_dir: Path | None = Field(
        None, description="Persistent local mirror of the buckets. Empty: '<paths.staging_dir>/minio-mirror'."
    )
    hooks: HookSettings = hooks_field()

    _network = field_validator("network")(podman_name)


class SourceSettings(Section):
    vault: VaultSource = Field(default_factory=VaultSource, description="HashiCorp Vault / OpenBao.")
    postgres: PostgresSource = Field(default_factory=PostgresSource, description="PostgreSQL in a Podman container.")
    minio: MinioSource = Field(default_factory=MinioSource, description="MinIO (S3 API).")
    files: FilesSource = Field(default_factory=FilesSource, description="Plain files and directories.")


_toml_file: contextvars.ContextVar[Path | None] = contextvars.ContextVar("toml_file", default=None)


class _TomlSource(PydanticBaseSettingsSource):
    def get_field_value(self, field, field_name):  # pragma: no cover - __call__ does the work
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = _toml_file.get()
        return read_toml(path) if path else {}


def _one_local_destination() -> dict[str, LocalDestination | NasDestination | GDriveDestination | S3Destination]:
    return {"local": LocalDestination(kind="local")}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_DELIMITER,
        extra="forbid",
        validate_default=True,
    )

    paths: PathSettings = Field(default_factory=PathSettings, description="Where files live.")
    podman: PodmanSettings = Field(default_factory=PodmanSettings, description="Podman API.")
    images: ImageSettings = Field(default_factory=ImageSettings, description="Container images.")
    jobs: JobSettings = Field(default_factory=JobSettings, description="Job container defaults.")
    log: LogSettings = Field(default_factory=LogSettings, description="Logging.")
    restic: ResticSettings = Field(default_factory=ResticSettings, description="restic options.")
    secrets: SecretSettings = Field(default_factory=SecretSettings, description="Secrets in Vault and the agent.")
    retention: RetentionSettings = Field(default_factory=RetentionSettings, description="What prune keeps.")
    locks: LockSettings = Field(default_factory=LockSettings, description="Repository locks.")
    restore_tests: RestoreTestSettings = Field(
        default_factory=RestoreTestSettings, description="Monthly restore tests."
    )
    monitoring: MonitoringSettings = Field(default_factory=MonitoringSettings, description="RPO, metrics, dashboard.")
    alerts: AlertSettings = Field(default_factory=AlertSettings, description="Mail, Apprise notifications, pings.")
    destinations: dict[str, DestinationConfig] = Field(
        default_factory=lambda: _one_local_destination(),
        description="Where backups go, by name; each holds one repository per source. "
        "Default: one local destination.",
    )
    sources: SourceSettings = Field(default_factory=SourceSettings, description="What is backed up.")

    @field_validator("destinations")
    @classmethod
    def _destination_names(cls, destinations: dict) -> dict:
        for name in destinations:
            if not re.match(_NAME, name):
                raise ValueError(f"destination name {name!r}: use lower-case letters, digits and '-'")
        return destinations

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings,
                                   file_secret_settings):
        return (init_settings, env_settings, _TomlSource(settings_cls))


class ConfigError(Exception):
    """The configuration is unusable; `problems` lists every mistake found, each naming its origin."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class LoadedSettings:
    settings: Settings
    path: Path | None  # the TOML file used, or None when only defaults and environment apply


def resolve_config_path(explicit: Path | None) -> tuple[Path, bool]:
    """Return (path, required): an explicit or $RUNNER_CONFIG path must exist; the default may not."""
    if explicit is not None:
        return explicit, True
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV]), True
    return DEFAULT_CONFIG_PATH, False


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError([f"{path}: not valid TOML: {error}"]) from None
    except OSError as error:
        raise ConfigError([f"{path}: cannot read: {error.strerror}"]) from None


def load_settings(explicit: Path | None = None) -> LoadedSettings:
    candidate, required = resolve_config_path(explicit)
    path = candidate if candidate.exists() else None
    if path is None and required:
        raise ConfigError([f"{candidate}: configuration file not found"])
    token = _toml_file.set(path)
    try:
        settings = Settings()
    except ValidationError as error:
        raise ConfigError([_describe(dict(e), path) for e in error.errors()]) from None
    finally:
        _toml_file.reset(token)
    problems = [_describe({"loc": location, "msg": message, "type": "value_error"}, path)
                for location, message in impossible_combinations(settings)]
    if problems:
        raise ConfigError(problems)
    return LoadedSettings(settings, path)


def impossible_combinations(settings: Settings) -> list[tuple[tuple[str, ...], str]]:
    """(setting, problem) for settings that are valid one by one but cannot work together. Checked when
    the configuration is loaded, after the fields: a source's preflight would only find them at night."""
    return _postgres_problems(settings) + copy_from_problems(settings)


def copy_from_problems(settings: Settings) -> list[tuple[tuple[str, ...], str]]:
    """Each enabled destination's copy_from must name another enabled destination, without a cycle."""
    problems: list[tuple[tuple[str, ...], str]] = []
    destinations = settings.destinations
    for name, config in destinations.items():
        origin = config.copy_from
        if not config.enabled or not origin:
            continue
        where = ("destinations", name, "copy_from")
        if origin == name:
            problems.append((where, "a destination cannot be filled by copying from itself"))
        elif origin not in destinations:
            problems.append((where, f"no destination named {origin!r} (configured: {', '.join(destinations)})"))
        elif not destinations[origin].enabled:
            problems.append((where, f"destination {origin!r} is disabled: nothing would be copied"))
        else:
            chain = [name, origin]
            while chain[-1] != name and chain[-1] in destinations and destinations[chain[-1]].copy_from \
                    and len(chain) <= len(destinations):
                chain.append(destinations[chain[-1]].copy_from)
            if chain[-1] == name:
                problems.append((where, f"the copies go round in a circle ({' <- '.join(chain)}): one destination "
                                 "of it must be backed up from the sources"))
    return problems


def _postgres_problems(settings: Settings) -> list[tuple[tuple[str, ...], str]]:
    postgres = settings.sources.postgres
    if not postgres.enabled or postgres.container:
        return []
    if postgres.mode == "exec":
        return [(("sources", "postgres", "mode"), "'exec' runs pg_dumpall inside the PostgreSQL container, but "
                 "sources.postgres.container is empty: name the container, or use mode = 'network' with host")]
    if not postgres.host:
        return [(("sources", "postgres", "host"), "required when sources.postgres.container is empty (a server "
                 "reached only by host and port): set host, or name the container")]
    return []


def env_name(location: tuple[Any, ...]) -> str:
    return ENV_PREFIX + ENV_DELIMITER.join(str(part) for part in location).upper()


def _describe(error: dict[str, Any], path: Path | None) -> str:
    location = tuple(error["loc"])
    if location[:1] == ("destinations",) and len(location) > 3 and location[2] in DESTINATION_KINDS:
        location = location[:2] + location[3:]  # pydantic adds the union's tag; the file has no such level
    location = tuple(part for i, part in enumerate(location)  # the same for a hook's kind
                     if not (part in HOOK_KINDS and i > 1 and location[i - 2] in ("before", "after", "on_error")))
    field = ".".join(str(part) for part in location) or "(top level)"
    variable = _env_variable_for(location)
    origin = f"environment {variable}" if variable else str(path) if path else "defaults"
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown setting (check the spelling against examples/runner.toml)"
    elif error["type"] != "missing" and "input" in error and not isinstance(error["input"], dict):
        message += f" (got {error['input']!r})"
    return f"{origin}: {field}: {message}"


def _env_variable_for(location: tuple[Any, ...]) -> str | None:
    """The RUNNER_* variable that set this field or one of its parents, if any."""
    for depth in range(len(location), 0, -1):
        name = env_name(location[:depth])
        for variable in os.environ:
            if variable.upper() == name:
                return variable
    return None


_SECRET_NAME = re.compile(r"(?i)(password|passwd|secret|token|passphrase|credential|access_key|api_key|private_key)")
_NOT_A_SECRET = re.compile(r"(?i)(_file|_path|_dir|_files)$")


def redacted(value: Any, name: str = "") -> Any:
    """A copy of a settings dump with secret-looking values masked (file paths are kept)."""
    from runner.logs import MASK, mask

    if isinstance(value, dict):
        return {key: redacted(item, str(key)) for key, item in value.items()}
    if isinstance(value, list):
        return [redacted(item, name) for item in value]
    if isinstance(value, str):
        if value and _SECRET_NAME.search(name) and not _NOT_A_SECRET.search(name):
            return MASK
        return mask(value)
    return value
