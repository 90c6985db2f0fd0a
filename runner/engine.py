"""Runs job specs as ephemeral, hardened Podman containers. The only module that imports podman.

One job: create -> attach to its output -> start -> stream its output to the log until it ends -> wait
(bounded by the timeout, after which the container is killed) -> collect the exit code -> remove, always.

The output comes through one attach connection made before the start (as `podman run` gets it): it ends the
moment the job's process does, and a slow reader holds the job back rather than losing output. Following the
log file instead costs about half a second per job (Podman notices the exit by polling), which is most of a
short job's cost.
"""

from __future__ import annotations

import fnmatch
import glob
import hashlib
import json
import os
import secrets
import shutil
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import podman
import requests
from loguru import logger
from podman import api
from podman.errors import APIError, NotFound, PodmanError

from runner import logs
from runner.restic import Progress
from runner.settings import Settings
from runner.units import duration_text

LABEL = "io.offsite-backup"
MANAGED_LABEL = f"{LABEL}.managed"
JOB_LABEL = f"{LABEL}.job"
DEADLINE_LABEL = f"{LABEL}.deadline"
INSTANCE_LABEL = f"{LABEL}.instance"  # which installation (state directory) made the container
HOSTNAME_LABEL = f"{LABEL}.hostname"
NAME_PREFIX = "offsite-backup-"
# Every job container gets a host name of its own, <prefix><this installation on this machine>-<random>:
# restic writes it into its locks, so a lock tells which job took it, and whether that job still
# exists (its container carries the host name as a label).
JOB_HOSTNAME_PREFIX = "offsite-backup-job-"
# The one host name every job container had before: such locks are judged by their age.
LEGACY_JOB_HOSTNAME = "offsite-backup-job"

# Host directories a job may never be given whole: a mistake in a mount must not expose or endanger the host.
FORBIDDEN_MOUNT_SOURCES = frozenset(
    Path(p) for p in ("/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib64", "/media", "/mnt", "/opt",
                      "/proc", "/root", "/run", "/run/user", "/sbin", "/srv", "/sys", "/tmp", "/usr", "/var",
                      "/var/cache", "/var/lib", "/var/log", "/var/tmp", "/run/podman")
)
# Trees a job may see nothing of: no path inside one, and no directory holding one ('*' stands for any one
# name): the host's password hashes, kernel, devices and root's home, and what controls Podman (its sockets,
# storage and registry credentials). Engine adds this host's own (podman.url's socket, the runner user's
# Podman storage and runtime directory).
SENSITIVE_TREES = (
    "/boot", "/dev", "/proc", "/sys", "/root", "/etc/shadow", "/etc/shadow-", "/etc/gshadow", "/etc/gshadow-",
    "/etc/sudoers", "/etc/sudoers.d", "/run/podman", "/run/containers", "/run/libpod", "/run/docker",
    "/run/docker.sock", "/run/containerd", "/run/dbus", "/run/systemd",
    "/run/user/*/podman", "/run/user/*/containers", "/run/user/*/libpod", "/run/user/*/bus", "/run/user/*/systemd",
    "/var/lib/containers", "/var/lib/docker", "/home/*/.local/share/containers", "/home/*/.config/containers",
)
# The capabilities a job may be given back: reading every file whatever its permissions (the files source
# reads configuration such as root's 0600 files; the mounts are read-only, so it can change nothing).
JOB_CAPABILITIES = frozenset({"DAC_READ_SEARCH"})
# What the entrypoint of an image that starts as root (the official postgres image's contract) needs before
# it drops to its own user: to hand the data directory to that user (CHOWN, DAC_OVERRIDE, FOWNER), and to
# switch to it (SETGID, SETUID). A service whose image starts as a user gets no capability at all.
ROOT_ENTRYPOINT_CAPABILITIES = ("CHOWN", "DAC_OVERRIDE", "FOWNER", "SETGID", "SETUID")
OUTPUT_LIMIT = 32 * 1024 * 1024  # bytes of stdout kept for parsing; the log gets everything
TAIL_LINES = 30
PROGRESS_SECONDS = 10  # at most one progress line per job this often in the log (a bar on a terminal follows each)
# restic writes its JSON status lines only when told how often (without a terminal, by default never): a job with
# a progress parser asks for one a second.
PROGRESS_ENV = {"RESTIC_PROGRESS_FPS": "1"}
# A leftover is an exited or never-started job container older than this (a live run removes its
# own containers within seconds of their exit).
LEFTOVER_GRACE_SECONDS = 120
# How often Podman looks for the exit once the job's output has ended (its default, 250 ms, was most of a short
# job's cost); while the output flows no one polls.
EXIT_POLL_INTERVAL = "20ms"


class JobError(Exception):
    """A job could not be run as specified (bad mount, missing image, secret in argv...)."""


class EngineUnavailable(JobError):
    """The Podman API cannot be reached."""


@dataclass(frozen=True)
class Mount:
    source: Path
    target: str
    read_only: bool = True


@dataclass(frozen=True)
class JobSpec:
    name: str
    argv: tuple[str, ...]
    image: str | None = None  # None: the tools image
    mounts: tuple[Mount, ...] = ()
    networks: tuple[str, ...] = ()  # Podman networks to join, or ("host",); none: no network at all
    env: Mapping[str, str] = field(default_factory=dict)  # never secrets: `podman inspect` shows them
    timeout: int | None = None  # seconds; None: settings.jobs.timeout
    labels: Mapping[str, str] = field(default_factory=dict)
    user: str | None = None  # None: settings.jobs.user
    entrypoint: tuple[str, ...] | None = None  # None: the image's
    capabilities: tuple[str, ...] = ()  # added back after every one is dropped; only JOB_CAPABILITIES
    hostname: str | None = None  # None: a new job host name (job_hostname)
    # Turns a stdout line into a progress message (or None): logged at INFO at most every PROGRESS_SECONDS, and a
    # bar on a terminal. A restic.Progress also gives the fraction done, or is the job's summary (final), which
    # the line that ends the job says. Progress lines are not kept in JobResult.stdout.
    progress: Callable[[str], str | None] | None = field(default=None, compare=False)


@dataclass
class JobResult:
    name: str
    container: str
    exit_code: int | None
    timed_out: bool
    duration: float
    stdout: list[str]
    stderr_tail: list[str]
    output_tail: list[str]

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out

    def describe(self) -> str:
        if self.timed_out:
            outcome = f"timed out after {self.duration:.0f} s and was killed"
        else:
            outcome = f"exited with code {self.exit_code}"
        tail = "\n".join(f"    {line}" for line in self.output_tail[-10:])
        return f"job {self.name} ({self.container}) {outcome}" + (f"; last output:\n{tail}" if tail else "")


def check_mount(mount: Mount, sensitive: Iterable[str] = SENSITIVE_TREES) -> Mount:
    """The mount with its source resolved (symbolic links followed), checked: that resolved path is what
    Podman is given, so retargeting a link after the check cannot redirect the mount."""
    source = Path(mount.source)
    if not source.is_absolute() or not mount.target.startswith("/"):
        raise JobError(f"mount {source} -> {mount.target}: both paths must be absolute")
    resolved = source.resolve()
    refusal = mount_refusal(resolved, sensitive)
    if refusal:
        through = f" (through {source})" if resolved != source else ""
        raise JobError(f"mount {source} -> {mount.target}: refusing to give a job {refusal}{through}")
    if not resolved.exists():
        raise JobError(f"mount {source} -> {mount.target}: {source} does not exist")
    return Mount(resolved, mount.target, mount.read_only)


def mount_refusal(path: Path, sensitive: Iterable[str] = SENSITIVE_TREES) -> str | None:
    """Why a job may not be given this (resolved) host path, or None."""
    if path in FORBIDDEN_MOUNT_SOURCES:
        return f"the host's {path}"
    for tree in sensitive:
        pattern = Path(tree).parts
        if not all(fnmatch.fnmatchcase(part, want) for part, want in zip(path.parts, pattern, strict=False)):
            continue
        if len(path.parts) >= len(pattern):
            return f"{path}, which is in {tree}"
        held = next(path.glob(str(Path(*pattern[len(path.parts):]))), None)
        if held is not None:
            return f"{path}, which holds {held}"
    return None


def local_sensitive_trees(settings: Settings) -> tuple[str, ...]:
    """SENSITIVE_TREES, and this host's own: the socket of podman.url, and the Podman storage, configuration
    and sockets of the user the runner runs as; each also as it resolves (when a link leads elsewhere)."""
    home = os.path.expanduser("~")
    data = os.environ.get("XDG_DATA_HOME") or f"{home}/.local/share"
    config = os.environ.get("XDG_CONFIG_HOME") or f"{home}/.config"
    own = [f"{data}/containers", f"{config}/containers"]
    if settings.podman.url.startswith("unix://"):
        own.append(settings.podman.url.removeprefix("unix://"))
    if os.environ.get("XDG_RUNTIME_DIR"):
        own += [f"{os.environ['XDG_RUNTIME_DIR']}/{name}" for name in ("podman", "containers", "libpod")]
    trees = [*SENSITIVE_TREES, *(glob.escape(path) for path in own if path.startswith("/"))]
    return tuple(dict.fromkeys([*trees, *map(_resolved_tree, trees)]))


def _resolved_tree(tree: str) -> str:
    """The tree with the links in its fixed part (up to the first wildcard) resolved."""
    parts = Path(tree).parts
    fixed = next((i for i, part in enumerate(parts) if any(c in part for c in "*?[")), len(parts))
    return str(Path(*parts[:fixed]).resolve().joinpath(*parts[fixed:]))


def check_capabilities(spec: JobSpec) -> None:
    refused = sorted(set(spec.capabilities) - JOB_CAPABILITIES)
    if refused:
        raise JobError(f"job {spec.name}: refusing to give it {', '.join(refused)} (a job may get back only "
                       f"{', '.join(sorted(JOB_CAPABILITIES))})")


def check_no_secrets(spec: JobSpec) -> None:
    for what, text in [("command", " ".join(spec.argv)), *((f"environment {k}", v) for k, v in spec.env.items())]:
        if logs.contains_secret(text):
            raise JobError(f"job {spec.name}: refusing to put a secret value in its {what} (use a mounted file)")


def container_name(job: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    return f"{NAME_PREFIX}{job}-{stamp}-{secrets.token_hex(3)}"


def instance(settings: Settings) -> str:
    """A short name for an installation of the runner: two (a demo beside production) stay apart."""
    return hashlib.sha256(str(settings.paths.state_dir).encode()).hexdigest()[:12]


def lock_owner(settings: Settings) -> str:
    """The start of the host names of this installation's job containers on this machine."""
    owner = hashlib.sha256(f"{socket.gethostname()}:{settings.paths.state_dir}".encode()).hexdigest()[:8]
    return f"{JOB_HOSTNAME_PREFIX}{owner}-"


def job_hostname(settings: Settings) -> str:
    return f"{lock_owner(settings)}{secrets.token_hex(4)}"


def labels(settings: Settings, job: str, deadline: float) -> dict[str, str]:
    return {MANAGED_LABEL: "true", JOB_LABEL: job, DEADLINE_LABEL: str(int(deadline)),
            INSTANCE_LABEL: instance(settings)}


def container_options(spec: JobSpec, settings: Settings, name: str, deadline: float) -> dict:
    """The podman-py create() arguments for a job: hardened unless the spec asks for a network."""
    jobs = settings.jobs
    hostname = spec.hostname or job_hostname(settings)
    options = {
        "image": spec.image or settings.images.tools,
        "command": list(spec.argv),
        "name": name,
        "hostname": hostname,
        "labels": {**spec.labels, **labels(settings, spec.name, deadline), HOSTNAME_LABEL: hostname},
        "user": spec.user or jobs.user,
        "environment": dict(spec.env),
        "read_only": True,
        "cap_drop": ["ALL"],
        "no_new_privileges": True,
        **network_options(spec.networks),
        "pids_limit": jobs.pids_limit,
        "log_config": {"Type": "k8s-file"},
        "mounts": [
            {"type": "tmpfs", "source": "tmpfs", "target": "/tmp", "size": jobs.tmpfs_size},
            *({"type": "bind", "source": str(m.source), "target": m.target, "read_only": m.read_only}
              for m in spec.mounts),
        ],
    }
    if spec.entrypoint is not None:
        options["entrypoint"] = list(spec.entrypoint)
    if spec.capabilities:
        options["cap_add"] = list(spec.capabilities)
    if jobs.userns:
        options["userns_mode"] = jobs.userns
    if jobs.memory_limit:
        options["mem_limit"] = jobs.memory_limit
    return options


def service_options(settings: Settings, purpose: str, image: str, image_user: str, network: str, deadline: float,
                    env: Mapping[str, str] | None = None, command: list[str] | None = None) -> dict[str, Any]:
    """The podman-py create() arguments for a throwaway service (see Engine.service); `image_user` is the
    user the image starts as."""
    jobs = settings.jobs
    options: dict[str, Any] = {
        "image": image, "name": container_name(purpose), "environment": dict(env or {}),
        "labels": labels(settings, purpose, deadline),
        "cap_drop": ["ALL"], "no_new_privileges": True, "pids_limit": jobs.pids_limit,
        "network_mode": "bridge", "networks": {network: {}}, "log_config": {"Type": "k8s-file"},
    }
    if image_user.split(":")[0] in ("", "0", "root"):
        options["cap_add"] = list(ROOT_ENTRYPOINT_CAPABILITIES)
    if jobs.memory_limit:
        options["mem_limit"] = jobs.memory_limit
    if command:
        options["command"] = command
    return options


def network_options(networks: tuple[str, ...]) -> dict:
    if not networks:
        return {"network_mode": "none"}
    if networks == ("host",):
        return {"network_mode": "host"}
    if "host" in networks:
        raise JobError("the host network cannot be combined with other networks")
    return {"network_mode": "bridge", "networks": {name: {} for name in dict.fromkeys(networks)}}


class Engine:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.client = podman.PodmanClient(base_url=settings.podman.url)
        self.sensitive = local_sensitive_trees(settings)

    def data_refusal(self, path: Path) -> str | None:
        """Why a source's own data path (sources.files.paths), mounted read-only into a job that may read every
        file in it, must not be; None if it may. Beyond what any mount is refused: the runner's own secrets
        (paths.secrets_dir, secrets.approle_dir), whole or inside the path."""
        own = [glob.escape(str(p)) for p in (self.settings.paths.secrets_dir, self.settings.secrets.approle_dir)]
        trees = tuple(dict.fromkeys([*self.sensitive, *own, *map(_resolved_tree, own)]))
        return mount_refusal(Path(path).resolve(), trees)

    def ping(self) -> None:
        try:
            if self.client.ping():
                return
        except (PodmanError, requests.RequestException, OSError):
            pass
        raise EngineUnavailable(
            f"the Podman API does not answer at podman.url = {self.settings.podman.url!r} "
            "(start it: scripts/setup-host, or `systemctl enable --now podman.socket`)"
        )

    def image_exists(self, image: str) -> bool:
        return self.client.images.exists(image)

    def run(self, spec: JobSpec) -> JobResult:
        spec = replace(spec, mounts=tuple(check_mount(mount, self.sensitive) for mount in spec.mounts))
        check_no_secrets(spec)
        check_capabilities(spec)
        self.ping()
        image = spec.image or self.settings.images.tools
        if not self.image_exists(image):
            raise JobError(f"image {image} not found: build it with `runner images build`")

        if spec.progress:
            spec = replace(spec, env={**PROGRESS_ENV, **spec.env})
        timeout = spec.timeout or self.settings.jobs.timeout
        started = time.monotonic()
        name = container_name(spec.name)
        options = container_options(spec, self.settings, name, time.time() + timeout)
        logger.debug("job {} starting in {}: {}", spec.name, name, logs.format_command(spec.argv))
        try:
            container = self.client.containers.create(**options)
        except APIError as error:
            raise JobError(f"job {spec.name}: Podman refused to create the container: "
                           f"{error.explanation or error}") from None
        try:
            try:
                output = _attach(container)
                container.start()
            except (APIError, requests.RequestException) as error:
                raise JobError(f"job {spec.name}: Podman could not start the container: "
                               f"{_explained(error)}") from None
            readers = _OutputReaders(output, spec.name, self.settings.log.job_output, spec.progress)
            try:
                exit_code, timed_out = self._wait(container, readers, timeout)
                readers.join()
            finally:
                readers.bar.clear()
            result = JobResult(
                name=spec.name, container=name, exit_code=exit_code, timed_out=timed_out,
                duration=time.monotonic() - started, stdout=readers.stdout,
                stderr_tail=list(readers.stderr_tail), output_tail=list(readers.output_tail),
            )
        finally:
            _remove(container)
        self._log_end(result, readers)
        return result

    def _log_end(self, result: JobResult, readers: _OutputReaders) -> None:
        """The job's one line at INFO: what, where (the job's name), outcome, duration, and what it moved when its
        progress parser said so. A failure is a warning: whoever ran the job says what it means for the run."""
        took = duration_text(result.duration)
        if result.ok:
            logger.info("job {}: ok in {}{}", result.name, took, f", {readers.summary}" if readers.summary else "")
            return
        outcome = (f"timed out after {took} and was killed" if result.timed_out
                   else f"exited with code {result.exit_code} after {took}")
        where = f" (at {readers.latest})" if readers.latest else ""
        said = ""
        if self.settings.log.job_output != "INFO" and result.output_tail:  # else its stderr is in the log above
            said = "; last output: " + " | ".join(result.output_tail[-5:])
        logger.warning("job {}: {}{}{}", result.name, outcome, where, said)

    def _wait(self, container, readers: _OutputReaders, timeout: int) -> tuple[int | None, bool]:
        """The exit code, or (None, True) when the job outlived its timeout and was killed. The output ends when
        the job's process does; Podman is asked for the exit code only then (or when the output was closed early)."""
        deadline = time.monotonic() + timeout
        readers.join(timeout)
        try:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise requests.Timeout(f"the output went on past {timeout} s")
            return int(container.wait(condition=["exited", "stopped"], interval=EXIT_POLL_INTERVAL,
                                      timeout=remaining)), False
        except (APIError, requests.RequestException) as error:
            if not _is_timeout(error):
                raise
            logger.warning("job container {} exceeded its {} s timeout: killing it", container.name, timeout)
            try:
                container.kill()
                container.wait(condition=["exited", "stopped"], timeout=30)
            except (APIError, NotFound, requests.RequestException) as error:
                logger.warning("could not kill {}: {}", container.name, error)
            return None, True

    def container_status(self, name: str) -> ContainerStatus:
        """State of a service's container (not a job's): running?, health, address per network."""
        try:
            container = self.client.containers.get(name)
        except NotFound:
            return ContainerStatus(name, exists=False)
        inspected = container.inspect()
        state = inspected.get("State", {})
        health = (state.get("Health") or state.get("Healthcheck") or {}).get("Status", "")
        networks = inspected.get("NetworkSettings", {}).get("Networks", {}) or {}
        return ContainerStatus(name, True, state.get("Status", ""), health,
                               {net: info.get("IPAddress", "") for net, info in networks.items()})

    def stop_container(self, name: str, timeout: int) -> None:
        """Stop a service's container (not a job's), giving it `timeout` seconds before it is killed."""
        try:
            self.client.containers.get(name).stop(timeout=timeout)
        except (APIError, requests.RequestException) as error:
            raise JobError(f"could not stop container {name}: {_explained(error)}") from None

    def start_container(self, name: str) -> None:
        try:
            self.client.containers.get(name).start()
        except (APIError, requests.RequestException) as error:
            raise JobError(f"could not start container {name}: {_explained(error)}") from None

    def exec_in(self, name: str, argv: list[str], user: str = "", on_stdout=None,
                stderr_level: str = "INFO") -> ExecResult:
        """Run argv inside a running service container. stdout goes to on_stdout (chunks) when
        given, else it is kept; stderr is logged (at stderr_level) and its tail kept."""
        container = self.client.containers.get(name)
        client = container.client
        assert client is not None  # a container fetched from the API carries its client
        body: dict[str, object] = {"AttachStdout": True, "AttachStderr": True, "Cmd": list(argv), "Tty": False}
        if user:
            body["User"] = user
        logger.debug("exec in {}: {}", name, logs.format_command(argv))
        created = client.post(f"/containers/{name}/exec", data=json.dumps(body))
        created.raise_for_status()
        exec_id = created.json()["Id"]
        started = client.post(f"/exec/{exec_id}/start", data=json.dumps({"Detach": False, "Tty": False}),
                              stream=True)
        started.raise_for_status()
        kept: list[bytes] = []
        stderr_tail: deque[str] = deque(maxlen=TAIL_LINES)
        pending = b""
        for out, err in api.stream_frames(started, demux=True):
            assert isinstance(out, bytes | None) and isinstance(err, bytes | None)  # demux=True: (stdout, stderr)
            if out:
                if on_stdout:
                    on_stdout(out)
                else:
                    kept.append(out)
            if err:
                pending += err
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    text = line.decode("utf-8", "replace")
                    logger.log(stderr_level, "[exec {}] {}", name, text)
                    stderr_tail.append(text)
        if pending:
            stderr_tail.append(pending.decode("utf-8", "replace"))
        inspected = client.get(f"/exec/{exec_id}/json")
        inspected.raise_for_status()
        return ExecResult(inspected.json().get("ExitCode"), b"".join(kept), list(stderr_tail))

    def job_alive(self, hostname: str) -> bool:
        """Whether a job container with this host name exists and has not ended."""
        found = self.client.containers.list(all=True, filters={"label": f"{HOSTNAME_LABEL}={hostname}"})
        return any(container.attrs.get("State") not in ("exited", "stopped", "dead") for container in found)

    def job_containers(self) -> list:
        """This installation's job and service containers, and those without an installation label (made by
        a runner from before that label, so possibly another installation's)."""
        found = self.client.containers.list(all=True, filters={"label": f"{MANAGED_LABEL}=true"})
        return [container for container in found if self._mine_or_unlabelled(container.labels or {})]

    def leftovers(self, include_running: bool = False, grace: float = LEFTOVER_GRACE_SECONDS) -> list:
        """Job containers no live run is responsible for. `include_running` adds this installation's running
        ones, never a running one without an installation label: it may be another installation's live job."""
        now = time.time()
        found = []
        for container in self.job_containers():
            state = container.attrs.get("State", "")
            created = _created_epoch(container)
            deadline = float(container.labels.get(DEADLINE_LABEL, 0) or 0)
            stale = state != "running" and now - created > grace
            overdue = state == "running" and deadline and now > deadline + grace
            if stale or overdue or (include_running and INSTANCE_LABEL in container.labels):
                found.append(container)
        return found

    def _mine_or_unlabelled(self, labels: Mapping[str, str]) -> bool:
        return labels.get(INSTANCE_LABEL, instance(self.settings)) == instance(self.settings)

    def remove(self, container, attempts: int = 5) -> None:
        """Remove a leftover job container; a container caught between states (a start a killed runner
        asked for, still under way) refuses removal for a moment, so it is asked again."""
        for attempt in range(attempts):
            try:
                container.remove(force=True, v=True)
                return
            except NotFound:
                return
            except (APIError, requests.RequestException) as error:
                if attempt == attempts - 1:
                    logger.warning("could not remove job container {}: {}", container.name, _explained(error))
                    return
                time.sleep(1)

    def remove_unused_networks(self, grace: float = LEFTOVER_GRACE_SECONDS) -> list[str]:
        """Remove this installation's isolated networks (and unlabelled ones, as job_containers) that no
        container uses any more and that are older than `grace` (a restore test creates its network a moment
        before its containers)."""
        removed = []
        for network in self.client.networks.list(filters={"label": f"{MANAGED_LABEL}=true"}):
            if not self._mine_or_unlabelled(network.attrs.get("labels") or {}):
                continue  # another installation's
            if time.time() - _epoch(network.attrs.get("created", 0)) < grace:
                continue
            try:
                network.remove()  # without force: a network still in use stays
                removed.append(network.name)
            except (APIError, requests.RequestException):
                continue
        return removed

    @contextmanager
    def isolated_network(self, purpose: str):
        """A throwaway internal network: its containers reach each other and nothing else."""
        name = container_name(purpose)
        network = self.client.networks.create(name, internal=True, labels={
            MANAGED_LABEL: "true", INSTANCE_LABEL: instance(self.settings)})
        logger.info("created isolated network {}", name)
        try:
            yield name
        finally:
            try:
                network.remove(force=True)
            except (APIError, NotFound, requests.RequestException) as error:
                logger.warning("could not remove network {}: {} (`runner jobs gc` will)", name, error)

    @contextmanager
    def service(self, purpose: str, image: str, network: str, *, env: Mapping[str, str] | None = None,
                command: list[str] | None = None, timeout: int = 3600):
        """A throwaway service container (a database for a restore test) on one network; removed on exit.

        Hardened as far as database images allow: every capability dropped (an image that starts as root,
        as the official postgres image does, gets back only ROOT_ENTRYPOINT_CAPABILITIES, which its entrypoint
        needs before it drops to its own user), no-new-privileges, the jobs' process and memory limits, and
        `network` only. Unlike a job it keeps the image's user and a writable root: database images write
        their data directory, sockets and lock files into the image's file system, in places that depend on
        the image; those writes go with the container."""
        if not self.image_exists(image):
            raise JobError(f"image {image} not found (pull or build it first)")
        image_user = (self.client.images.get(image).attrs.get("Config") or {}).get("User") or ""
        options = service_options(self.settings, purpose, image, image_user, network, time.time() + timeout, env,
                                  command)
        name = options["name"]
        container = self.client.containers.create(**options)
        try:
            container.start()
            container.reload()
            address = container.attrs["NetworkSettings"]["Networks"][network]["IPAddress"]
            logger.info("started {} ({}) at {} on {}", name, image, address, network)
            yield ServiceHandle(name, address)
        finally:
            _remove(container)


@dataclass(frozen=True)
class ContainerStatus:
    name: str
    exists: bool
    state: str = ""  # "running", "exited", ...
    health: str = ""  # "healthy", "unhealthy", "starting", or "" without a health check
    addresses: dict[str, str] = field(default_factory=dict)  # network -> IP address


@dataclass(frozen=True)
class ServiceHandle:
    name: str
    address: str


@dataclass(frozen=True)
class ExecResult:
    exit_code: int | None
    stdout: bytes
    stderr_tail: list[str]


def _attach(container):
    """The container's output stream (stdout and stderr multiplexed), attached before it starts so nothing is
    missed: Podman readies the container for it (the start that follows is then quick)."""
    response = container.client.post(f"/containers/{container.id}/attach", stream=True,
                                      params={"stream": "true", "stdout": "true", "stderr": "true", "logs": "false"})
    response.raise_for_status()
    return response


class _OutputReaders:
    """Reads a container's attached output in a thread, logging each line of stdout and stderr as it arrives."""

    def __init__(self, output, job: str, level: str, progress=None):
        self.progress = progress
        self._last_progress = time.monotonic()  # a job shorter than PROGRESS_SECONDS logs no progress line
        self.latest: str | None = None  # the last progress message
        self.summary: str | None = None  # the job's summary, from its progress parser
        self.bar = _Bar(job, sys.stderr if progress else None)
        self.stdout: list[str] = []
        self.stderr_tail: deque[str] = deque(maxlen=TAIL_LINES)
        self.output_tail: deque[str] = deque(maxlen=TAIL_LINES)
        self._kept = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._follow, args=(output, job, level), daemon=True)
        self._thread.start()

    def _follow(self, output, job: str, level: str) -> None:
        try:
            for is_stdout, line in _demuxed_lines(api.stream_frames(output, demux=True)):
                with self.bar.cleared():
                    logger.log("DEBUG" if is_stdout else level, "[{}] {}", job, line)
                if is_stdout and self.progress and self._report_progress(job, line):
                    continue  # progress is not output: it would push the job's result out of what is kept
                with self._lock:
                    self.output_tail.append(line)
                    if is_stdout:
                        self._kept += len(line)
                        if self._kept <= OUTPUT_LIMIT:
                            self.stdout.append(line)
                    else:
                        self.stderr_tail.append(line)
        except (APIError, NotFound, requests.RequestException, OSError) as error:
            logger.debug("output of {} ended: {}", job, error)
        finally:
            output.close()

    def _report_progress(self, job: str, line: str) -> bool:
        """Show the progress the line tells of; whether it was a progress line (not the summary, nor other output)."""
        try:
            message = self.progress(line)
        except ValueError:
            return False
        if not message:
            return False
        if isinstance(message, Progress) and message.final:
            self.summary = str(message)
            return False
        self.latest = str(message)
        self.bar.show(message)
        if time.monotonic() - self._last_progress >= PROGRESS_SECONDS:
            self._last_progress = time.monotonic()
            with self.bar.cleared():
                logger.info("[{}] {}", job, message)
        return True

    def join(self, timeout: float = 30) -> None:
        self._thread.join(timeout=timeout)


class _Bar:
    """A job's progress as one line at the bottom of a terminal (nothing when `stream` is not one): cleared
    while a log line is written, then drawn again."""

    WIDTH = 24

    def __init__(self, job: str, stream: TextIO | None):
        self.job = job
        self.stream = stream if stream is not None and stream.isatty() else None
        self.line = ""
        self._lock = threading.RLock()

    def show(self, message: str) -> None:
        if self.stream is None:
            return
        fraction = message.fraction if isinstance(message, Progress) else None
        filled = round(fraction * self.WIDTH) if fraction is not None else None
        bar = "" if filled is None else "█" * filled + "░" * (self.WIDTH - filled) + " "
        with self._lock:
            self.line = f"{self.job} {bar}{message}"[:shutil.get_terminal_size().columns - 1]
            self._draw()

    def _draw(self) -> None:
        assert self.stream is not None
        self.stream.write(f"\r\x1b[2K{self.line}")
        self.stream.flush()

    def clear(self) -> None:
        with self._lock:
            if self.stream is not None and self.line:
                self.stream.write("\r\x1b[2K")
                self.stream.flush()
                self.line = ""

    @contextmanager
    def cleared(self):
        """The bar taken away for the time of a log line, and drawn again after it."""
        if self.stream is None or not self.line:
            yield
            return
        with self._lock:
            line = self.line
            self.clear()
            try:
                yield
            finally:
                self.line = line
                self._draw()


def _demuxed_lines(frames: Iterable[Any]) -> Iterator[tuple[bool, str]]:
    """(is_stdout, line) for each line of the two streams (frames: demuxed (stdout, stderr) pairs), in the order
    the lines were completed."""
    pending = {True: b"", False: b""}
    for frame in frames:
        for is_stdout, data in zip((True, False), frame, strict=True):
            if not data:
                continue
            pending[is_stdout] += data
            *complete, pending[is_stdout] = pending[is_stdout].split(b"\n")
            for line in complete:
                yield is_stdout, line.decode("utf-8", "replace").rstrip("\r")
    for is_stdout, rest in pending.items():
        if rest:
            yield is_stdout, rest.decode("utf-8", "replace")


def _explained(error: Exception) -> str:
    return str(getattr(error, "explanation", None) or error)


def _is_timeout(error: Exception) -> bool:
    # podman-py wraps the HTTP read timeout of the wait call in an APIError
    return isinstance(error, requests.Timeout) or isinstance(error.__cause__, requests.Timeout)


def _created_epoch(container) -> float:
    return _epoch(container.attrs.get("Created", 0))


def _epoch(created) -> float:
    if isinstance(created, (int, float)):
        return float(created)
    try:
        return datetime.fromisoformat(str(created).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def _remove(container) -> None:
    try:
        container.remove(force=True, v=True)
    except NotFound:
        pass
    except (APIError, requests.RequestException) as error:
        logger.warning("could not remove job container {}: {} (`runner jobs gc` will)", container.name, error)
