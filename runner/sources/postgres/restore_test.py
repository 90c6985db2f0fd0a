"""PostgreSQL's restore test: the latest dump loaded into a throwaway server on an isolated network,
then every table's row count and row checksum compared with the manifest made at backup time."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from runner.engine import Engine, JobSpec, Mount, ServiceHandle
from runner.repository import SnapshotNotFound
from runner.restoring import Mismatch, RestoreError, Trial, Verified
from runner.settings import Settings
from runner.sources.postgres.backup import DUMP_FILENAME, NAME
from runner.sources.postgres.contents import manifest_path
from runner.sources.postgres.restore import load_dump
from runner.workspace import job_dir

THROWAWAY_USER = "postgres"
# The manifest formats dump-with-manifest can make (`--format`): 2 (SHA-256 checksums), 3 (XXH3-128, the default).
# A format 1 manifest (from before format 2) compares by row counts only.
REPRODUCIBLE_FORMATS = (2, 3)


def restore_test(trial: Trial) -> Verified:
    settings, engine, work, phases = trial.settings, trial.engine, trial.work, trial.phases
    with trial.repository() as repository:
        listing = repository.snapshots()  # one job for both lookups
        snapshot = repository.find(NAME, listing=listing)
        try:
            sidecar = repository.find(f"for:{snapshot.manifest_key}", listing=listing)
        except SnapshotNotFound:
            raise Mismatch(f"snapshot {snapshot.short_id} has no manifest to compare with") from None
        with phases.timed("fetch"):
            restored_bytes = repository.restore(snapshot, work / "dump")
            manifest = repository.dump(sidecar, manifest_path(sidecar), work / "manifest")
    expected = json.loads(manifest.read_text())
    production = production_address(settings, engine)
    with engine.isolated_network("restore-test-postgres") as network:
        starting = time.monotonic()
        with engine.service("restore-test-postgres", settings.restore_tests.postgres_image, network,
                            env={"POSTGRES_HOST_AUTH_METHOD": "trust"},
                            timeout=settings.restore_tests.timeout) as server:
            _wait_for_postgres(engine, server)
            phases.seconds["start"] = round(time.monotonic() - starting, 2)
            isolation = _isolation(engine, server, production)
            with phases.timed("load"):
                ok, said = load_dump(settings, engine, work / "dump" / DUMP_FILENAME, server.address,
                                     5432, THROWAWAY_USER, (network,))
            if not ok:
                raise Mismatch(f"the dump did not load: {said}")
            with phases.timed("verify"):
                actual = _manifest_of(settings, engine, server.address, network, work / "verify",
                                      expected.get("format", 1))
    differences = compare_manifests(expected, actual)
    if differences:
        raise Mismatch("; ".join(differences[:10]))
    tables = sum(len(tables) for tables in expected["databases"].values())
    return Verified(f"{tables} tables in {len(expected['databases'])} databases restored with equal rows",
                    {"snapshot_id": snapshot.id, "restored_bytes": restored_bytes, "tables": tables,
                     "isolation": isolation})


def production_address(settings: Settings, engine: Engine) -> str | None:
    config = settings.sources.postgres
    if not config.enabled:
        return None
    if not config.container:  # a server reached by host name (the rootless setting): that name must be unreachable
        # the host's loopback is no container's: probed from inside, it would answer for the throwaway itself
        loopback = config.host == "localhost" or config.host.startswith("127.") or config.host == "::1"
        return None if loopback else config.host or None
    status = engine.container_status(config.container)
    return next(iter(status.addresses.values()), None) if status.exists else None


def _wait_for_postgres(engine: Engine, server: ServiceHandle) -> None:
    deadline = time.monotonic() + 120
    while engine.exec_in(server.name, ["pg_isready", "-h", server.address, "-q"]).exit_code != 0:
        if time.monotonic() > deadline:
            raise RestoreError("the throwaway PostgreSQL did not start")
        time.sleep(0.5)


def _isolation(engine: Engine, server: ServiceHandle, production: str | None) -> str:
    """From inside the throwaway server: the production server must be out of reach."""
    if not production:
        return "not checked (no production PostgreSQL container, nor an address off the host's loopback)"
    probe = engine.exec_in(server.name, ["pg_isready", "-h", production, "-t", "3"])
    if probe.exit_code == 0:
        raise RestoreError(f"the isolated network reaches production PostgreSQL at {production}; test stopped")
    return f"production PostgreSQL at {production} unreachable"


def _manifest_of(settings: Settings, engine: Engine, host: str, network: str, out: Path,
                 form: int) -> dict[str, Any]:
    """The restored server's manifest, its checksums made as the backup's were (format `form`) when
    dump-with-manifest can still make that format; else in its own, and only row counts compare."""
    job_dir(out, settings)
    made_as = f"--format {form} " if form in REPRODUCIBLE_FORMATS else ""
    script = (f'dump-with-manifest {made_as}--manifest /out/manifest.json -- pg_dumpall -h "$0" -U postgres'
              ' --no-password > /dev/null')
    result = engine.run(JobSpec(name="verify-dump", argv=("sh", "-c", script, host), networks=(network,),
                                mounts=(Mount(out, "/out", read_only=False),), timeout=settings.restore_tests.timeout))
    if not result.ok:
        raise RestoreError(f"could not dump the restored server: {' '.join(result.output_tail[-2:])}")
    return json.loads((out / "manifest.json").read_text())


def compare_manifests(expected: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    """Every table of the backup's manifest must be in the restored server, with equal rows.
    Checksums are compared only when both manifests were made the same way (an older backup's
    manifest hashed rows differently), row counts always."""
    same_checksums = expected.get("format", 1) == actual.get("format", 1)
    differences = []
    for database, tables in expected["databases"].items():
        for table, figures in tables.items():
            found = actual["databases"].get(database, {}).get(table)
            where = f"{database}: {table}"
            if found is None:
                differences.append(f"{where} is missing")
            elif found["rows"] != figures["rows"]:
                differences.append(f"{where} has {found['rows']} rows, the backup had {figures['rows']}")
            elif same_checksums and found["checksum"] != figures["checksum"]:
                differences.append(f"{where}: row contents differ from the backup")
    return differences
