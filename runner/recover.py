"""Getting data back: finding and fetching snapshots, and the restores a person runs in a disaster.

Restore order after a disaster: Vault (it holds every other credential), then PostgreSQL, then
MinIO. Each restore refuses to overwrite a non-empty target without `force`, and ends with the
next step to take.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shlex
import shutil
from collections.abc import Iterator
from pathlib import Path


from runner import rclone, restic
from runner.destinations import Destination, DestinationUnavailable, RepositoryAccess, RepositoryMissing, configured
from runner.engine import Engine, JobSpec, Mount
from runner.repositories import restic_job
from runner.settings import Settings
from runner.sources import minio, postgres, vault
from runner.workspace import job_dir, remove_tree


class RestoreError(Exception):
    pass


def destination_for(settings: Settings, name: str | None) -> Destination:
    try:
        chosen = configured(settings, [name] if name else [])
    except ValueError as error:
        raise RestoreError(str(error)) from None
    if not chosen:
        raise RestoreError("no destination is enabled")
    return chosen[0]


def open_repository(destination: Destination, source: str) -> RepositoryAccess:
    try:
        destination.preflight()
        return destination.access(source)
    except (DestinationUnavailable, RepositoryMissing) as error:
        raise RestoreError(str(error)) from None


def find_snapshot(engine: Engine, access: RepositoryAccess, tag: str, wanted: str = "latest") -> dict:
    """The newest snapshot with this tag, or the one whose id starts with `wanted`."""
    result = engine.run(restic_job(access, "snapshots", restic.snapshots(access.repository, tags=[tag])))
    if not result.ok:
        raise RestoreError(f"cannot list the snapshots of {access.location}: {' '.join(result.output_tail[-2:])}")
    documents = restic.parse_output(result.stdout).documents
    snapshots = documents[0] if documents and isinstance(documents[0], list) else []
    if wanted != "latest":
        snapshots = [s for s in snapshots if s["id"].startswith(wanted)]
    if not snapshots:
        raise RestoreError(f"no {tag} snapshot {'' if wanted == 'latest' else wanted + ' '}in {access.location}")
    return max(snapshots, key=lambda s: s["time"])


def restore_progress(line: str) -> str | None:
    """restic's JSON status lines as a short progress message."""
    if '"message_type":"status"' not in line:
        return None
    status = json.loads(line)
    done, total = status.get("bytes_restored", 0), status.get("total_bytes", 0)
    return f"{status.get('percent_done', 0) * 100:.0f}% restored ({done} of {total} bytes)"


def fetch(settings: Settings, engine: Engine, access: RepositoryAccess, snapshot: dict, target: Path) -> int:
    """Restore a whole snapshot into `target`; return the bytes restored."""
    job_dir(target, settings)
    job = restic_job(access, "restore", restic.restore(access.repository, snapshot["id"], "/restore"),
                     (Mount(target, "/restore", read_only=False),))
    result = engine.run(dataclasses.replace(job, progress=restore_progress))
    if not result.ok:
        said = restic.parse_output(result.stdout).exit_error or " ".join(result.output_tail[-3:])
        raise RestoreError(f"restoring snapshot {snapshot['id'][:8]} from {access.location} failed: {said}")
    return sum(p.stat().st_size for p in target.rglob("*") if p.is_file())


@contextlib.contextmanager
def fetched(settings: Settings, engine: Engine, destination: Destination, source: str, wanted: str,
            work: Path | None = None) -> Iterator[tuple[dict, Path]]:
    """The wanted snapshot of `source`, restored into a working directory (by default in staging)
    that is removed afterwards, whatever happens."""
    access = open_repository(destination, source)
    snapshot = find_snapshot(engine, access, source, wanted)
    work = work or settings.paths.staging_dir / f"restore-{source}"
    remove_tree(work)  # what an interrupted restore left
    try:
        fetch(settings, engine, access, snapshot, work)
        yield snapshot, work
    finally:
        remove_tree(work)


# Loading a dump ---------------------------------------------------------------------------------

def load_dump(settings: Settings, engine: Engine, dump: Path, host: str, port: int, user: str,
              networks: tuple[str, ...], pgpass: Path | None = None) -> tuple[bool, str]:
    """Load a pg_dumpall file with psql, stopping at the first error. The dump's CREATE ROLE for the
    server's own bootstrap role would be that error on any fresh server: it is skipped."""
    skip_own_role = f"/^CREATE ROLE {user};$/d"
    script = (f"set -o pipefail; sed {shlex.quote(skip_own_role)} /dump/{dump.name} | psql -v ON_ERROR_STOP=1 -qX "
              f"-h {shlex.quote(host)} -p {port} -U {shlex.quote(user)} -d postgres")
    mounts = [Mount(dump.parent, "/dump")]
    env = {}
    if pgpass:
        mounts.append(Mount(pgpass, postgres.PGPASS))
        env["PGPASSFILE"] = postgres.PGPASS
    result = engine.run(JobSpec(name="load-dump", argv=("bash", "-c", script), mounts=tuple(mounts),
                                networks=networks, env=env, timeout=settings.restore_tests.timeout))
    return result.ok, " ".join(line for line in result.output_tail[-4:] if line.strip())


def user_data(settings: Settings, engine: Engine, host: str, port: int, user: str, networks: tuple[str, ...],
              pgpass: Path | None = None) -> list[str]:
    """Databases other than the built-in ones, and tables in `postgres`: what --force would overwrite."""
    query = ("SELECT 'database ' || datname FROM pg_database WHERE datname NOT IN ('postgres', 'template0', 'template1') "
             "UNION ALL SELECT 'table postgres.' || schemaname || '.' || tablename FROM pg_tables "
             "WHERE schemaname NOT IN ('pg_catalog', 'information_schema')")
    mounts, env = (), {}
    if pgpass:
        mounts, env = (Mount(pgpass, postgres.PGPASS),), {"PGPASSFILE": postgres.PGPASS}
    result = engine.run(JobSpec(name="inspect-target", networks=networks, mounts=mounts, env=env, timeout=120, argv=(
        "psql", "-qAtX", "-h", host, "-p", str(port), "-U", user, "-d", "postgres", "-c", query)))
    if not result.ok:
        raise RestoreError(f"cannot connect to PostgreSQL at {host}:{port} as {user}: {' '.join(result.output_tail[-2:])}")
    return [line for line in result.stdout if line.strip()]


# The restores a person runs ----------------------------------------------------------------------

def restore_vault(settings: Settings, engine: Engine, destination: Destination, wanted: str, output: Path,
                  force: bool) -> str:
    if output.exists() and not force:
        raise RestoreError(f"{output} exists; use --force to replace it")
    with fetched(settings, engine, destination, "vault", wanted) as (snapshot, work):
        restored = work / vault.INSIDE.lstrip("/") / vault.SNAPSHOT
        meta = vault.verify_snapshot(restored)
        output.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(restored, output)
        output.chmod(0o600)
    return (f"wrote Vault snapshot {snapshot['id'][:8]} of {snapshot['time'][:19]} (raft index {meta.get('Index')}, "
            f"sums verified) to {output}.\nNext: start an initialized, unsealed Vault and run\n"
            f"    vault operator raft snapshot restore -force {output}\n"
            "then unseal it with the original unseal keys; then restore PostgreSQL.")


def restore_postgres(settings: Settings, engine: Engine, destination: Destination, wanted: str, *,
                     container: str | None, host: str | None, port: int, network: str | None, user: str,
                     pgpass: Path | None, force: bool) -> str:
    if container:
        status = engine.container_status(container)
        if not status.exists or status.state != "running":
            raise RestoreError(f"container {container!r} is not running")
        network = network or next(iter(status.addresses), "")
        host = host or status.addresses.get(network, "")
    if not host or not network:
        raise RestoreError("give --container NAME, or --host and --network")
    networks = (network,)
    present = user_data(settings, engine, host, port, user, networks, pgpass)
    if present and not force:
        raise RestoreError(f"the target already holds data ({', '.join(present[:5])}); use --force to load over it")
    with fetched(settings, engine, destination, "postgres", wanted) as (snapshot, work):
        ok, said = load_dump(settings, engine, work / postgres.DUMP_FILENAME, host, port, user, networks, pgpass)
    if not ok:
        raise RestoreError(f"loading the dump stopped at an error: {said}")
    return (f"loaded PostgreSQL dump {snapshot['id'][:8]} of {snapshot['time'][:19]} into {host}:{port}.\n"
            "Next: check the applications' data (row counts, a login), then restore MinIO.")


def put_in_place(restored: Path, target: Path) -> None:
    """Move a completely restored tree to `target` (a rename: no second copy of the data, no extra disk
    space), or merge it into a target that already holds files. The files become the runner's."""
    if target.exists() and any(target.iterdir()):
        shutil.copytree(restored, target, dirs_exist_ok=True)
        return
    if target.exists():
        target.rmdir()
    restored.replace(target)
    for path in (target, *target.rglob("*")):
        os.lchown(path, os.getuid(), os.getgid())


# Object metadata that the S3 server sets itself, as rclone reports it: not restored as user metadata.
SYSTEM_METADATA = {"content-type", "btime", "content-encoding", "content-language", "content-disposition",
                   "cache-control", "tier"}


def upload_script(manifest: dict) -> str:
    """rclone commands that put every object back with its content type and user metadata."""
    lines = ["set -e"]
    lines += [f"rclone mkdir {shlex.quote(f'target:{bucket}')}" for bucket in manifest["buckets"]]
    for path, entry in sorted(manifest["objects"].items()):
        flags = []
        if entry.get("content_type"):
            flags += ["--header-upload", f"Content-Type: {entry['content_type']}"]
        for key, value in sorted((entry.get("metadata") or {}).items()):
            if key not in SYSTEM_METADATA:
                flags += ["--metadata-set", f"{key}={value}"]
        lines.append(shlex.join(["rclone", "copyto", "-M", *flags, f"/objects/{path}", f"target:{path}"]))
    lines.append(f"echo {len(manifest['objects'])} objects uploaded")
    return "\n".join(lines) + "\n"


def upload_objects(settings: Settings, engine: Engine, restored: Path, endpoint: str, credentials: Path,
                   network: str, work: Path) -> int:
    manifest = json.loads((restored / minio.MANIFEST).read_text())
    job_dir(work, settings)
    (work / "upload.sh").write_text(upload_script(manifest))
    (work / "rclone.conf").write_text(rclone.render_config({"target": {
        "type": "s3", "provider": "Minio", "env_auth": "true", "endpoint": endpoint,
        "region": settings.sources.minio.region}}))
    result = engine.run(JobSpec(
        name="upload-objects", argv=("sh", "/work/upload.sh"), networks=(network,),
        mounts=(Mount(restored / minio.OBJECTS, "/objects"), Mount(work, "/work"),
                Mount(credentials, minio.CREDENTIALS)),
        env={"RCLONE_CONFIG": "/work/rclone.conf", "AWS_SHARED_CREDENTIALS_FILE": minio.CREDENTIALS},
        timeout=settings.restore_tests.timeout))
    if not result.ok:
        raise RestoreError(f"uploading the objects to {endpoint} failed: {' '.join(result.output_tail[-3:])}")
    return len(manifest["objects"])


def restore_minio(settings: Settings, engine: Engine, destination: Destination, wanted: str, target: Path,
                  force: bool, endpoint: str | None = None, credentials: Path | None = None,
                  network: str | None = None) -> str:
    if target.exists() and any(target.iterdir()) and not force:
        raise RestoreError(f"{target} is not empty; use --force to restore into it")
    beside_target = target.parent / f".{target.name}.partial"  # moved into place, not copied
    with fetched(settings, engine, destination, "minio", wanted, beside_target) as (snapshot, work):
        restored = work / minio.INSIDE.lstrip("/")
        if endpoint:
            uploaded = upload_objects(settings, engine, restored, endpoint, credentials or minio.credentials_file(settings),
                                      network or settings.sources.minio.network, work / "upload")
        put_in_place(restored, target)
    if endpoint:
        return (f"restored MinIO snapshot {snapshot['id'][:8]} of {snapshot['time'][:19]}: {uploaded} objects "
                f"uploaded to {endpoint} with their content types and metadata (a copy is in {target}).\n"
                "Next: check a few objects through the applications; then restore plain files, if any.")
    return (f"restored MinIO snapshot {snapshot['id'][:8]} of {snapshot['time'][:19]} to {target}: objects in "
            f"{target / minio.OBJECTS}/<bucket>/<key>, their content types and metadata in {target / minio.MANIFEST}.\n"
            f"Next: upload them, e.g. `mc mirror {target / minio.OBJECTS} myminio/` or `rclone copy` per bucket, "
            "and set the content types from the manifest.")
