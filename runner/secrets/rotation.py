"""`runner repo rotate-key`: give a source's repositories a new password, kept in Vault, and remove the old key.

A source's password is one Vault secret (<kv_prefix>/restic/<source>) that the agent renders for every
enabled destination, so a rotation covers all of that source's repositories at once. The steps are
ordered so that, interrupted after any of them, every repository still opens with the password Vault
holds (and with the one the agent rendered last):

1. Vault's password and every rendered password file must agree, and each repository must open with
   it; the key it opens is the old key.
2. restic adds a key for a new random password (handed to restic as a private file, never in argv)
   to every repository; each must open with it. A failure here removes the new keys again: Vault
   was not touched, so the old password is still the only one in use.
3. The new password is written to Vault (check-and-set on the version read in step 1, so a change
   made meanwhile is not overwritten). From now on Vault holds the new password, which every
   repository already accepts; the old one still works too, so the files not yet re-rendered do.
4. The agent renders the new password into each password file (polled until the content is the new
   password, or the wait runs out, naming the file: then the old keys stay, and both passwords open
   every repository).
5. Each repository must open with the rendered file, and the key it opens must be the new one;
   only then is the old key removed.

Writing Vault before adding the keys would leave a window in which Vault's password opens nothing;
removing the old key before the agent rendered the new password would lock out every job.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import hvac
from loguru import logger

from runner import logs
from runner.destinations import Destination
from runner.engine import Engine
from runner.repository import Repository, RepositoryError, opened
from runner.results import RunResult, Status
from runner.secrets.files import SecretFileError, check_secret_file
from runner.settings import Settings
from runner.workspace import hand_to_job_user, job_dir, write_atomically

POLL_SECONDS = 1.0


class RotationError(Exception):
    """The rotation of one source stopped; the message says where and in what state it left things."""


def default_wait(settings: Settings) -> int:
    """How long to wait for the agent: two of its render intervals, and a margin."""
    return 2 * settings.secrets.render_interval + 30


def kv_path(source: str) -> str:
    return f"restic/{source}"


def read_password(settings: Settings, client: hvac.Client, source: str) -> tuple[dict, int]:
    """The secret holding the source's password, and its version."""
    where = f"{settings.secrets.kv_mount}/{settings.secrets.kv_prefix}/{kv_path(source)}"
    try:
        response = client.secrets.kv.v2.read_secret_version(
            path=f"{settings.secrets.kv_prefix}/{kv_path(source)}", mount_point=settings.secrets.kv_mount,
            raise_on_deleted_version=True)
    except hvac.exceptions.InvalidPath:
        raise RotationError(f"Vault has no password at {where}: run `runner vault bootstrap` first") from None
    except (hvac.exceptions.VaultError, OSError) as error:
        raise RotationError(f"Vault did not give the password at {where}: {error}") from None
    data, version = response["data"]["data"], response["data"]["metadata"]["version"]
    if not isinstance(data.get("password"), str) or not data["password"]:
        raise RotationError(f"{where} has no 'password'")
    logs.register_secret(data["password"])
    return data, version


def rotate(settings: Settings, engine: Engine, client: hvac.Client, source: str,
           destinations: list[Destination], wait: float) -> list[RunResult]:
    """Rotate the password of one source on these destinations (every enabled one: they share it)."""
    started = time.monotonic()
    try:
        outcomes = _rotate(settings, engine, client, source, destinations, wait)
    except (RotationError, RepositoryError) as error:
        logger.error("key rotation of {}: {}", source, error)
        return [RunResult(source, d.name, Status.FAILED, str(error), duration=time.monotonic() - started)
                for d in destinations]
    return [RunResult(source, name, status, message, duration=time.monotonic() - started)
            for name, (status, message) in outcomes.items()]


def _rotate(settings: Settings, engine: Engine, client: hvac.Client, source: str,
            destinations: list[Destination], wait: float) -> dict[str, tuple[Status, str]]:
    data, version = read_password(settings, client, source)
    files = list(dict.fromkeys(d.password_file(source) for d in destinations))
    for path in files:
        _rendered(settings, path, data["password"], source)
    with ExitStack() as stack:
        repositories = [stack.enter_context(opened(settings, engine, d, source)) for d in destinations]
        old = {r.destination.name: r.current_key().id for r in repositories}
        new_password = secrets.token_urlsafe(36)
        logs.register_secret(new_password)
        with _private_file(settings, source, new_password) as new_file:
            new = _add_keys(repositories, new_file)
        _store(settings, client, source, {**data, "password": new_password}, version, repositories, new)
        deadline = time.monotonic() + wait
        for path in files:
            _await_render(path, new_password, deadline, wait, old)
        return {repository.destination.name: _finish(repository, new[repository.destination.name],
                                                     old[repository.destination.name])
                for repository in repositories}


def _finish(repository: Repository, new: str, old: str) -> tuple[Status, str]:
    """Step 5 on one repository: past step 3 each repository is finished on its own, as both passwords
    open it."""
    try:
        keys = repository.keys()  # opened with the rendered password file
        current = next(key.id for key in keys if key.current)
        if current != new:
            return Status.FAILED, (f"{repository.location}: the rendered password opens key {current[:8]}, not the "
                                   f"new key {new[:8]}; the old key {old[:8]} is left in place")
        repository.remove_key(old)
    except RepositoryError as error:
        logger.error("{}: the old key {} could not be removed: {}", repository.location, old[:8], error)
        return Status.FAILED, (f"{error}; the old key {old[:8]} is left in place, and the repository opens with the "
                               "new password (in Vault) and with the old one: remove the old key with "
                               f"`restic key remove {old[:8]}`")
    logger.info("{}: new key {} in use, old key {} removed", repository.location, new[:8], old[:8])
    others = [key.id[:8] for key in keys if key.id not in (current, old)]
    kept = f"; other keys kept: {', '.join(others)}" if others else ""
    return Status.OK, f"{repository.location}: new key {new[:8]}, old key {old[:8]} removed{kept}"


def _rendered(settings: Settings, path: Path, password: str, source: str) -> None:
    try:
        check_secret_file(settings, path, f"repository password file of {source}")
    except SecretFileError as error:
        raise RotationError(str(error)) from None
    if path.read_text() != password:
        raise RotationError(f"{path} does not hold the password Vault has for {source} (a rotation whose password "
                            "the agent has not rendered yet, or a file the agent does not write): wait for the agent "
                            "to render it, then run again")


@contextmanager
def _private_file(settings: Settings, source: str, content: str) -> Iterator[Path]:
    """The new password in a file only the job user reads, removed however the rotation ends."""
    directory = job_dir(settings.paths.state_dir / "key-rotation", settings)
    path = directory / f"{source}.new-password"
    try:
        write_atomically(path, content, mode=0o400)
        hand_to_job_user(path, settings)
        yield path
    finally:
        path.unlink(missing_ok=True)


def _add_keys(repositories: list[Repository], new_file: Path) -> dict[str, str]:
    """Add the new key to every repository and open each with it; on any failure remove those added."""
    added: dict[str, str] = {}
    try:
        for repository in repositories:
            repository.add_key(new_file)
            added[repository.destination.name] = repository.with_password(new_file).current_key().id
    except RepositoryError as error:
        _remove_new_keys(repositories, added)
        raise RotationError(f"adding the new key failed: {error}; Vault was not changed, the old password "
                            "still opens every repository") from None
    return added


def _remove_new_keys(repositories: list[Repository], added: dict[str, str]) -> None:
    for repository in repositories:
        key = added.get(repository.destination.name)
        if key is None:
            continue
        try:
            repository.remove_key(key)
        except RepositoryError as error:
            logger.warning("{}: the unused new key {} could not be removed ({}); its password was never stored, "
                           "remove it with `restic key remove {}`", repository.location, key[:8], error, key)


def _store(settings: Settings, client: hvac.Client, source: str, data: dict, version: int,
           repositories: list[Repository], new: dict[str, str]) -> None:
    """Write the new password to Vault. The new keys are removed again only when Vault certainly kept the
    old password: after an answer that got lost, Vault is read back first."""
    where = f"{settings.secrets.kv_mount}/{settings.secrets.kv_prefix}/{kv_path(source)}"
    try:
        client.secrets.kv.v2.create_or_update_secret(path=f"{settings.secrets.kv_prefix}/{kv_path(source)}",
                                                     secret=data, cas=version, mount_point=settings.secrets.kv_mount)
    except (hvac.exceptions.VaultError, OSError) as error:
        try:
            holds: str | None = read_password(settings, client, source)[0]["password"]
        except (RotationError, hvac.exceptions.VaultError, OSError):
            holds = None
        if holds == data["password"]:
            logger.warning("Vault answered the write of {} with an error ({}), but holds the new password", where,
                           error)
            return
        if holds is None:
            raise RotationError(f"the write of the new password to {where} failed ({error}) and Vault cannot be "
                                "read back: the new keys are left in place, so every repository opens with the "
                                "old password and with the new one, whichever Vault holds") from None
        _remove_new_keys(repositories, new)
        changed = " (changed by someone else meanwhile)" if isinstance(error, hvac.exceptions.InvalidRequest) else ""
        raise RotationError(f"Vault refused the new password at {where}{changed}: {error}; Vault was not changed, "
                            "the old password still opens every repository") from None
    logger.info("stored the new password of {} in Vault at {}", source, where)


def _await_render(path: Path, password: str, deadline: float, wait: float, old: dict[str, str]) -> None:
    while not _holds(path, password):
        if time.monotonic() >= deadline:
            left = ", ".join(f"{key[:8]} on {name}" for name, key in old.items())
            raise RotationError(
                f"the Vault Agent did not render the new password into {path} within {wait:.0f} s (is it running?); "
                f"Vault holds the new password, and every repository opens with it and with the old one: the old "
                f"keys ({left}) are left in place. Once the agent has rendered the file, remove them with "
                "`restic key remove ID`")
        time.sleep(POLL_SECONDS)


def _holds(path: Path, password: str) -> bool:
    try:
        return path.read_text(errors="replace") == password
    except OSError:  # not rendered yet, or being replaced
        return False
