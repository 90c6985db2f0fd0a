"""The recovery kit: what a person needs to restore when Vault itself is gone.

The repository holding Vault's snapshots cannot depend on a password that lives only in Vault, and
the NAS and Google Drive cannot be reached without the keys that live only in Vault either. The kit
carries, for every destination, what reaching it takes (the NAS's SSH private key and pinned host
key, the Drive's rclone remote and service-account key, the S3 bucket's access keys), and for every
repository its location, its password and the restic commands that list and restore it: shell blocks
a person runs, in an empty directory, with restic, ssh and rclone only (neither Vault nor this
software). A plain document to print or keep on an encrypted medium, offline, written with mode 0400.
"""

from __future__ import annotations

import base64
import hashlib
import shlex
import textwrap
from datetime import UTC, datetime
from pathlib import Path

from runner import rclone
from runner.destinations import S3, Destination, GDrive, Local, Nas, configured
from runner.secrets.files import SecretFileError, check_secret_file
from runner.settings import Settings
from runner.sources import enabled

HEREDOC_END = "END_OF_KIT_FILE"


class RecoveryKitError(Exception):
    pass


def fingerprint(known_hosts_line: str) -> str | None:
    """SHA256 fingerprint of a known_hosts entry, as `ssh-keygen -l` prints it."""
    fields = known_hosts_line.split()
    if len(fields) < 3 or known_hosts_line.startswith("#"):
        return None
    try:
        key = base64.b64decode(fields[2], validate=True)
    except ValueError:
        return None
    digest = base64.b64encode(hashlib.sha256(key).digest()).decode().rstrip("=")
    return f"{fields[0]} {fields[1]} SHA256:{digest}"


def write_file_command(name: str, content: str) -> list[str]:
    """Shell lines that write `content` to ./name, byte for byte up to a final newline, nothing in argv."""
    lines = content.rstrip("\n").splitlines()
    if HEREDOC_END in lines:
        raise RecoveryKitError(f"{name} contains a line {HEREDOC_END!r}, which ends the kit's here-documents")
    return [f"cat > {name} <<'{HEREDOC_END}'", *lines, HEREDOC_END]


def sh_block(lines: list[str]) -> list[str]:
    return ["```sh", *lines, "```"]


def paragraph(text: str) -> list[str]:
    return [*textwrap.wrap(text, width=100, break_on_hyphens=False, break_long_words=False), ""]


class _Kit:
    """Reads the secret files a kit needs, collecting what is missing instead of stopping at the first."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.missing: list[str] = []

    def read(self, path: Path, what: str) -> str | None:
        try:
            check_secret_file(self.settings, path, what)
            return path.read_text()
        except SecretFileError as error:
            self.missing.append(str(error))
            return None


def _nas_setup(kit: _Kit, destination: Nas) -> tuple[list[str], str]:
    """The NAS section's text and set-up block, and the restic options that reach it."""
    c = destination.config
    known_hosts = kit.read(destination.known_hosts_file, f"known_hosts file of {destination.name}") or ""
    key = kit.read(destination.key_file, f"SSH private key of {destination.name}") or ""
    host_lines = [line for line in known_hosts.splitlines() if line.strip()]
    key_file, known_hosts_file = f"{destination.name}-key", f"{destination.name}-known_hosts"
    out = [(f"NAS: `{c.user}@{c.host}` port {c.port}. Pinned host key(s), check them before trusting the NAS:"), ""]
    out += [f"    {line}" for line in host_lines]
    out += [""] + [f"- fingerprint: `{fp}`" for fp in filter(None, map(fingerprint, host_lines))]
    out += ["", *paragraph(f"**This kit holds the NAS's SSH private key** (`{key_file}` below): it logs in to the "
                           f"NAS as `{c.user}`, which can read, write and delete these backups."),
            *paragraph(f"Set up: writes the pinned host key to `{known_hosts_file}` (`ssh-keygen -lf` must print the "
                       f"fingerprint above) and the SSH key to `{key_file}`, readable by you only.")]
    out += sh_block(["umask 077", *write_file_command(known_hosts_file, known_hosts),
                     f"ssh-keygen -lf {known_hosts_file}", *write_file_command(key_file, key)])
    ssh = (f"ssh -F /dev/null -i ./{key_file} -o IdentitiesOnly=yes -o UserKnownHostsFile=./{known_hosts_file} "
           f"-o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes -o BatchMode=yes -p {c.port} "
           f"{c.user}@{c.host} -s sftp")
    return out, f" -o sftp.command={shlex.quote(ssh)}"


def _gdrive_setup(kit: _Kit, destination: GDrive) -> tuple[list[str], str]:
    account_file, config_file = f"{destination.name}-service-account.json", f"{destination.name}-rclone.conf"
    account = kit.read(destination.service_account_file, f"service-account file of {destination.name}") or ""
    remote = rclone.drive_remote(destination.config, f"./{account_file}")
    out = [f"Google Drive through rclone: the remote `{GDrive.REMOTE}`, with the service account's key.", "",
           *paragraph(f"**This kit holds the service account's key** (`{account_file}` below): it can read, "
                      "write and delete these backups. (Revoke it in the Google Cloud console if the kit is lost.)"),
           *paragraph(f"Set up: writes the key to `{account_file}` and the rclone remote to `{config_file}`, "
                      "readable by you only.")]
    out += sh_block(["umask 077", *write_file_command(account_file, account),
                     *write_file_command(config_file, rclone.render_config({GDrive.REMOTE: remote}))])
    return out, ""


def _s3_setup(kit: _Kit, destination: S3) -> tuple[list[str], str]:
    c = destination.config
    credentials_file = f"{destination.name}-aws-credentials"
    credentials = kit.read(destination.credentials_file, f"S3 credentials file of {destination.name}") or ""
    out = [f"S3-compatible storage: endpoint `{c.endpoint}`, bucket `{c.bucket}`, region `{c.region}`.", "",
           *paragraph(f"**This kit holds the bucket's access keys** (`{credentials_file}` below): they can read, "
                      "write and delete these backups. (Revoke them at the provider if the kit is lost.)"),
           *paragraph(f"Set up: writes the keys to `{credentials_file}`, readable by you only, and points restic at "
                      "it (and at nothing else: the AWS_* key variables of your shell are cleared).")]
    out += sh_block(["umask 077", *write_file_command(credentials_file, credentials),
                     "unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN",
                     f"export AWS_SHARED_CREDENTIALS_FILE=./{credentials_file} AWS_PROFILE={S3.PROFILE}"])
    return out, "".join(f" -o {shlex.quote(option)}" for option in destination.options())


def build(settings: Settings) -> str:
    sources = enabled(settings)
    destinations = configured(settings)
    kit = _Kit(settings)
    out = [
        "# Offsite backup recovery kit",
        "",
        f"Written {datetime.now(UTC):%Y-%m-%d %H:%M} UTC for host `{settings.restic.host}`.",
        "",
        "**KEEP THIS OFFLINE. IT IS THE KEY TO EVERY BACKUP.** It holds every repository's password and the",
        "keys that log in to the NAS, Google Drive and S3: anyone holding it can read every backup, and delete",
        "them. On a disk it stays mode 0400 (readable by its owner only). Print it, or keep it on an encrypted",
        "medium, in a safe place away from the server. Never in Vault, on the NAS or in the Drive it protects.",
        ("Write a new one after any password or key changes, and test it (docs/recovery-kit.md)."),
        "",
        "## Restore order",
        "",
        "1. Vault (holds every other credential): restore its raft snapshot first.",
        "2. PostgreSQL.",
        "3. MinIO.",
        "4. Plain files.",
        "",
        "## How to use it",
        "",
        "On any machine with restic (>= 0.17), and ssh for a NAS or rclone for Google Drive (neither Vault",
        "nor the backup software is needed): make a private, empty directory (`mkdir -m 0700 restore && cd",
        "restore`), and in it run the `sh` blocks of the destination you restore from, in one shell: its",
        "set-up block once, then the block of each source, in the restore order. A source's block writes its",
        "repository's password to a file, lists the snapshots, and restores the latest one into",
        "`./restore-<source>` (`restore <snapshot id>` for an older one). The runbook is",
        "docs/disaster-recovery.md.",
    ]
    for destination in destinations:
        out += ["", f"## Destination `{destination.name}` ({destination.kind})", ""]
        extra = ""
        if isinstance(destination, Nas):
            text, extra = _nas_setup(kit, destination)
            out += text
        elif isinstance(destination, GDrive):
            text, extra = _gdrive_setup(kit, destination)
            out += text
        elif isinstance(destination, S3):
            text, extra = _s3_setup(kit, destination)
            out += text
        elif isinstance(destination, Local):
            out += ["A directory on the server (or a disk attached to it): run the blocks where it is mounted."]
        for source in sources:
            out += _source_section(kit, destination, source, extra)
    if kit.missing:
        raise RecoveryKitError("the kit would be incomplete:\n  " + "\n  ".join(kit.missing))
    return "\n".join(out) + "\n"


def _source_section(kit: _Kit, destination: Destination, source: str, extra: str) -> list[str]:
    location = destination.describe(source)
    password = kit.read(destination.password_file(source), f"password file of {source} on {destination.name}")
    password = (password or "(MISSING)").strip()
    password_file = f"{source}-on-{destination.name}.password"
    environment = f"RCLONE_CONFIG=./{destination.name}-rclone.conf " if isinstance(destination, GDrive) else ""
    restic = f"{environment}restic -r {shlex.quote(location)}{extra} --password-file ./{password_file}"
    return ["", f"### {source} on {destination.name}", "",
            f"    Location: {location}",
            f"    Password: {password}",
            "",
            *sh_block(["umask 077", *write_file_command(password_file, password),
                       f"{restic} snapshots --tag {source}",
                       f"{restic} restore latest --tag {source} --target ./restore-{source}"])]
