"""The Quadlet units and the Ansible role, under the Quadlet generator and a real systemd (system-wide here;
rootless, the default, is proven by tests/integration/test_getting_started.py, which follows the guide)."""

import configparser
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from runner import images
from tests.conftest import PROJECT_ROOT
from tests.integration.systemd_host import SystemdHost

QUADLETS = PROJECT_ROOT / "quadlets"
ANSIBLE = PROJECT_ROOT / "ansible"
SCHEDULES = {
    "vault": "*-*-* 01:00:00",
    "postgres": "*-*-* 02:00:00",
    "minio": "*-*-* 03:00:00",
    "files": "*-*-* 03:30:00",
    "prune": "Sun *-*-* 04:00:00",
    "restore-test": "*-*-01 05:00:00",
    "copy": "*-*-* 05:30:00",
    "status": "*-*-* *:00:00",
}
JOB_UNITS = ("vault", "postgres", "minio", "files", "prune", "restore-test", "copy")


@pytest.fixture(scope="module")
def systemd_image(engine, settings):
    images.build(settings, ["testbed-systemd"])
    return images.testbed_tag("systemd")


def in_image(image, script):
    result = subprocess.run(["podman", "run", "--rm", "-e", "SYSTEMD_COLORS=0",
                             "-v", f"{QUADLETS}:/etc/containers/systemd:ro", image, "bash", "-c", script],
                            capture_output=True, text=True)
    return result


@pytest.fixture(scope="module")
def generated(systemd_image):
    """The services Quadlet generates from quadlets/, and what it said."""
    result = in_image(systemd_image, "/usr/libexec/podman/quadlet -v -dryrun")
    assert result.returncode == 0, result.stderr
    units = {}
    for name, body in re.findall(r"^---(\S+)---\n(.*?)(?=^---|\Z)", result.stdout, re.M | re.S):
        parser = configparser.ConfigParser(strict=False, interpolation=None)
        parser.optionxform = str
        parser.read_string(body)
        units[name] = parser
    return units, result.stderr


def test_quadlet_turns_every_unit_into_a_service_without_warnings(generated):
    units, said = generated
    containers = {p.name.removesuffix(".container") for p in QUADLETS.glob("*.container")}
    assert set(units) == {f"{name}.service" for name in containers}
    noise = [line for line in said.splitlines() if "Loading source unit file" not in line and line.strip()]
    assert noise == [], noise


def test_systemd_analyze_verifies_the_generated_units(systemd_image):
    result = in_image(systemd_image, "mkdir /tmp/units && /usr/libexec/podman/quadlet /tmp/units && "
                      "cp /etc/containers/systemd/*.timer /tmp/units/ && cd /tmp/units && "
                      "systemd-analyze verify --man=no *.service *.timer")
    assert result.returncode == 0, result.stderr
    problems = [line for line in result.stderr.splitlines() if "offsite-backup" in line]
    assert problems == [], problems


def test_timers_fire_on_schedule_and_catch_up_after_downtime(systemd_image):
    for name, schedule in SCHEDULES.items():
        timer = configparser.ConfigParser()
        timer.read(QUADLETS / f"offsite-backup-{name}.timer")
        assert timer["Timer"]["Persistent"] == "true", name
        result = in_image(systemd_image, f"systemd-analyze calendar '{timer['Timer']['OnCalendar']}'")
        assert result.returncode == 0, result.stderr
        assert f"Normalized form: {schedule}" in result.stdout, (name, result.stdout)
        delay = timer["Timer"]["RandomizedDelaySec"]
        assert delay.endswith("min") and int(delay.removesuffix("min")) <= 15, (name, delay)  # keeps 01-02-03 order


def test_job_services_are_oneshot_bounded_alerting_and_hardened(generated):
    units, _ = generated
    for name in (*JOB_UNITS, "status"):
        service = units[f"offsite-backup-{name}.service"]
        assert service["Service"]["Type"] == "oneshot", name
        assert service["Service"].get("TimeoutStartSec"), name
        assert "RemainAfterExit" not in service["Service"], name
        command = service["Service"]["ExecStart"]
        for flag in ("--read-only", "--cap-drop all", "--security-opt=no-new-privileges"):
            assert flag in command, (name, flag)
        mounts = re.findall(r"-v (\S+)", command)
        assert all(m.split(":")[0] == m.split(":")[1] for m in mounts), mounts  # identical host paths
        assert any("podman.sock" in m for m in mounts)
        if name != "status":
            assert service["Unit"]["OnFailure"] == "offsite-backup-failure@%n.service", name


@pytest.fixture(scope="module")
def host(systemd_image, tmp_path_factory, settings):
    """A systemd machine with the role applied twice (system-wide), and a PostgreSQL to back up."""
    workdir = tmp_path_factory.mktemp("systemd-host")
    machine = SystemdHost(settings, workdir, volumes={str(PROJECT_ROOT): "/opt/offsite-backup:ro"})
    try:
        machine.sh("podman run -d --name postgres --network none -e POSTGRES_PASSWORD=unused "
                   f"{images.testbed_tag('postgres')}")
        # the image's first start runs a temporary server, then the real one: wait for the real one's log line
        machine.sh("for i in $(seq 240); do podman logs postgres 2>&1 | grep -q 'PostgreSQL init process complete' "
                   "&& podman exec postgres pg_isready -q && exit 0; sleep 0.5; done; exit 1")
        machine.sh("podman exec postgres psql -qU postgres -c 'CREATE TABLE t AS SELECT generate_series(1, 500) g'")
        machine.write("/root/vars.yml", ROLE_VARS)
        runs = [machine.sh(PLAYBOOK, timeout=900) for _ in range(2)]
        yield machine, runs
    finally:
        machine.remove()


ROLE_VARS = """
backup_rootless: false
backup_enable_agent: false
backup_config: |
  [destinations.local]
  kind = "local"
  [sources.vault]
  enabled = false
  [sources.minio]
  enabled = false
  [sources.postgres]
  mode = "exec"
  container = "postgres"
"""
PLAYBOOK = ("cd /opt/offsite-backup/ansible && ANSIBLE_LOCAL_TEMP=/tmp/ansible ANSIBLE_CONFIG=ansible.cfg "
            "ansible-playbook -c local -i localhost, -e @/root/vars.yml -e ansible_python_interpreter=/usr/bin/python3 "
            "playbook-local.yml")


def recap(run) -> dict:
    return {key: int(value) for key, value in re.findall(r"(ok|changed|failed)=(\d+)", run.stdout)}


def test_role_applied_twice_changes_nothing_the_second_time(host):
    machine, (first, second) = host
    assert recap(first)["failed"] == 0 and recap(first)["changed"] > 0
    assert recap(second)["changed"] == 0, second.stdout[-3000:]
    machine.sh("id backup && test -d /home/backup")
    listing = machine.sh("stat -c '%n %u %a' /etc/offsite-backup /var/lib/offsite-backup /run/offsite-backup/secrets "
                         "/etc/offsite-backup/approle").stdout
    assert "/run/offsite-backup/secrets 10001 700" in listing and "/etc/offsite-backup/approle 10001 700" in listing
    timers = machine.sh("systemctl list-timers --all --no-legend 'offsite-backup-*'").stdout
    for name in SCHEDULES.keys() - {"files", "copy"}:
        assert f"offsite-backup-{name}.timer" in timers, timers
    assert "offsite-backup-files" not in timers  # no sources.files.paths: no unit failing every night
    assert "offsite-backup-copy" not in timers  # no destination has copy_from: nothing to copy
    assert machine.sh("systemctl is-enabled offsite-backup-postgres.timer").stdout.strip() == "enabled"
    next_runs = machine.sh("systemctl show -P NextElapseUSecRealtime offsite-backup-vault.timer").stdout.strip()
    assert next_runs and next_runs != "n/a"


def runner(machine, *args) -> str:
    """The role's `runner` command: the runner image as the units run it."""
    return machine.sh("runner " + " ".join(args), check=False).stdout


def test_timer_service_backs_up_and_a_failure_runs_the_alert_unit(host, settings):
    machine, _ = host
    machine.write("/run/offsite-backup/secrets/restic-postgres.password", "end-to-end-password", "0400", "10001:10001")
    runner(machine, "repo", "init")
    machine.sh("systemctl start offsite-backup-postgres.service")
    assert machine.sh("systemctl show -P Result offsite-backup-postgres.service").stdout.strip() == "success"
    [state] = json.loads(runner(machine, "repo", "list", "--json"))
    assert state["state"] == "ok" and state["snapshots"] == 2  # the dump and its manifest
    history = machine.sh("sqlite3 /var/lib/offsite-backup/history.sqlite "
                         "\"SELECT kind, source, status FROM runs\"").stdout.split()
    assert "backup|postgres|ok" in history

    machine.sh("podman stop -t 1 postgres")
    failed = machine.sh("systemctl start offsite-backup-postgres.service", check=False)
    assert failed.returncode != 0
    assert machine.sh("systemctl show -P Result offsite-backup-postgres.service").stdout.strip() == "exit-code"
    alert_unit = "offsite-backup-failure@offsite-backup-postgres.service.service"
    machine.sh(f"for i in $(seq 60); do [ \"$(systemctl show -P Result {alert_unit})\" = success ] && exit 0; "
               "sleep 1; done; exit 1")
    assert machine.sh(f"systemctl show -P ExecMainStatus {alert_unit}").stdout.strip() == "0"
    said = machine.sh(f"journalctl -u {alert_unit} --no-pager").stdout
    assert "Alert: offsite-backup-postgres.service failed" in said


def test_ansible_lint_accepts_the_role():
    beside = Path(sys.executable).parent / "ansible-lint"  # the virtualenv's, even when it is not on PATH
    lint = str(beside) if beside.exists() else shutil.which("ansible-lint")
    if lint is None:
        pytest.fail("ansible-lint is not installed (the test extra installs it)")
    result = subprocess.run([lint, "--offline", "playbook.yml", "playbook-local.yml", "roles/backup"], cwd=ANSIBLE,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
