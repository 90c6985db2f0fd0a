"""`runner repo rotate-key` against a real OpenBao and a real `bao agent`, with two destinations (a
local directory, and an S3 bucket whose keys the agent renders too): a rotation that the next backup
and restore test use, and one interrupted between adding the new key and removing the old (the agent
stopped, so the new password is never rendered). The tests share one stack, in file order."""

import json

import pytest

from runner.secrets.catalog import catalog
from runner.selftest import write_sample
from runner.settings import Settings
from runner.workspace import job_dir
from tests.integration.conftest import private_file, run_tools
from tests.integration.services import S3, OpenBao
from tests.integration.test_secrets import Agent, cli_run, stop_quietly, wait_for

PREFIX = "offsite-backup"
S3_SECRET = "rotation-test-s3-secret-key-0123456789"
DESTINATIONS = {"local", "offsite"}


def rotation_settings(base: Settings, root, bao, s3) -> Settings:
    data = root / "etc-app"
    data.mkdir(mode=0o755)
    write_sample(data)
    for path in data.rglob("*"):
        if not path.is_symlink():
            path.chmod(0o755 if path.is_dir() else 0o644)
    return Settings(
        paths={**base.paths.model_dump(), "state_dir": root / "state", "staging_dir": root / "staging",
               "secrets_dir": job_dir(root / "secrets", base)},
        secrets={"approle_dir": root / "approle", "render_interval": 2, "kv_prefix": PREFIX, "policy": PREFIX,
                 "approle": PREFIX},
        destinations={"local": {"kind": "local", "path": str(root / "repos" / "{source}")},
                      "offsite": {"kind": "s3", "endpoint": s3.endpoint, "bucket": "rotation", "path": "{source}"}},
        sources={"vault": {"address": bao.url, "enabled": False}, "postgres": {"enabled": False},
                 "minio": {"enabled": False}, "files": {"paths": [data]}},
    )


def start_agent(settings: Settings, root) -> Agent:
    agent = Agent(settings, root / "agent.hcl").start()
    files = [s.path for s in catalog(settings)]
    try:
        wait_for(lambda: all(p.exists() for p in files), "the agent did not render every secret file")
    except TimeoutError:
        raise TimeoutError(agent.logs_text()[-3000:]) from None
    return agent


@pytest.fixture(scope="module")
def stack(tmp_path_factory, engine, settings, testcontainers_env):
    root = tmp_path_factory.mktemp("rotation-stack")
    root.chmod(0o755)
    bao = OpenBao(settings).start()
    s3 = S3(settings).start()
    agents = []
    try:
        configured = rotation_settings(settings, root, bao, s3)
        (root / "admin-token").write_text(bao.root_token)
        bootstrapped = cli_run(configured, root, "vault", "bootstrap", "--token-file", str(root / "admin-token"))
        assert bootstrapped.exit_code == 0, bootstrapped.output
        assert "missing:   secret/offsite-backup/s3/offsite: access_key_id, secret_access_key" in bootstrapped.output
        bao.client.secrets.kv.v2.create_or_update_secret(
            path=f"{PREFIX}/s3/offsite", secret={"access_key_id": "AKIAROTATION00000001",
                                                 "secret_access_key": S3_SECRET})
        assert cli_run(configured, root, "vault", "agent-config", "-o", str(root / "agent.hcl")).exit_code == 0
        agents.append(start_agent(configured, root))
        credentials = (configured.paths.secrets_dir / "offsite-aws-credentials").read_text()
        assert f"aws_secret_access_key = {S3_SECRET}" in credentials
        initialized = cli_run(configured, root, "repo", "init")
        assert initialized.exit_code == 0, initialized.output
        backed_up = cli_run(configured, root, "exec", "backup", "files")
        assert backed_up.exit_code == 0, backed_up.output
        yield {"settings": configured, "root": root, "bao": bao, "agents": agents}
    finally:
        for container in (*agents, bao, s3):
            stop_quietly(container)


def vault_password(stack) -> str:
    return stack["bao"].client.secrets.kv.v2.read_secret_version(
        path=f"{PREFIX}/restic/files", raise_on_deleted_version=True)["data"]["data"]["password"]


def opens_with(stack, password: str, name: str) -> bool:
    """Whether restic, on its own, opens the files repository with this password."""
    settings, root = stack["settings"], stack["root"]
    keys = job_dir(root / "keys", settings)
    path = keys / name
    if path.exists():
        path.unlink()
    private_file(path, password, settings)
    try:
        run_tools(settings, "restic", "-r", "/repo", "--password-file", f"/keys/{name}", "--no-cache", "cat", "config",
                  mounts=(f"{root / 'repos' / 'files'}:/repo", f"{keys}:/keys"), user=settings.jobs.user)
    except RuntimeError:
        return False
    return True


def key_count(stack, password: str) -> int:
    settings, root = stack["settings"], stack["root"]
    keys = job_dir(root / "keys", settings)
    path = keys / "count"
    if path.exists():
        path.unlink()
    private_file(path, password, settings)
    listed = run_tools(settings, "restic", "-r", "/repo", "--password-file", "/keys/count", "--no-cache", "--json",
                       "key", "list", mounts=(f"{root / 'repos' / 'files'}:/repo", f"{keys}:/keys"),
                       user=settings.jobs.user)
    return len(json.loads(listed))


def test_rotation_is_used_by_the_next_backup_and_restore_test(stack):
    settings, root = stack["settings"], stack["root"]
    password_file = settings.paths.secrets_dir / "restic-files.password"
    old = password_file.read_text()
    assert old == vault_password(stack)
    kit = root / "kit.md"

    rotated = cli_run(settings, root, "repo", "rotate-key", "files", "--token-file", str(root / "admin-token"),
                      "--wait", "60", "--write-kit", str(kit), "--json")
    assert rotated.exit_code == 0, rotated.output
    results = json.loads(rotated.stdout)
    assert {r["destination"] for r in results} == DESTINATIONS
    for result in results:
        assert result["status"] == "ok" and "old key" in result["message"] and "removed" in result["message"]

    new = vault_password(stack)
    assert new != old and password_file.read_text() == new
    assert new not in rotated.output and old not in rotated.output
    assert opens_with(stack, new, "new") and not opens_with(stack, old, "old")
    assert key_count(stack, new) == 1
    assert f"Password: {new}" in kit.read_text() and oct(kit.stat().st_mode & 0o777) == "0o400"
    assert not list((settings.paths.state_dir / "key-rotation").iterdir())  # the new password's file is gone

    backed_up = cli_run(settings, root, "exec", "backup", "files", "--json")
    assert backed_up.exit_code == 0, backed_up.output
    assert {r["destination"] for r in json.loads(backed_up.stdout) if r["status"] == "ok"} == DESTINATIONS
    for destination in DESTINATIONS:
        tested = cli_run(settings, root, "exec", "restore-test", "files", "--destination", destination, "--json")
        assert tested.exit_code == 0, tested.output
        assert [r["status"] for r in json.loads(tested.stdout)] == ["ok"]


def test_rotation_interrupted_before_the_render_leaves_both_passwords_working(stack):
    settings, root = stack["settings"], stack["root"]
    password_file = settings.paths.secrets_dir / "restic-files.password"
    old = password_file.read_text()
    stop_quietly(stack["agents"][-1])  # the agent is down: the new password is never rendered

    rotated = cli_run(settings, root, "repo", "rotate-key", "--token-file", str(root / "admin-token"),
                      "--wait", "5", "--json")
    assert rotated.exit_code == 1
    results = json.loads(rotated.stdout)
    assert {r["destination"] for r in results} == DESTINATIONS
    for result in results:
        assert result["status"] == "failed"
        assert f"did not render the new password into {password_file} within 5 s" in result["message"]

    in_vault = vault_password(stack)
    assert in_vault != old and password_file.read_text() == old
    assert opens_with(stack, in_vault, "vault") and opens_with(stack, old, "old")
    assert key_count(stack, in_vault) == 2

    refused = cli_run(settings, root, "repo", "rotate-key", "--token-file", str(root / "admin-token"), "--json")
    assert refused.exit_code == 1
    assert "does not hold the password Vault has for files" in json.loads(refused.stdout)[0]["message"]

    stack["agents"].append(start_agent(settings, root))
    wait_for(lambda: password_file.read_text() == in_vault, "the restarted agent did not render Vault's password")
    backed_up = cli_run(settings, root, "exec", "backup", "files", "--json")
    assert backed_up.exit_code == 0, backed_up.output
    assert {r["destination"] for r in json.loads(backed_up.stdout) if r["status"] == "ok"} == DESTINATIONS
