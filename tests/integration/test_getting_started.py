"""docs/getting-started.md, followed: the guide's own commands, taken from the guide, run in its order
on a Debian 13 machine booted with systemd (the systemd testbed), rootless for the `backup` user as the
guide says, from the Ansible role to a restore-tested backup on the NAS and the recovery kit.

The home server's services are stand-ins that root runs on that machine, as on a real server: OpenBao
for Vault (raft storage, initialized and unsealed), PostgreSQL with its port on the host's network, an
S3 server for MinIO and the NAS (sshd and SFTP). The NAS answers at an address of its own (192.0.2.10),
under the guide's name for it (nas.tailnet.ts.net, in /etc/hosts), so the guide runs unchanged.
What a real server would have that the testbed has not: its own registry access (so the restore tests'
PostgreSQL image is the testbed's, not `docker.io/library/postgres:17`) and a mail server
(`smtp.example.org` resolves to the machine itself, where nothing listens: alerts are logged unsent).
The guide's blocks run one after the other as in one shell session (its `cd` and `export` lines carry
over); what a person types at a prompt comes on standard input.

The tests share the machine and run in file order; each is a step of the guide with its check.
"""

from __future__ import annotations

import json
import re

import pytest
import yaml

from runner import images
from tests.conftest import PROJECT_ROOT
from tests.integration.systemd_host import SystemdHost

GUIDE = PROJECT_ROOT / "docs" / "getting-started.md"
WORKDIR = "/root/offsite-setup"
NAS_ADDRESS = "192.0.2.10"
NAS_NAME = "nas.tailnet.ts.net"
PG_PASSWORD = "home-server-postgres-password"
S3_SECRET = "home-server-minio-secret-key"
SMTP_PASSWORD = "home-server-smtp-password"
SOURCES = ("vault", "postgres", "minio", "files")
# What the testbed cannot have: a registry. The restore tests' PostgreSQL is the testbed's image.
SUBSTITUTIONS = {"docker.io/library/postgres:17": images.testbed_tag("postgres")}
USER = "systemctl --user -M backup@"


def guide_steps() -> dict[str, str]:
    """The guide's runnable blocks by name: a fenced block right after `<!-- step: NAME -->`."""
    return dict(re.findall(r"<!-- step: ([\w-]+) -->\n```\w+\n(.*?)```", GUIDE.read_text(), re.S))


STEPS = guide_steps()
RAN: list[str] = []


class Session:
    """The guide's blocks, run as root as in one shell session: each block's `cd` and `export` lines
    carry over to the next; a failing command stops the block."""

    def __init__(self, machine: SystemdHost):
        self.machine = machine
        self.carried: list[str] = []

    def text(self, step: str) -> str:
        """A block that is not a command (the role's variables)."""
        RAN.append(step)
        return STEPS[step]

    def run(self, step: str, input: str | None = None, check: bool = True):
        body = STEPS[step]
        RAN.append(step)
        result = self.machine.sh("\n".join(["set -e", *self.carried, body]), check=check, input=input)
        self.carried += [line for line in body.splitlines() if line.startswith(("cd ", "export "))]
        return result


def home_server_script(openbao: str, postgres: str, s3: str) -> str:
    """Root's services on the home server, and the files to back up (readable by root only)."""
    return f"""
set -e
podman run --rm --user 0 -v /usr/local/bin:/out --entrypoint cp {openbao} /usr/local/bin/bao /out/vault
podman run -d --name vault --network host {openbao}
podman run -d --name postgres --network host -e POSTGRES_PASSWORD={PG_PASSWORD} {postgres}
podman run -d --name s3 --network host {s3}
ip address add {NAS_ADDRESS}/32 dev lo
printf '%s\\n' '{NAS_ADDRESS} {NAS_NAME}' '127.0.0.1 smtp.example.org' >> /etc/hosts
install -d -m 0750 /srv/documents/letters
printf 'Dear NAS,\\n' > /srv/documents/letters/first.txt
head -c 300000 /dev/urandom > /srv/documents/scan.pdf
chmod 0600 /srv/documents/letters/first.txt /srv/documents/scan.pdf
for i in $(seq 240); do
    podman logs postgres 2>&1 | grep -q 'PostgreSQL init process complete' \\
        && podman exec postgres pg_isready -q && break
    sleep 0.5
done
podman exec postgres psql -qU postgres -c 'CREATE DATABASE shop'
podman exec postgres psql -qU postgres -d shop -c \\
    'CREATE TABLE orders AS SELECT g AS id, md5(g::text) AS item FROM generate_series(1, 2000) g'
podman exec s3 python3 -c "
import boto3
s3 = boto3.client('s3', endpoint_url='http://127.0.0.1:9000', region_name='us-east-1',
                  aws_access_key_id='backup-reader', aws_secret_access_key='{S3_SECRET}')
s3.create_bucket(Bucket='photos')
for i in range(5):
    s3.put_object(Bucket='photos', Key=f'2026/{{i}}.jpg', Body=bytes([i]) * 5000, ContentType='image/jpeg')
"
for i in $(seq 120); do  # vault status: 2 once the server answers, sealed
    status=0 && VAULT_ADDR=http://127.0.0.1:8200 vault status >/dev/null 2>&1 || status=$?
    [ "$status" = 2 ] && break
    sleep 0.5
done
"""


@pytest.fixture(scope="module")
def home(tmp_path_factory, settings, engine):
    """The home server before the guide: Debian 13 with systemd, the project in /opt/offsite-backup and its
    images in root's storage (what scripts/bootstrap leaves; here the suite's own, seen read-only), and the
    services the backups are for."""
    images.build(settings, ["openbao", "runner", "testbed-postgres", "testbed-s3", "testbed-nas"])
    machine = SystemdHost(settings, tmp_path_factory.mktemp("home-server"),
                          volumes={str(PROJECT_ROOT): "/opt/offsite-backup:ro"})
    try:
        machine.sh(home_server_script(settings.images.openbao, images.testbed_tag("postgres"),
                                      images.testbed_tag("s3")))
        init = json.loads(machine.sh("VAULT_ADDR=http://127.0.0.1:8200 vault operator init -key-shares=1 "
                                     "-key-threshold=1 -format=json").stdout)
        machine.sh("VAULT_ADDR=http://127.0.0.1:8200 vault write sys/unseal key=- >/dev/null",
                   input=init["unseal_keys_b64"][0])
        yield {"machine": machine, "session": Session(machine), "admin_token": init["root_token"]}
    finally:
        machine.remove()


def runner_json(machine: SystemdHost, *args: str):
    result = machine.sh("runner " + " ".join(args) + " --json", check=False)
    return json.loads(result.stdout)


def history(machine: SystemdHost, kind: str) -> dict[str, tuple[str, str]]:
    """The latest run of each source of this kind: (status, message)."""
    rows = machine.sh("sqlite3 -json /var/lib/offsite-backup/history.sqlite \"SELECT source, status, message "
                      f"FROM runs WHERE kind = '{kind}' ORDER BY id\"").stdout
    return {row["source"]: (row["status"], row["message"]) for row in json.loads(rows or "[]")}


def test_the_nas_key_is_made_and_the_nas_host_key_pinned(home):
    machine, session = home["machine"], home["session"]
    session.run("workdir")
    session.run("images")
    public_key = session.run("nas-key").stdout.strip().splitlines()[-1]
    assert public_key.startswith("ssh-ed25519 ") and public_key.endswith(" offsite-backup")
    # on the NAS: the printed line goes into the backup user's authorized_keys
    machine.sh(f"podman run -d --name nas --network host -e AUTHORIZED_KEYS='{public_key}' "
               f"{images.testbed_tag('nas')} && for i in $(seq 60); do podman logs nas 2>&1 | "
               "grep -q 'Server listening' && exit 0; sleep 0.5; done; exit 1")
    printed = session.run("nas-host-key").stdout
    on_the_nas = machine.sh("podman exec nas ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub").stdout.split()[1]
    assert on_the_nas.startswith("SHA256:") and on_the_nas in printed, (on_the_nas, printed)


def test_the_role_installs_everything_for_the_backup_user_and_changes_nothing_the_second_time(home):
    machine, session = home["machine"], home["session"]
    variables = session.text("vars")
    for theirs, ours in SUBSTITUTIONS.items():
        variables = variables.replace(theirs, ours)
    assert yaml.safe_load(variables)["backup_rootless"] is True
    machine.write(f"{WORKDIR}/vars.yml", variables, mode="0600")
    first, second = session.run("role"), session.run("role")
    recap = [dict(re.findall(r"(ok|changed|failed)=(\d+)", run.stdout)) for run in (first, second)]
    assert recap[0]["failed"] == "0" and int(recap[0]["changed"]) > 0
    assert recap[1]["changed"] == "0", second.stdout[-3000:]
    session.run("files-access")
    checked = session.run("role-check").stdout
    assert "configuration OK: /etc/offsite-backup/runner.toml" in checked
    for name in ("vault", "postgres", "minio", "files", "prune", "restore-test", "status"):
        assert f"offsite-backup-{name}.timer" in checked, checked

    machine.sh("test -f /var/lib/systemd/linger/backup && grep -q '^backup:' /etc/subuid /etc/subgid")
    generated = machine.sh(f"{USER} --no-legend list-unit-files 'offsite-backup-*.service'").stdout
    assert "offsite-backup-files.service" in generated and "generated" in generated, generated
    units = "/home/backup/.config/containers/systemd"
    dropin = machine.sh(f"cat {units}/offsite-backup-postgres.container.d/10-rootless.conf").stdout
    assert "UserNS=keep-id" in dropin and "RUNNER_JOBS__USERNS=keep-id" in dropin
    paths = machine.sh(f"cat {units}/offsite-backup-files.container.d/20-paths.conf").stdout
    assert "Volume=/srv/documents:/srv/documents:ro" in paths
    assert machine.sh("stat -c '%U %a' /run/offsite-backup/secrets").stdout.strip() == "backup 700"
    own_images = machine.sh("runuser -u backup -- env XDG_RUNTIME_DIR=/run/user/$(id -u backup) "
                            "podman images --format '{{.Repository}}:{{.Tag}}'").stdout.split()
    assert {"localhost/offsite-backup/runner:latest", images.testbed_tag("postgres")} <= set(own_images)
    assert 'template {' in machine.sh("cat /etc/offsite-backup/agent.hcl").stdout


def test_vault_is_bootstrapped_and_given_every_credential(home):
    machine, session = home["machine"], home["session"]
    first = session.run("bootstrap", input=home["admin_token"] + "\n").stdout
    assert "created:   policy offsite-backup" in first and "missing:   secret/offsite-backup/nas/nas" in first
    typed = "\n".join((PG_PASSWORD, S3_SECRET, SMTP_PASSWORD)) + "\n"
    second = session.run("credentials", input=typed).stdout
    assert "missing:" not in second and "unchanged: secret/offsite-backup/restic/vault" in second, second
    machine.sh("test ! -e /root/.vault-token")


def test_the_agent_renders_every_secret_for_the_backup_user_only(home):
    machine, session = home["machine"], home["session"]
    session.run("agent")
    expected = ["restic-vault.password", "restic-postgres.password", "restic-minio.password",
                "restic-files.password", "nas-ssh-key", "nas-known_hosts", "postgres.pgpass", "minio-credentials",
                "smtp-credentials", "vault-snapshot-token"]
    machine.sh("for i in $(seq 60); do cd /run/offsite-backup/secrets && ls " + " ".join(expected)
               + " >/dev/null 2>&1 && exit 0; sleep 0.5; done; exit 1")
    listing = machine.sh("stat -c '%n %A %U' /run/offsite-backup/secrets/*").stdout.splitlines()
    assert sorted(line.split()[0].rsplit("/", 1)[1] for line in listing) == sorted(expected)
    assert all(line.endswith(" -r-------- backup") for line in listing), listing
    assert PG_PASSWORD in machine.sh("cat /run/offsite-backup/secrets/postgres.pgpass").stdout


def test_the_repositories_are_created_on_the_nas(home):
    machine, session = home["machine"], home["session"]
    session.run("repositories")
    states = runner_json(machine, "repo", "list")
    assert {(s["source"], s["destination"], s["state"], s["snapshots"]) for s in states} == {
        (source, "nas", "ok", 0) for source in SOURCES}
    on_the_nas = machine.sh("podman exec nas ls /backups/homeserver").stdout.split()
    assert sorted(on_the_nas) == sorted(SOURCES)


def test_the_first_backup_of_every_source_runs_rootless_through_the_units(home):
    machine, session = home["machine"], home["session"]
    said = session.run("backup", check=False)
    ran = history(machine, "backup")
    assert {source: status for source, (status, _) in ran.items()} == dict.fromkeys(SOURCES, "ok"), (ran, said.stderr)
    assert said.returncode == 0, said.stdout[-3000:] + said.stderr[-3000:]
    states = runner_json(machine, "status")
    assert all(s["last_outcome"] == "ok" and s["within_rpo"] for s in states), states
    # rootless: everything the backups wrote on the server belongs to the backup user, and root's Podman
    # ran none of their containers (only the home server's own services)
    assert machine.sh("find /var/lib/offsite-backup /var/cache/offsite-backup ! -user backup").stdout == ""
    assert sorted(machine.sh("podman ps -a --format '{{.Names}}'").stdout.split()) == ["nas", "postgres", "s3", "vault"]


def test_the_first_restore_test_verifies_vault_minio_and_files(home):
    machine, session = home["machine"], home["session"]
    session.run("restore-test", check=False)
    tested = history(machine, "restore-test")
    for source in ("vault", "minio", "files"):
        assert tested[source][0] == "ok", tested
    states = {s["source"]: s for s in runner_json(machine, "status")}
    assert all(states[source]["last_restore_test"] == "ok" for source in ("vault", "minio", "files")), states


def test_the_first_restore_test_verifies_postgres(home):
    status, message = history(home["machine"], "restore-test")["postgres"]
    assert status == "ok", message


def test_the_recovery_kit_is_written_private_and_the_setup_removed(home):
    machine, session = home["machine"], home["session"]
    session.run("recovery-kit")
    mode = machine.sh(f"stat -c '%a %U' {WORKDIR}/recovery-kit.md").stdout.split()
    assert mode == ["400", "root"]
    kit = machine.sh(f"cat {WORKDIR}/recovery-kit.md").stdout
    key = machine.sh(f"cat {WORKDIR}/nas-key").stdout.strip()
    for source in SOURCES:
        assert f"### {source} on nas" in kit
    assert key in kit and f"{NAS_NAME} ssh-ed25519 " in kit
    session.run("cleanup")
    machine.sh(f"test ! -e {WORKDIR}")


def test_every_step_of_the_guide_was_run():
    assert sorted(set(RAN)) == sorted(STEPS), "a step of docs/getting-started.md that the test does not run"
