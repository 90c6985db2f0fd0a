"""The recovery kit: what a person needs to restore when Vault itself is gone.

The repository holding Vault's snapshots cannot depend on a password that lives only in Vault.
The kit carries every repository's location and password, the NAS host key fingerprints, the rclone
remote settings (without the service-account key) and the restore order, as a plain document to
print or keep on an encrypted medium, offline.
"""

from __future__ import annotations

import base64
import hashlib
import shlex
from datetime import UTC, datetime

from runner import rclone
from runner.destinations import GDrive, Local, Nas, configured
from runner.secrets.files import SecretFileError, check_secret_file
from runner.settings import Settings
from runner.sources import enabled


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


def _restic(location: str, extra: str = "") -> str:
    return f"restic -r {shlex.quote(location)}{extra} --password-file ./password"


def build(settings: Settings) -> str:
    sources = enabled(settings)
    destinations = configured(settings)
    missing = []
    out = [
        "# Offsite backup recovery kit",
        "",
        f"Written {datetime.now(UTC):%Y-%m-%d %H:%M} UTC for host `{settings.restic.host}`.",
        "",
        "**KEEP THIS OFFLINE.** Anyone holding this document can read every backup. Print it, or keep it on an",
        "encrypted medium, in a safe place away from the server. Do not store it in Vault, on the NAS or in",
        ("the Drive it protects. Write a new one after any repository password changes, "
         "and test it (docs/recovery-kit.md)."),
        "",
        "## Restore order",
        "",
        "1. Vault (holds every other credential): restore its raft snapshot first.",
        "2. PostgreSQL.",
        "3. MinIO.",
        "4. Plain files.",
        "",
        "For each repository below: write its password to a file `./password` (mode 0400), run the",
        "listed `snapshots` command to see what it holds, then `restore latest --target DIR`.",
        "Install restic (>= 0.17) and, for Google Drive, rclone. The runbook is docs/disaster-recovery.md.",
    ]
    for destination in destinations:
        out += ["", f"## Destination `{destination.name}` ({destination.kind})", ""]
        extra = ""
        if isinstance(destination, Nas):
            c = destination.config
            out += [(f"NAS: `{c.user}@{c.host}` port {c.port}. Pinned host key(s), "
                     "check them before trusting the NAS:"), ""]
            try:
                check_secret_file(settings, destination.known_hosts_file, "known_hosts file")
                lines = destination.known_hosts_file.read_text().splitlines()
            except SecretFileError as error:
                missing.append(str(error))
                lines = []
            out += [f"    {line}" for line in lines if line.strip()]
            out += [""] + [f"- fingerprint: `{fp}`" for fp in filter(None, map(fingerprint, lines))]
            out += ["", "The SSH private key is in Vault (nas/...); without Vault, use any NAS account that can",
                    "read the repositories, or a key you keep with this kit."]
            extra = (f" -o sftp.command={shlex.quote(f'ssh -i ./nas-key -p {c.port} {c.user}@{c.host} -s sftp')}")
        elif isinstance(destination, GDrive):
            remote = rclone.drive_remote(destination.config, "./service-account.json")
            out += ["rclone remote (write it to `rclone.conf`; `export RCLONE_CONFIG=$PWD/rclone.conf`). The",
                    "service-account key is not in this kit: create a new key for the account in the Google Cloud",
                    "console and save it as `./service-account.json`.", "", "```ini",
                    *rclone.render_config({GDrive.REMOTE: remote}).splitlines(), "```"]
        elif isinstance(destination, Local):
            out += ["A directory on the server (or a disk attached to it)."]
        for source in sources:
            location = destination.describe(source)
            path = destination.password_file(source)
            try:
                check_secret_file(settings, path, f"password file of {source} on {destination.name}")
                password = path.read_text().strip()
            except SecretFileError as error:
                missing.append(str(error))
                password = "(MISSING)"
            restic_command = _restic(location, extra)
            out += ["", f"### {source} on {destination.name}", "",
                    f"    Location: {location}",
                    f"    Password: {password}",
                    f"    Snapshots: {restic_command} snapshots --tag {source}",
                    f"    Restore:   {restic_command} restore latest --tag {source} --target ./restore-{source}"]
    if missing:
        raise RecoveryKitError("the kit would be incomplete:\n  " + "\n  ".join(missing))
    return "\n".join(out) + "\n"
