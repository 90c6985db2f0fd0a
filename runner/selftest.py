"""Proves the host can do the job end to end: a job container backs a directory up into a local
restic repository, another restores it, and the restored files must equal the originals."""

from __future__ import annotations

import hashlib
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from runner import logs
from runner.destinations import Local
from runner.engine import Engine, Mount
from runner.repository import Repository, RepositoryError
from runner.restic import Snapshot
from runner.settings import LocalDestination, Settings
from runner.workspace import hand_to_job_user, job_dir, remove_tree

NAME = "selftest"
DATA = "/data"


class SelftestFailed(Exception):
    pass


@dataclass
class Report:
    repository: Path
    snapshot_id: str
    files: int
    bytes: int
    snapshots: list[Snapshot] = field(default_factory=list)


def write_sample(directory: Path) -> None:
    """A small tree with what trips backups up: binary data, empty files, nesting, odd names, links."""
    (directory / "nested" / "deeper").mkdir(parents=True, exist_ok=True)
    (directory / "README.txt").write_text("A sample directory backed up by `runner selftest`.\n")
    (directory / "nested" / "random.bin").write_bytes(os.urandom(256 * 1024))
    (directory / "nested" / "deeper" / "empty").write_bytes(b"")
    (directory / "nested" / "naïve name with spaces.txt").write_text("unicode and spaces\n")
    link = directory / "link-to-readme"
    if not link.is_symlink():
        link.symlink_to("README.txt")


def tree_fingerprint(root: Path) -> dict[str, str]:
    """Relative path -> content hash (files), link target (symlinks) or 'dir'."""
    found = {}
    for path in sorted(root.rglob("*")):
        relative = str(path.relative_to(root))
        if path.is_symlink():
            found[relative] = "link:" + os.readlink(path)
        elif path.is_dir():
            found[relative] = "dir"
        else:
            found[relative] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def differences(original: dict[str, str], restored: dict[str, str]) -> list[str]:
    problems = [f"missing after restore: {p}" for p in sorted(original.keys() - restored.keys())]
    problems += [f"unexpected after restore: {p}" for p in sorted(restored.keys() - original.keys())]
    problems += [f"differs after restore: {p}" for p in sorted(original.keys() & restored.keys())
                 if original[p] != restored[p]]
    return problems


class Selftest:
    def __init__(self, settings: Settings, engine: Engine):
        self.settings = settings
        self.engine = engine
        home = settings.paths.state_dir / "selftest"
        self.repository = home / "repository"
        self.password_file = home / "password"
        self.home = home

    def _password(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not self.password_file.exists():
            temporary = self.password_file.with_suffix(".tmp")
            temporary.write_text(secrets.token_urlsafe(32))
            temporary.chmod(0o400)
            hand_to_job_user(temporary, self.settings)
            temporary.rename(self.password_file)
        logs.register_secret(self.password_file.read_text())

    def _repository(self) -> Repository:
        """The self test's own local repository, reached like any destination's."""
        config = LocalDestination(kind="local", path=str(self.repository), password_file=str(self.password_file))
        destination = Local(NAME, config, self.settings)
        repository = Repository(self.engine, destination, destination.access(NAME, create=True))
        if not repository.exists():
            repository.init()
        return repository

    def run(self, source: Path | None = None) -> Report:
        self._password()
        staging = job_dir(self.settings.paths.staging_dir, self.settings)
        sample = source or staging / "selftest-sample"
        restore_to = staging / f"selftest-restore-{secrets.token_hex(4)}"
        try:
            if source is None:
                write_sample(sample)
            repository = self._repository()
            stored = repository.backup(tags=[NAME], paths=[DATA], mounts=[Mount(sample, DATA)], host=NAME).summary
            snapshots = repository.snapshots(NAME)
            repository.restore(next(s for s in snapshots if s.id == stored.snapshot_id), restore_to)
            problems = differences(tree_fingerprint(sample), tree_fingerprint(restore_to / DATA.lstrip("/")))
            if problems:
                raise SelftestFailed("restored files differ from the originals: " + "; ".join(problems[:10]))
            return Report(repository=self.repository, snapshot_id=stored.snapshot_id, files=stored.files_processed,
                          bytes=stored.bytes_processed, snapshots=snapshots)
        except RepositoryError as error:
            raise SelftestFailed(str(error)) from None
        finally:
            remove_tree(restore_to)
            if source is None:
                remove_tree(sample)
