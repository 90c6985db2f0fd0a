"""Secrets from a real OpenBao through a real `bao agent`: bootstrap, rendering, refusal, redaction,
least privilege and the recovery kit. The tests share one stack and run in file order."""

import json
import re
import subprocess
import time
from pathlib import Path

import hvac
import pytest
import requests
from click.testing import CliRunner
from podman.domain.containers_manager import ContainersManager
from testcontainers.core.container import DockerContainer

from runner.cli import cli
from runner.secrets.catalog import catalog
from runner.settings import Settings
from runner.sources.vault.backup import verify_snapshot
from runner.workspace import job_dir
from tests.integration.conftest import private_file, run_tools, write_config
from tests.integration.nas import NasContainer, make_identity
from tests.integration.services import S3, OpenBao, Postgres
from tests.integration.test_sources import SAMPLE_DATABASES, fill_buckets

MINIO_SECRET = "minio-secret-key-0123456789"
PG_PASSWORD = Postgres.password


class Agent(DockerContainer):
    """`bao agent` in the project's openbao image, as the Quadlet unit runs it: the job user,
    host paths mounted at the same paths."""

    def __init__(self, settings: Settings, config: Path):
        super().__init__(settings.images.openbao)
        self.with_command(f"agent -config={config}")
        self.with_kwargs(user=settings.jobs.user)
        self.with_volume_mapping(str(config), str(config), "ro")
        self.with_volume_mapping(str(settings.secrets.approle_dir), str(settings.secrets.approle_dir), "ro")
        self.with_volume_mapping(str(settings.paths.secrets_dir), str(settings.paths.secrets_dir), "rw")

    def logs_text(self) -> str:
        out, err = self.get_logs()
        return (out + err).decode(errors="replace")


def cli_run(settings, directory, *args):
    config = write_config(settings, directory / "runner.toml")
    return CliRunner().invoke(cli, ["--config", str(config), *args], prog_name="runner")


def wait_for(condition, what, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.3)
    raise TimeoutError(what)


def stack_settings(base, root: Path, bao, postgres, s3, prefix="offsite-backup") -> Settings:
    return Settings(
        paths={**base.paths.model_dump(), "state_dir": root / "state", "staging_dir": root / "staging",
               "secrets_dir": job_dir(root / "secrets", base)},
        secrets={"approle_dir": root / "approle", "render_interval": 2, "kv_prefix": prefix,
                 "policy": prefix, "approle": prefix},
        destinations={"local": {"kind": "local", "path": str(root / "repos" / "{source}")}},
        sources={"vault": {"address": bao.url},
                 "postgres": {"container": postgres.name} if postgres else {"enabled": False},
                 "minio": {"endpoint": s3.endpoint}, "files": {"enabled": False}},
    )


@pytest.fixture(scope="module")
def stack(tmp_path_factory, engine, settings, testcontainers_env):
    root = tmp_path_factory.mktemp("secrets-stack")
    with Postgres(settings) as postgres, S3(settings) as s3:
        bao = OpenBao(settings).start()
        agent = None
        try:
            postgres.load(SAMPLE_DATABASES)
            fill_buckets(s3)
            configured = stack_settings(settings, root, bao, postgres, s3)
            admin_token = root / "admin-token"
            admin_token.write_text(bao.root_token)
            result = cli_run(configured, root, "vault", "bootstrap", "--token-file", str(admin_token))
            assert result.exit_code == 0, result.output
            bao.client.secrets.kv.v2.create_or_update_secret(
                path="offsite-backup/postgres", secret={"user": "postgres", "password": PG_PASSWORD})
            bao.client.secrets.kv.v2.create_or_update_secret(
                path="offsite-backup/minio", secret={"access_key": "AKIATESTTESTTEST", "secret_key": MINIO_SECRET})
            assert cli_run(configured, root, "vault", "agent-config", "-o", str(root / "agent.hcl")).exit_code == 0
            agent = Agent(configured, root / "agent.hcl").start()
            files = [s.path for s in catalog(configured)]  # the agent's token among them
            try:
                wait_for(lambda: all(p.exists() for p in files), "the agent did not render every secret file")
            except TimeoutError:
                raise TimeoutError(f"the agent rendered {[p.name for p in files if p.exists()]} of "
                                   f"{[p.name for p in files]}:\n" + agent.logs_text()[-3000:]) from None
            yield {"settings": configured, "root": root, "bao": bao, "agent": agent, "files": files,
                   "bootstrap_output": result.output, "postgres": postgres, "s3": s3}
        finally:
            for container in (agent, bao):
                stop_quietly(container)


def stop_quietly(container) -> None:
    """Stop a container that a test may already have stopped (and Podman removed)."""
    import docker

    if container is not None:
        try:
            container.stop()
        except docker.errors.NotFound:
            pass


def test_bootstrap_reports_what_it_created_and_is_idempotent(stack):
    output = stack["bootstrap_output"]
    for line in ("created:   policy offsite-backup", "created:   role-id file", "created:   secret-id file",
                 "generated restic repository password of vault", "generated restic repository password of minio"):
        assert line in output, output
    again = cli_run(stack["settings"], stack["root"], "vault", "bootstrap",
                    "--token-file", str(stack["root"] / "admin-token"))
    assert again.exit_code == 0
    assert "unchanged: policy offsite-backup" in again.output
    assert "generated" not in again.output
    assert "unchanged: secret/offsite-backup/restic/vault" in again.output


def test_rendered_files_are_private_and_owned_by_the_job_user(stack):
    for path in stack["files"]:
        info = path.stat()
        assert oct(info.st_mode & 0o777) == "0o400", path
        assert f"{info.st_uid}:{info.st_gid}" == stack["settings"].jobs.user, path
    credentials = (stack["settings"].paths.secrets_dir / "minio-credentials").read_text()
    assert "aws_secret_access_key = " + MINIO_SECRET in credentials


def test_backup_of_every_source_with_rendered_secrets_leaks_none(stack, monkeypatch):
    settings, root, bao = stack["settings"], stack["root"], stack["bao"]
    inspections = []
    original_create = ContainersManager.create

    def create_and_inspect(self, *args, **kwargs):
        container = original_create(self, *args, **kwargs)
        inspections.append(subprocess.run(["podman", "inspect", container.id], capture_output=True, text=True).stdout)
        return container

    monkeypatch.setattr(ContainersManager, "create", create_and_inspect)
    assert cli_run(settings, root, "repo", "init").exit_code == 0
    result = cli_run(settings, root, "--log-level", "TRACE", "exec", "backup", "all", "--json")
    assert result.exit_code == 0, result.output
    assert ({r["source"]: r["status"] for r in json.loads(result.stdout)}
            == {"vault": "ok", "postgres": "ok", "minio": "ok"})

    known = [bao.root_token, PG_PASSWORD, MINIO_SECRET,
             (settings.paths.secrets_dir / "vault-snapshot-token").read_text().strip(),
             (settings.secrets.approle_dir / "secret-id").read_text().strip()]
    known += [bao.client.secrets.kv.v2.read_secret_version(path=f"offsite-backup/restic/{s}",
                                                           raise_on_deleted_version=True)["data"]["data"]["password"]
              for s in ("vault", "postgres", "minio")]
    state_files = [p for p in settings.paths.state_dir.rglob("*") if p.is_file()]
    assert inspections and state_files
    for secret in known:
        assert all(secret not in inspected for inspected in inspections), "a secret in podman inspect"
        assert secret not in result.output, "a secret in the log"
        for path in state_files:
            assert secret.encode() not in path.read_bytes(), f"a secret in {path}"


def test_changed_password_is_rendered_and_used_on_the_next_run(stack):
    settings, root, bao = stack["settings"], stack["root"], stack["bao"]
    password_file = settings.paths.secrets_dir / "restic-minio.password"
    old = password_file.read_text()
    new = "rotated-password-for-the-minio-repository"
    bao.client.secrets.kv.v2.create_or_update_secret(path="offsite-backup/restic/minio", secret={"password": new})
    wait_for(lambda: password_file.read_text() == new, "the agent did not re-render the changed password")
    refused = cli_run(settings, root, "exec", "backup", "minio", "--json")
    assert refused.exit_code == 1
    assert "wrong password" in json.loads(refused.stdout)[0]["message"]
    # the rotation an administrator does: add the new password as a key of the repository
    keys = job_dir(root / "keys", settings)
    private_file(keys / "old", old, settings)
    private_file(keys / "new", new, settings)
    run_tools(settings, "restic", "-r", "/repo", "--password-file", "/keys/old", "key", "add",
              "--new-password-file", "/keys/new", mounts=(f"{root / 'repos' / 'minio'}:/repo", f"{keys}:/keys"),
              user=settings.jobs.user)
    accepted = cli_run(settings, root, "exec", "backup", "minio", "--json")
    assert accepted.exit_code == 0, accepted.output


def test_file_readable_by_others_is_refused_by_name(stack):
    settings, root = stack["settings"], stack["root"]
    path = settings.paths.secrets_dir / "restic-vault.password"
    path.chmod(0o644)
    try:
        result = cli_run(settings, root, "exec", "backup", "vault", "--json")
    finally:
        path.chmod(0o400)
    assert result.exit_code == 1
    message = json.loads(result.stdout)[0]["message"]
    assert str(path) in message and "readable by group or others" in message


def test_policy_reads_backup_secrets_and_snapshots_only(stack):
    settings, bao = stack["settings"], stack["bao"]
    approle = settings.secrets.approle_dir
    client = hvac.Client(url=bao.url)
    client.auth.approle.login(role_id=(approle / "role-id").read_text(), secret_id=(approle / "secret-id").read_text())
    minio_secret = client.secrets.kv.v2.read_secret_version(path="offsite-backup/minio", raise_on_deleted_version=True)
    assert minio_secret["data"]["data"]["secret_key"] == MINIO_SECRET
    assert client.sys.take_raft_snapshot().status_code == 200
    bao.client.secrets.kv.v2.create_or_update_secret(path="other-app/db", secret={"password": "not-for-backups"})
    forbidden = [
        lambda: client.secrets.kv.v2.read_secret_version(path="other-app/db", raise_on_deleted_version=True),
        lambda: client.secrets.kv.v2.create_or_update_secret(path="offsite-backup/minio", secret={"x": "y"}),
        lambda: client.secrets.kv.v2.create_or_update_secret(path="offsite-backup/new", secret={"x": "y"}),
        lambda: client.secrets.kv.v2.delete_metadata_and_all_versions(path="offsite-backup/minio"),
        lambda: client.secrets.kv.v2.list_secrets(path="offsite-backup"),
        lambda: client.sys.create_or_update_policy("escalate", 'path "*" { capabilities = ["sudo"] }'),
        lambda: client.write("cubbyhole/note", value="x"),
        lambda: client.sys.restore_raft_snapshot(b"x"),
    ]
    for attempt in forbidden:
        with pytest.raises(hvac.exceptions.Forbidden):
            attempt()


def test_missing_key_is_reported_by_the_agent_and_the_job_refuses(stack, tmp_path, settings):
    bao = stack["bao"]
    broken = stack_settings(settings, tmp_path, bao, None, stack["s3"], prefix="broken")
    (tmp_path / "admin-token").write_text(bao.root_token)
    assert cli_run(broken, tmp_path, "vault", "bootstrap", "--token-file", str(tmp_path / "admin-token")).exit_code == 0
    bao.client.secrets.kv.v2.create_or_update_secret(path="broken/minio", secret={"access_key": "only-half"})
    assert cli_run(broken, tmp_path, "vault", "agent-config", "-o", str(tmp_path / "agent.hcl")).exit_code == 0
    agent = Agent(broken, tmp_path / "agent.hcl")
    agent.start()
    try:
        wait_for(lambda: 'no entry for key \\"secret_key\\"' in agent.logs_text(),
                 "the agent did not report the missing key")
        wait_for(lambda: agent.get_wrapped_container().reload() or agent.get_wrapped_container().status == "exited",
                 "the agent did not stop on the rendering error")
    finally:
        agent.stop()
    credentials = broken.paths.secrets_dir / "minio-credentials"
    assert not credentials.exists() or "<no value>" in credentials.read_text()
    result = cli_run(broken, tmp_path, "exec", "backup", "minio", "--json")
    assert result.exit_code == 1
    message = json.loads(result.stdout)[0]["message"]
    assert str(credentials) in message


def kit_commands(kit: str, destination: str, source: str) -> str:
    """What the kit says to run for one source on one destination: the destination's set-up block (if it
    has one), then the source's block, exactly as written in the kit."""
    part = kit.split(f"## Destination `{destination}`", 1)[1].split("\n## ", 1)[0]
    setup = part.split("\n### ", 1)[0]
    section = part.split(f"### {source} on {destination}", 1)[1].split("\n### ", 1)[0]
    return "".join(re.findall(r"```sh\n(.*?)```", setup + section, re.S))


def test_recovery_kit_alone_restores_vault(stack, tmp_path):
    """With Vault gone, the kit's own commands restore Vault's snapshot from the NAS and from the local
    repository, in a container of the tools image (restic, ssh) that has neither Vault nor the runner."""
    settings, root = stack["settings"], stack["root"]
    identity = make_identity(tmp_path / "ssh", settings)
    with NasContainer(settings, identity) as nas:
        # the NAS's key and pinned host key where the agent renders them, as with `nas/nas` in Vault
        private_file(settings.paths.secrets_dir / "nas-ssh-key", identity.private_key.read_text(), settings)
        private_file(settings.paths.secrets_dir / "nas-known_hosts", nas.known_hosts_line(), settings)
        with_nas = Settings(**{**settings.model_dump(), "destinations": {
            **settings.model_dump()["destinations"],
            "nas": {"kind": "nas", "host": nas.address, "connect_timeout": 3, "bandwidth_limit": 0}}})
        assert cli_run(with_nas, root, "repo", "init", "--destination", "nas").exit_code == 0
        backup = cli_run(with_nas, root, "exec", "backup", "vault", "--destination", "nas")
        assert backup.exit_code == 0, backup.output
        kit = root / "kit.md"
        result = cli_run(with_nas, root, "recovery-kit", "--output", str(kit))
        assert result.exit_code == 0, result.output
        assert oct(kit.stat().st_mode & 0o777) == "0o400" and "mode 0400" in result.output
        text = kit.read_text()
        assert "KEEP THIS OFFLINE" in text and "Restore order" in text
        assert identity.private_key.read_text().strip() in text  # the NAS key is in the kit
        stop_quietly(stack["agent"])
        stop_quietly(stack["bao"])  # from here on there is no Vault
        with pytest.raises(requests.ConnectionError):
            requests.get(stack["bao"].url + "/v1/sys/health", timeout=3)

        for destination in ("nas", "local"):
            workdir = job_dir(tmp_path / f"kit-{destination}", settings)
            location = re.search(r"Location: (\S+)", text.split(f"### vault on {destination}", 1)[1]).group(1)
            same_path = ["-v", f"{location}:{location}"] if destination == "local" else []
            # a person with the kit and restic: the kit's commands, word for word, in an empty directory
            run = subprocess.run(["podman", "run", "--rm", "-v", f"{workdir}:/kit", "-w", "/kit", *same_path,
                                  settings.images.tools, "sh", "-euc", kit_commands(text, destination, "vault")],
                                 capture_output=True, text=True, timeout=300)
            assert run.returncode == 0, f"{destination}:\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}"
            assert int(re.search(r"(\d+) snapshots", run.stdout).group(1)) >= 1, run.stdout
            restored = workdir / "restore-vault" / "vault" / "vault-raft.snap"
            assert verify_snapshot(restored)["Index"] > 0, destination
    found = subprocess.run(["podman", "run", "--rm", settings.images.tools, "sh", "-c",
                            "for name in vault bao runner; do command -v $name; done; true"],
                           capture_output=True, text=True)
    assert found.returncode == 0 and found.stdout == "", found.stdout  # neither Vault nor the runner in there
