"""Hardening against real Podman: the restore tests' throwaway services, and `jobs gc` / `jobs list`
keeping to their own installation."""

import os
import subprocess
import time

import pytest
from click.testing import CliRunner

from runner import images
from runner.cli import cli
from runner.engine import DEADLINE_LABEL, INSTANCE_LABEL, JOB_LABEL, MANAGED_LABEL, Engine, instance
from runner.settings import Settings
from tests.integration.conftest import podman_json, write_config

# An image honouring the official postgres image's contract the way that image does: it starts as root,
# hands the data directory and the socket directory to postgres, then drops to postgres (gosu there,
# setpriv here). Unlike docker-entrypoint.sh it ignores no failure, so a missing capability shows.
OFFICIAL_CONTRACT = "localhost/offsite-backup-test/postgres-root-entrypoint:latest"
CONTAINERFILE = """FROM {base}
USER root
RUN chmod 1777 /var/lib/postgresql/data && chown root:root /var/run/postgresql
COPY root-entrypoint.sh /usr/local/bin/root-entrypoint.sh
VOLUME /var/lib/postgresql/data
ENTRYPOINT ["/bin/sh", "/usr/local/bin/root-entrypoint.sh"]
"""
ROOT_ENTRYPOINT = """#!/bin/sh
set -eu
if [ "$(id -u)" = 0 ]; then
    mkdir -p "$PGDATA"
    chmod 00700 "$PGDATA"
    mkdir -p /var/run/postgresql
    chmod 03775 /var/run/postgresql
    find "$PGDATA" \\! -user postgres -exec chown postgres '{}' +
    find /var/run/postgresql \\! -user postgres -exec chown postgres '{}' +
    exec setpriv --reuid=postgres --regid=postgres --init-groups /bin/sh "$0" "$@"
fi
exec /bin/sh /usr/local/bin/entrypoint.sh "$@"
"""
POSTGRES_ENV = {"POSTGRES_HOST_AUTH_METHOD": "trust"}
ROOT_CAPABILITIES = {"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_SETGID", "CAP_SETUID"}


@pytest.fixture(scope="module")
def service_images(engine, settings, tmp_path_factory):
    images.build(settings, ["openbao", "testbed-postgres", "testbed-s3"])
    context = tmp_path_factory.mktemp("root-entrypoint")
    (context / "Containerfile").write_text(CONTAINERFILE.format(base=images.testbed_tag("postgres")))
    (context / "root-entrypoint.sh").write_text(ROOT_ENTRYPOINT)
    subprocess.run(["podman", "build", "-q", "-t", OFFICIAL_CONTRACT, str(context)], check=True, capture_output=True)
    yield {
        "testbed postgres": (images.testbed_tag("postgres"), POSTGRES_ENV, ["pg_isready", "-q"]),
        "official postgres contract": (OFFICIAL_CONTRACT, POSTGRES_ENV, ["pg_isready", "-q"]),
        "openbao": (settings.images.openbao, {}, ["bao", "status", "-address=http://127.0.0.1:8200"]),
        "s3": (images.testbed_tag("s3"), {}, ["python3", "-c", "import urllib.request as u; "
                                                         "u.urlopen('http://127.0.0.1:9000/')"]),
    }
    subprocess.run(["podman", "rmi", "--force", OFFICIAL_CONTRACT], capture_output=True)


def wait_until_serving(engine: Engine, name: str, probe: list[str]) -> None:
    deadline = time.monotonic() + 90
    # `bao status` exits 2 for a sealed server: it answers
    while engine.exec_in(name, probe).exit_code not in (0, 2):
        assert time.monotonic() < deadline, f"{name} never answered {probe}"
        time.sleep(0.5)


def process_capabilities(engine: Engine, name: str) -> dict[str, str]:
    status = engine.exec_in(name, ["cat", "/proc/1/status"]).stdout.decode()
    return dict(line.split(":\t") for line in status.splitlines() if line.startswith(("Cap", "NoNewPrivs")))


@pytest.mark.parametrize("kind", ["testbed postgres", "official postgres contract", "openbao", "s3"])
def test_throwaway_services_run_without_capabilities(settings, service_images, kind):
    image, env, probe = service_images[kind]
    limited = Engine(settings.model_copy(update={"jobs": settings.jobs.model_copy(
        update={"memory_limit": "1g", "pids_limit": 300})}))
    with limited.isolated_network("hardening") as network, \
            limited.service("hardening", image, network, env=env, timeout=600) as service:
        wait_until_serving(limited, service.name, probe)
        inspected = podman_json("inspect", service.name)[0]
        serving = process_capabilities(limited, service.name)
    host = inspected["HostConfig"]
    assert serving["CapEff"] == serving["CapPrm"] == serving["CapAmb"] == "0000000000000000"
    assert serving["NoNewPrivs"] == "1" and "no-new-privileges" in host["SecurityOpt"]
    if kind == "official postgres contract":  # starts as root: only what its entrypoint needs, then drops it
        assert set(inspected["BoundingCaps"]) == set(inspected["EffectiveCaps"]) == ROOT_CAPABILITIES
        assert serving["CapBnd"] == "00000000000000cb"
    else:
        assert not inspected["BoundingCaps"] and not inspected["EffectiveCaps"]
        assert serving["CapBnd"] == "0000000000000000"
    assert host["PidsLimit"] == 300 and host["Memory"] == 1024 ** 3
    assert list(inspected["NetworkSettings"]["Networks"]) == [network]


@pytest.mark.parametrize("missing", sorted(ROOT_CAPABILITIES))
def test_each_capability_given_back_is_one_the_root_entrypoint_needs(service_images, missing):
    given = [arg for cap in sorted(ROOT_CAPABILITIES - {missing}) for arg in ("--cap-add", cap)]
    name = f"offsite-backup-test-caps-{os.getpid()}-{missing.lower()}"
    try:
        subprocess.run(["podman", "run", "-d", "--name", name, "--cap-drop", "ALL", *given, "--security-opt",
                        "no-new-privileges", *("-e", "POSTGRES_HOST_AUTH_METHOD=trust"), OFFICIAL_CONTRACT],
                       check=True, capture_output=True)
        deadline = time.monotonic() + 60
        while podman_json("inspect", name)[0]["State"]["Status"] == "running":
            assert time.monotonic() < deadline, f"the server started without {missing}"
            time.sleep(0.5)
        said = subprocess.run(["podman", "logs", name], capture_output=True, text=True).stderr
    finally:
        subprocess.run(["podman", "rm", "--force", "--volumes", "--ignore", name], capture_output=True)
    assert "Operation not permitted" in said or "Permission denied" in said, said


def test_jobs_gc_and_list_leave_another_installations_containers_alone(engine, settings, tmp_path):
    ours = settings.model_copy(update={"paths": settings.paths.model_copy(update={"state_dir": tmp_path / "state"})})
    theirs = instance(Settings(paths={"state_dir": tmp_path / "other-installation"}))
    future = str(int(time.time()) + 3600)
    names = {f"offsite-backup-test-{who}-{state}-{os.getpid()}": (who, state)
             for who in ("ours", "theirs") for state in ("running", "exited")}
    networks = {f"offsite-backup-test-{who}-net-{os.getpid()}": who for who in ("ours", "theirs")}

    def owner(who: str) -> str:
        return instance(ours) if who == "ours" else theirs

    try:
        for name, (who, state) in names.items():
            labels = {MANAGED_LABEL: "true", JOB_LABEL: "test-gc", DEADLINE_LABEL: future, INSTANCE_LABEL: owner(who)}
            command = ["sleep", "300"] if state == "running" else ["true"]
            subprocess.run(["podman", "run", *(["-d"] if state == "running" else []), "--name", name,
                            *(arg for item in labels.items() for arg in ("--label", "=".join(item))),
                            settings.images.tools, *command], check=True, capture_output=True)
        for name, who in networks.items():
            subprocess.run(["podman", "network", "create", "--internal", "--label", f"{MANAGED_LABEL}=true",
                            "--label", f"{INSTANCE_LABEL}={owner(who)}", name], check=True, capture_output=True)
        config = write_config(ours, tmp_path / "runner.toml")
        runner = CliRunner(env={"COLUMNS": "400"})
        listed = runner.invoke(cli, ["--config", str(config), "jobs", "list"])
        assert listed.exit_code == 0, listed.output
        assert {name for name in names if name in listed.output} == {n for n, (who, _) in names.items()
                                                                     if who == "ours"}
        collected = runner.invoke(cli, ["--config", str(config), "jobs", "gc", "--all"])
        assert collected.exit_code == 0, collected.output
        time.sleep(1.2)
        removed_networks = Engine(ours).remove_unused_networks(grace=1)
        present = {c["Names"][0] for c in podman_json("ps", "--all", "--format", "json")}
        assert {name for name in names if name in present} == {n for n, (who, _) in names.items() if who == "theirs"}
        assert [name for name in networks if name in removed_networks] == [
            n for n, who in networks.items() if who == "ours"]
    finally:
        subprocess.run(["podman", "rm", "--force", "--ignore", "--time", "0", *names], capture_output=True)
        subprocess.run(["podman", "network", "rm", "--force", *networks], capture_output=True)
