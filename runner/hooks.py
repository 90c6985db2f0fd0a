"""A source's hooks (sources.<name>.hooks): commands run with `podman exec`, containers stopped for the
duration of the backup, and HTTP requests, before and after its backup. No host shell is ever used.

`before` hooks run in order; the first that fails fails the backup. Containers a `stop` hook stopped are
started again when the backup ends, whatever its outcome, also when the runner is stopped (systemd's
SIGTERM unwinds through `finish`). Which containers are down is written to a state file before each one
is stopped, so that a runner killed outright leaves them listed: the next backup of the source starts
them first, and says so (one that cannot be started stays listed, and fails each backup until it
starts). Then `on_error` (when the backup failed) and `after` run; their failures are
reported, never raised. Every hook has a time limit; each is one line in the log at INFO, its output at DEBUG.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import requests
from loguru import logger

from runner import logs
from runner.engine import Engine, ExecResult, JobError
from runner.results import unexpected
from runner.secrets.files import SecretFileError, check_secret_file
from runner.settings import ExecHook, HookSettings, HttpHook, Settings, StopHook
from runner.units import duration_text

OUTPUT_SHOWN = 200  # characters of a failing hook's output quoted in its error


class HookError(Exception):
    """A hook failed: its message names the hook and says why."""


def state_file(settings: Settings, source: str) -> Path:
    """Where the containers a `stop` hook of the source has stopped (and not yet started again) are listed."""
    return settings.paths.state_dir / "hooks" / f"{source}-stopped.json"


@dataclass
class SourceHooks:
    """One backup's hooks for one source; `before` then `finish`, always both (finish in a `finally`)."""

    settings: Settings
    engine: Engine
    source: str
    stopped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what the results should mention (containers recovered)

    @property
    def config(self) -> HookSettings:
        return getattr(self.settings.sources, self.source).hooks

    def recover(self) -> None:
        """Start the containers an earlier backup of this source stopped and, killed, never started again."""
        path = state_file(self.settings, self.source)
        if not path.exists():
            return
        try:
            left = json.loads(path.read_text())
            names, since = list(left["containers"]), str(left["since"])
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise HookError(f"{path}: unreadable list of containers stopped by an earlier backup ({error}); "
                            "start them by hand and delete the file") from None
        started = []
        for name in names:
            try:
                self.engine.start_container(name)
            except JobError as error:  # tried again when this backup ends, and reported then
                logger.error("{}: {}, left stopped by the backup interrupted at {}", self.source, error, since)
                self.stopped.append(name)
                continue
            started.append(name)
            logger.warning("{}: started container {} again, which the backup interrupted at {} had stopped",
                           self.source, name, since)
        self._write_state()
        if started:
            self.notes.append(f"started {', '.join(started)} again, left stopped by the backup interrupted at {since}")

    def check(self) -> list[str]:
        """What `exec backup --dry-run` can tell without running a hook: containers that do not exist, URL
        files that cannot be used."""
        problems = []
        for phase in ("before", "on_error", "after"):
            for hook in getattr(self.config, phase):
                names = hook.containers if isinstance(hook, StopHook) else [hook.container] \
                    if isinstance(hook, ExecHook) else []
                problems += [f"{phase} hook {describe(hook)}: there is no container {name}" for name in names
                             if not self.engine.container_status(name).exists]
                if isinstance(hook, HttpHook) and hook.url_file:
                    try:
                        _url_from_file(self.settings, hook)
                    except HookError as error:
                        problems.append(f"{phase} hook {describe(hook)}: {error}")
        return problems

    def before(self) -> None:
        for hook in self.config.before:
            self._run("before", hook)

    def finish(self, failed: bool) -> list[str]:
        """Start what was stopped, then run on_error (when `failed`) and after: every problem, none raised."""
        problems = self._restart()
        for phase, hooks in (("on_error", self.config.on_error if failed else []), ("after", self.config.after)):
            for hook in hooks:
                try:
                    self._run(phase, hook)
                except HookError as error:
                    problems.append(str(error))
        return problems

    def _run(self, phase: str, hook: ExecHook | StopHook | HttpHook) -> None:
        what = f"{phase} hook {describe(hook)}"
        started = datetime.now(UTC)
        try:
            if isinstance(hook, StopHook):
                self._stop(hook)
            elif isinstance(hook, ExecHook):
                _exec(self.engine, hook)
            else:
                _request(self.settings, hook)
        except Exception as error:  # whatever went wrong, the hook failed
            reason = str(error) if isinstance(error, HookError | JobError) else unexpected(error)
            message = f"{what} failed: {reason}"
            logger.error("{}: {}", self.source, message)
            raise HookError(message) from None
        took = (datetime.now(UTC) - started).total_seconds()
        logger.info("{}: {} ok in {}", self.source, what, duration_text(took))

    def _stop(self, hook: StopHook) -> None:
        for name in hook.containers:
            status = self.engine.container_status(name)
            if not status.exists:
                raise HookError(f"there is no container {name}")
            if status.state != "running":
                logger.info("{}: container {} is {}, left so", self.source, name, status.state or "not running")
                continue
            self.stopped.append(name)
            self._write_state()  # first: a runner killed while it stops the container still knows of it
            self.engine.stop_container(name, hook.timeout)

    def _restart(self) -> list[str]:
        problems: list[str] = []
        failed: list[str] = []
        for name in reversed(self.stopped):
            try:
                self.engine.start_container(name)
                logger.info("{}: started container {} again", self.source, name)
            except JobError as error:
                failed.insert(0, name)
                problems.append(f"{error}; it stays stopped: start it by hand (`podman start {name}`)")
                logger.error("{}: {}", self.source, problems[-1])
        self.stopped = failed  # still listed: the next backup of the source tries again
        try:
            self._write_state()
        except OSError as error:
            problems.append(f"could not update {state_file(self.settings, self.source)}: {error}")
        return problems

    def _write_state(self) -> None:
        path = state_file(self.settings, self.source)
        if not self.stopped:
            path.unlink(missing_ok=True)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps({"containers": self.stopped, "pid": os.getpid(),
                                         "since": datetime.now(UTC).isoformat(timespec="seconds")}))
        temporary.replace(path)


def describe(hook: ExecHook | StopHook | HttpHook) -> str:
    """The hook in a few words, nothing secret: 'exec in db: redis-cli save', 'stop app, worker',
    'http POST https://example.net/hook', 'http GET (URL in /run/.../ping-url)'."""
    if isinstance(hook, StopHook):
        return f"stop {', '.join(hook.containers)}"
    if isinstance(hook, ExecHook):
        return f"exec in {hook.container}: {logs.format_command(hook.command)}"
    return f"http {hook.method} " + (logs.mask(hook.url) if hook.url else f"(URL in {hook.url_file})")


def _exec(engine: Engine, hook: ExecHook) -> None:
    """The command in its container, bounded by its timeout: past it, the hook fails (Podman cannot stop an
    exec session; the command may go on in the container, so it is named in the error)."""
    outcome: list[ExecResult | Exception] = []
    output: list[bytes] = []

    def run() -> None:
        try:
            outcome.append(engine.exec_in(hook.container, list(hook.command), hook.user, on_stdout=output.append,
                                          stderr_level="DEBUG"))
        except Exception as error:  # handed to the waiting thread
            outcome.append(error)

    thread = threading.Thread(target=run, name=f"hook-exec-{hook.container}", daemon=True)
    thread.start()
    thread.join(hook.timeout)
    for line in b"".join(output).decode("utf-8", "replace").splitlines():
        logger.debug("[exec {}] {}", hook.container, line)
    if not outcome:
        raise HookError(f"still running after {hook.timeout} s (it may go on in {hook.container})")
    result = outcome[0]
    if isinstance(result, Exception):
        raise HookError(f"could not run it in container {hook.container}: {result}")
    if result.exit_code != 0:
        said = " | ".join(result.stderr_tail[-3:]) or b"".join(output).decode("utf-8", "replace").strip()
        raise HookError(f"exited with code {result.exit_code}" + (f": {said[-OUTPUT_SHOWN:]}" if said else ""))


def _request(settings: Settings, hook: HttpHook) -> None:
    url = hook.url or _url_from_file(settings, hook)
    try:
        response = requests.request(hook.method, url, timeout=hook.timeout, allow_redirects=False)
    except requests.Timeout:
        raise HookError(f"no answer within {hook.timeout} s") from None
    except requests.RequestException as error:
        # the message quotes the URL, which may carry a token
        reason = str(error).replace(url, "<url>") if hook.url_file else str(error)
        raise HookError(f"request failed: {type(error).__name__}: {logs.mask(reason)}") from None
    logger.debug("http hook {}: {} {}", describe(hook), response.status_code, logs.mask(response.text[:OUTPUT_SHOWN]))
    wanted = hook.expected_status
    if (response.status_code != wanted) if wanted else not 200 <= response.status_code < 300:
        expected = f"{wanted}" if wanted else "2xx"
        raise HookError(f"answered {response.status_code} {response.reason}, not {expected}")


def _url_from_file(settings: Settings, hook: HttpHook) -> str:
    assert hook.url_file is not None  # the settings give a hook url or url_file
    try:
        check_secret_file(settings, hook.url_file, "url_file")
        url = hook.url_file.read_text().strip()
    except (SecretFileError, OSError) as error:
        raise HookError(str(error)) from None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or any(c.isspace() for c in url):
        raise HookError(f"{hook.url_file} does not hold one http:// or https:// URL")
    return url
