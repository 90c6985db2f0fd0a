"""One fault scenario's installation and the checks a user would make after the night went wrong."""

from __future__ import annotations

import email
import email.policy
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from click.testing import CliRunner

from runner import destinations
from runner.cli import cli
from runner.engine import Engine
from runner.monitoring.history import Run, open_history
from runner.repository import Repository
from runner.restic import Snapshot
from runner.settings import Settings
from tests.integration.conftest import private_file, write_config

SOURCES = ("vault", "postgres", "minio", "files")


@dataclass
class Outcome:
    code: int
    results: dict[tuple[str, str], dict]  # (source, destination) -> the command's JSON result
    output: str  # what the command printed, its log included

    def status(self, source: str, destination: str = "local") -> str:
        return self.results[(source, destination)]["status"]

    def message(self, source: str, destination: str = "local") -> str:
        return self.results[(source, destination)]["message"]


@contextmanager
def small_disk(path: Path, size: str) -> Iterator[Path]:
    """A filesystem of `size` mounted at `path` (created), for as long as the `with` lasts."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


class Scenario:
    def __init__(self, base: Settings, root: Path, smtp, engine: Engine):
        self.base, self.root, self.engine = base, root, engine
        self.mailbox, self.smtp_port = smtp.handler, smtp.port
        root.chmod(0o755)
        self.secrets: list[str] = []  # values that must never be printed
        self.settings: Settings | None = None
        self.data = root / "data"
        self.data.mkdir(mode=0o755)
        (self.data / "notes.txt").write_text("offsite\n" * 2000)
        (self.data / "random.bin").write_bytes(os.urandom(300_000))

    def secret(self, path: Path, value: str) -> Path:
        self.secrets.append(value)
        return private_file(path, value, self.base)

    def configure(self, sources: dict[str, dict] | None = None, destinations: dict[str, dict] | None = None,
                  **overrides) -> Settings:
        """Only the sources named (files by default), one local destination unless told."""
        for source in SOURCES:
            path = self.root / f"restic-{source}.password"
            if not path.exists():
                self.secret(path, f"repository password of {source} {secrets.token_hex(8)}")
        sources = sources if sources is not None else {"files": {}}
        chosen = {name: {"paths": [str(self.data)], **sources[name]} if name == "files" else sources[name]
                  for name in sources}
        self.settings = Settings(
            paths={**self.base.paths.model_dump(), "state_dir": self.root / "state",
                   "staging_dir": self.root / "staging"},
            restic={"password_file": str(self.root / "restic-{source}.password")},
            destinations=destinations or {"local": self.local()},
            sources={name: chosen.get(name, {"enabled": False}) for name in SOURCES},
            alerts={"email_to": ["admin@example.org"], "smtp_host": "127.0.0.1", "smtp_port": self.smtp_port,
                    "starttls": False, "smtp_login": False},
            **overrides)
        return self.settings

    def local(self, name: str = "local", **options) -> dict:
        return {"kind": "local", "path": str(self.root / "repos" / name / "{source}"), **options}

    @property
    def config(self) -> Path:
        assert self.settings is not None, "configure() first"
        return write_config(self.settings, self.root / "runner.toml")

    def run(self, *args: str, env: dict[str, str] | None = None) -> Outcome:
        """A runner command through its CLI, with --json when it reports results."""
        reporting = args[:1] in (("exec",), ("repo",))
        command = ["--config", str(self.config), *args, *(["--json"] if reporting else [])]
        result = CliRunner(env=env).invoke(cli, command, prog_name="runner")
        output = result.output
        self.assert_no_secrets(output)
        results = {}
        if reporting:
            start = result.stdout.find("[")
            assert start >= 0, f"no JSON results (exit code {result.exit_code}):\n{output[-3000:]}"
            results = {(r["source"], r["destination"]): r for r in json.loads(result.stdout[start:])}
        return Outcome(result.exit_code, results, output)

    def spawn(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        """The runner as its own process (to be killed)."""
        return subprocess.Popen([sys.executable, "-m", "runner", "--config", str(self.config), *args],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env={**os.environ, **(env or {})})

    def assert_no_secrets(self, text: str) -> None:
        leaked = [value for value in self.secrets if value in text]
        assert not leaked, f"secret value(s) printed: {len(leaked)}"

    # What the user looks at afterwards ---------------------------------------------------------

    def history(self) -> list[Run]:
        assert self.settings is not None
        return open_history(self.settings.paths.state_dir).runs()

    def recorded(self, kind: str, source: str, destination: str = "local") -> str:
        """The status of the latest recorded run of this kind."""
        runs = [r for r in self.history() if (r.kind, r.source, r.destination) == (kind, source, destination)]
        assert runs, f"no {kind} run of {source} on {destination} in the history"
        return runs[0].status

    def subjects(self) -> list[str]:
        return self.mailbox.subjects()

    def assert_alerted_once(self, kind: str, source: str, destination: str, event: str = "PROBLEM") -> str:
        """The alert mail for this problem arrived exactly once; returns its text."""
        subject = f"[offsite-backup] {event}: {kind}, {source} on {destination}"
        found = [message for message, said in zip(self.mailbox.messages, self.subjects(), strict=True)
                 if said == subject]
        assert len(found) == 1, f"{subject!r} mailed {len(found)} times; mails: {self.subjects()}"
        body = email.message_from_string(found[0], policy=email.policy.default).get_content()
        self.assert_no_secrets(body)
        return body

    def assert_not_alerted(self, source: str) -> None:
        about = [subject for subject in self.subjects() if f", {source} on " in subject]
        assert not about, about

    def repository(self, source: str, destination: str = "local") -> Repository:
        """The repository as the scenario's installation uses it: its jobs take locks `runner exec` would
        recognise as its own."""
        assert self.settings is not None
        chosen = destinations.configured(self.settings, [destination])[0]
        return Repository(Engine(self.settings), chosen, chosen.access(source))

    def snapshots(self, source: str, destination: str = "local") -> list[Snapshot]:
        return self.repository(source, destination).snapshots(source)

    def assert_check_clean(self, source: str, destination: str = "local") -> None:
        """`restic check`, reading all the data, passes on this repository (run without the runner's
        reporting, so that the history and the mailbox stay as the scenario left them)."""
        checked = self.repository(source, destination).check("all")
        assert checked.passed, checked.problems
