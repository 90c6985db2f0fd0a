"""PostgreSQL's backup: every database with pg_dumpall, streamed into restic (`--stdin-from-command`).

The dump is not compressed before restic: restic compresses it itself and, unlike a gzip'd dump,
the plain SQL deduplicates against yesterday's. A dump that fails midway makes the command fail,
and restic then keeps no snapshot. `dump-with-manifest` (in the tools image) passes the dump
through and records, per database and table, the row count and a checksum of the rows; that
manifest is backed up beside the dump for the restore tests.

Two ways to reach the server:
- network (default): the job container joins the PostgreSQL container's network and runs
  pg_dumpall there, with the password from a pgpass file mounted read-only;
- exec: pg_dumpall runs inside the PostgreSQL container (`podman exec`); the runner feeds its
  output through a FIFO into the job, and marks it complete only when pg_dumpall exited 0.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from loguru import logger

from runner.engine import ContainerStatus, Engine, JobSpec, Mount
from runner.restic import BackupSummary
from runner.secrets.files import SecretFileError, check_secret_file
from runner.settings import Settings
from runner.sources.base import Payload, SourceError
from runner.workspace import hand_to_job_user, job_dir, remove_tree

NAME = "postgres"
DUMP_FILENAME = "pg_dumpall.sql"
PGPASS = "/run/secrets/pgpass"
MANIFEST_DIR = "/manifest"
MANIFEST = "postgres-manifest.json"
PIPE_DIR = "/pipe"
FIFO = "dump.sql"
COMPLETE = "complete"


def pgpass_file(settings: Settings) -> Path:
    return settings.sources.postgres.pgpass_file or settings.paths.secrets_dir / "postgres.pgpass"


def running_container(settings: Settings, engine: Engine) -> ContainerStatus:
    name = settings.sources.postgres.container
    status = engine.container_status(name)
    if not status.exists:
        raise SourceError(f"PostgreSQL container {name!r} (sources.postgres.container) does not exist")
    if status.state != "running":
        raise SourceError(f"PostgreSQL container {name!r} is {status.state or 'not running'}")
    if status.health == "unhealthy":
        raise SourceError(f"PostgreSQL container {name!r} reports itself unhealthy")
    return status


def endpoint(settings: Settings, status: ContainerStatus | None) -> tuple[str, str]:
    """(network, host) the job container uses to reach the server."""
    config = settings.sources.postgres
    if status is None:  # no container to inspect: a server at host:port on `network`
        if not config.host:
            raise SourceError("sources.postgres.host is required when sources.postgres.container is empty")
        return config.network or "host", config.host
    network = config.network or next(iter(status.addresses), "")
    if not network or network not in status.addresses:
        raise SourceError(f"PostgreSQL container {status.name!r} is not on network {network or '(none)'!r} "
                          f"(it is on: {', '.join(status.addresses) or 'no network'})")
    host = config.host or status.addresses[network]
    if not host:
        raise SourceError(f"PostgreSQL container {status.name!r} has no address on {network!r}: "
                          "set sources.postgres.host")
    return network, host


def dump_argv(settings: Settings, host: str | None) -> list[str]:
    config = settings.sources.postgres
    target = ["--host", host, "--port", str(config.port)] if host else []
    return ["pg_dumpall", *target, "--username", config.user, "--no-password", *config.dump_options]


def server(settings: Settings, engine: Engine) -> ContainerStatus | None:
    """The PostgreSQL container, checked; None when the server is reached by host name only."""
    if not settings.sources.postgres.container:
        if settings.sources.postgres.mode == "exec":
            raise SourceError("sources.postgres.mode = 'exec' needs sources.postgres.container")
        return None
    return running_container(settings, engine)


def preflight(settings: Settings, engine: Engine) -> None:
    config = settings.sources.postgres
    status = server(settings, engine)
    if status is not None:
        # pg_isready inside the server's own container: no job container to start
        ready = engine.exec_in(config.container, ["pg_isready", "--port", str(config.port)], user=config.exec_user)
        if ready.exit_code != 0:
            raise SourceError(f"PostgreSQL in {config.container!r} is not accepting connections: "
                              f"{ready.stdout.decode(errors='replace').strip()} {' '.join(ready.stderr_tail)}".strip())
    if config.mode == "exec":
        return
    try:
        check_secret_file(settings, pgpass_file(settings), "PostgreSQL pgpass file")
    except SecretFileError as error:
        raise SourceError(str(error)) from None
    if status is None:
        network, host = endpoint(settings, None)
        probe = engine.run(JobSpec(
            name="pg-isready", argv=("pg_isready", "--host", host, "--port", str(config.port), "--username",
                                     config.user, "--timeout", "10"), networks=(network,), timeout=60))
        if not probe.ok:
            raise SourceError(f"PostgreSQL at {host}:{config.port} on network {network} is not accepting "
                              "connections: " + " ".join(probe.output_tail[-3:]))


def plan(settings: Settings, engine: Engine) -> str:
    """What a backup would read (for `exec backup --dry-run`)."""
    config = settings.sources.postgres
    if config.mode == "exec":
        return (f"pg_dumpall in container {config.container} (as {config.exec_user}), streamed to restic "
                "through a pipe in staging")
    network, host = endpoint(settings, server(settings, engine))
    return (f"pg_dumpall of {host}:{config.port} as {config.user} on network {network}, streamed to restic "
            "(nothing staged)")


@contextmanager
def prepare(settings: Settings, engine: Engine) -> Iterator[Payload]:
    config = settings.sources.postgres
    staging = settings.paths.staging_dir
    # The manifest is the runner's bookkeeping, kept in the state directory: a backup in network
    # mode writes nothing to staging.
    manifest_dir = job_dir(manifests_dir(settings), settings)
    (manifest_dir / MANIFEST).unlink(missing_ok=True)
    manifest_mount = Mount(manifest_dir, MANIFEST_DIR, read_only=False)
    with_manifest = ("dump-with-manifest", "--manifest", f"{MANIFEST_DIR}/{MANIFEST}", "--")
    try:
        if config.mode == "network":
            network, host = endpoint(settings, server(settings, engine))
            yield Payload(
                command=(*with_manifest, *dump_argv(settings, host)), filename=DUMP_FILENAME,
                mounts=(Mount(pgpass_file(settings), PGPASS), manifest_mount), networks=(network,),
                env={"PGPASSFILE": PGPASS}, sidecar=f"{MANIFEST_DIR}/{MANIFEST}",
            )
        else:
            pipe = job_dir(staging / "postgres-pipe", settings)
            read_pipe = f"cat {PIPE_DIR}/{FIFO} && test -f {PIPE_DIR}/{COMPLETE}"
            yield Payload(
                command=(*with_manifest, "sh", "-c", read_pipe), filename=DUMP_FILENAME,
                mounts=(Mount(pipe, PIPE_DIR), manifest_mount), sidecar=f"{MANIFEST_DIR}/{MANIFEST}",
                companion=lambda: ExecFeeder(settings, pipe),
            )
    finally:
        remove_tree(staging / "postgres-pipe")


def verify(settings: Settings, payload: Payload, summary: BackupSummary) -> None:
    if not summary.bytes_processed:
        raise SourceError("the dump in the repository is empty")
    if not (manifests_dir(settings) / MANIFEST).is_file():
        raise SourceError("the dump was stored but its manifest is missing")


def manifests_dir(settings: Settings) -> Path:
    """Where a backup's job writes the manifest of its dump (the state directory: it is the runner's bookkeeping)."""
    return settings.paths.state_dir / "manifests" / NAME


class ExecFeeder:
    """Feeds `podman exec <container> pg_dumpall` into the job's FIFO; marks success only on exit 0."""

    def __init__(self, settings: Settings, pipe: Path) -> None:
        self.settings = settings
        self.pipe = pipe
        self.problem = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._feed, daemon=True)

    def __enter__(self) -> ExecFeeder:
        fifo = self.pipe / FIFO
        for stale in (fifo, self.pipe / COMPLETE):
            stale.unlink(missing_ok=True)
        os.mkfifo(fifo, 0o600)
        hand_to_job_user(fifo, self.settings)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def _open_writer(self) -> int | None:
        # Opening a FIFO for writing blocks until a reader comes; poll, so that a job that died
        # before reading does not hang the runner.
        while not self._stop.is_set():
            try:
                descriptor = os.open(self.pipe / FIFO, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as error:
                if error.errno != errno.ENXIO:
                    raise
                time.sleep(0.05)
                continue
            os.set_blocking(descriptor, True)
            return descriptor
        return None

    def _feed(self) -> None:
        config = self.settings.sources.postgres
        descriptor = self._open_writer()
        if descriptor is None:
            self.problem = "the backup job never read the dump"
            return
        try:
            def write(chunk: bytes) -> None:
                view = memoryview(chunk)
                while view:
                    view = view[os.write(descriptor, view):]

            result = Engine(self.settings).exec_in(config.container, dump_argv(self.settings, None),
                                                   user=config.exec_user, on_stdout=write)
            if result.exit_code == 0:
                (self.pipe / COMPLETE).touch()
            else:
                self.problem = (f"pg_dumpall in {config.container!r} exited with code {result.exit_code}: "
                                + " ".join(result.stderr_tail[-3:]))
        except BrokenPipeError:
            self.problem = "the backup job stopped reading the dump"
        except Exception as error:  # the feeder thread must always close the FIFO
            self.problem = f"podman exec of pg_dumpall failed: {error}"
        finally:
            os.close(descriptor)
        if self.problem:
            logger.error("postgres: {}", self.problem)
