"""The files that carry secrets: what each one is (where its value lives in Vault, how Vault Agent
renders it), and the check a file passes before a job is given it.

A file passes when it exists, is a regular non-empty file, is readable by its owner only, and does
not contain the template's missing-value placeholder. Its content is registered for masking, so
it cannot reach the log even by accident.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass
from pathlib import Path

from runner import logs
from runner.settings import Settings


@dataclass(frozen=True)
class SecretFile:
    """A file Vault Agent renders for the jobs, from the KV secret at <kv_mount>/<kv_prefix>/<kv_path>."""

    path: Path
    kv_path: str
    keys: tuple[str, ...]
    body: str  # the template's text between `with secret` and `end`
    purpose: str
    generated: bool = False  # bootstrap creates the value when it is absent
    agent_token: bool = False  # not a template: the file the agent writes its own token to (its sink)


def kv_value(key: str) -> str:
    """A template's reference to one key of the secret."""
    return f"{{{{ .Data.data.{key} }}}}"


class SecretFileError(Exception):
    """A secret file is missing, empty, readable by others or unrendered; the message names the file."""


def check_secret_file(settings: Settings, path: Path, what: str) -> None:
    try:
        info = path.stat()
        content = path.read_text(errors="replace") if stat.S_ISREG(info.st_mode) else ""
    except FileNotFoundError:
        raise SecretFileError(f"{what} {path} does not exist (is Vault Agent running and rendering it?)") from None
    except PermissionError:
        raise SecretFileError(f"{what} {path} cannot be read by the runner") from None
    if not stat.S_ISREG(info.st_mode):
        raise SecretFileError(f"{what} {path} is not a regular file")
    if not content.strip():
        raise SecretFileError(f"{what} {path} is empty")
    if info.st_mode & 0o077:
        raise SecretFileError(
            f"{what} {path} is readable by group or others (mode {stat.S_IMODE(info.st_mode):04o}); "
            "make it private (chmod 0400 or 0600)"
        )
    if settings.secrets.placeholder and settings.secrets.placeholder in content:
        raise SecretFileError(f"{what} {path} contains {settings.secrets.placeholder!r}: "
                              "a value is missing in Vault, the template could not fill it")
    for fragment in secret_fragments(content):
        logs.register_secret(fragment)


def secret_fragments(content: str) -> set[str]:
    """The file's content, its lines, and the values in them (after '=' or a pgpass line's last ':')."""
    fragments = {content.strip()}
    for line in content.splitlines():
        line = line.strip()
        fragments.add(line)
        if "=" in line:
            fragments.add(line.split("=", 1)[1].strip())
        if line.count(":") >= 4:
            fragments.add(line.split(":", 4)[4])
    return {fragment for fragment in fragments if len(fragment) >= 6}
