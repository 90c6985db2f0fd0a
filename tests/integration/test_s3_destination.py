"""The S3 destination against a real S3 service (moto's server): restic writes the repository into the
bucket, the files come back byte for byte, and keys the service refuses (moto with its access-key
checking on) fail that destination alone, with a message that says so.

moto's signature check rejects some of restic's listing requests whatever the key (its canonical query
differs from the client's), so restic itself writes to the stand-in without checking; the refusal is
the preflight's, which asks the service before any restic job runs."""

import json
import subprocess

import boto3
import pytest
from click.testing import CliRunner
from podman.domain.containers_manager import ContainersManager

from runner.cli import cli
from runner.selftest import tree_fingerprint, write_sample
from runner.settings import Settings
from runner.sources.files.backup import ROOT
from runner.workspace import job_dir
from tests.integration.conftest import private_file, write_config
from tests.integration.services import S3
from tests.integration.test_secrets import kit_commands

BUCKET = "offsite-backups"
# moto checks request signatures once this many requests have been served: the fixture's own three
# (the IAM user, its policy, its access key) go through without.
UNCHECKED_REQUESTS = 3
ALLOW_S3 = json.dumps({"Version": "2012-10-17",
                       "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]})


class CheckedS3(S3):
    """The S3 stand-in, refusing requests not signed with an access key it issued."""

    def __init__(self, settings: Settings):
        super().__init__(settings)
        self.with_env("INITIAL_NO_AUTH_ACTION_COUNT", str(UNCHECKED_REQUESTS))

    def start(self):
        super().start()
        iam = boto3.client("iam", endpoint_url=self.endpoint, region_name="us-east-1",
                           aws_access_key_id="AKIAUNCHECKED0000000", aws_secret_access_key="unchecked")
        iam.create_user(UserName="backup")
        iam.put_user_policy(UserName="backup", PolicyName="s3", PolicyDocument=ALLOW_S3)
        key = iam.create_access_key(UserName="backup")["AccessKey"]
        self.keys = (key["AccessKeyId"], key["SecretAccessKey"])
        return self


@pytest.fixture(scope="module")
def store(testcontainers_env, settings):
    with S3(settings) as server:
        server.keys = ("AKIAOFFSITE000000001", "offsite-secret-access-key-0123456789")
        yield server


@pytest.fixture(scope="module")
def checked(testcontainers_env, settings):
    with CheckedS3(settings) as server:
        yield server


def credentials(access_key: str, secret_key: str) -> str:
    return f"[default]\naws_access_key_id = {access_key}\naws_secret_access_key = {secret_key}\n"


def configure(base: Settings, tmp_path, store, **extra_destinations) -> Settings:
    tmp_path.chmod(0o755)
    data = tmp_path / "etc-app"
    data.mkdir(mode=0o755)
    write_sample(data)
    for path in data.rglob("*"):
        if not path.is_symlink():
            path.chmod(0o755 if path.is_dir() else 0o644)
    secrets = tmp_path / "secrets"
    secrets.mkdir(mode=0o700)
    private_file(secrets / "restic-files.password", "s3 destination test password", base)
    private_file(secrets / "offsite-aws-credentials", credentials(*store.keys), base)
    offsite = {"kind": "s3", "endpoint": store.endpoint, "bucket": BUCKET, "path": f"{tmp_path.name}/{{source}}",
               "bandwidth_limit": "50MB"}
    return Settings(
        paths={**base.paths.model_dump(), "state_dir": tmp_path / "state", "staging_dir": tmp_path / "staging",
               "secrets_dir": secrets},
        destinations={"offsite": offsite, **extra_destinations},
        restore_tests={"destination": "offsite"},
        sources={"files": {"paths": [data]}, **{s: {"enabled": False} for s in ("vault", "postgres", "minio")}},
    )


def invoke(settings, tmp_path, *args):
    config = write_config(settings, tmp_path / "runner.toml")
    return CliRunner().invoke(cli, ["--config", str(config), *args], prog_name="runner")


def stored_keys(store, prefix: str) -> list[str]:
    client = boto3.client("s3", endpoint_url=store.endpoint, region_name="us-east-1",
                          aws_access_key_id=store.keys[0], aws_secret_access_key=store.keys[1])
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


def test_files_go_into_the_bucket_and_come_back_byte_for_byte(engine, settings, tmp_path, store, monkeypatch):
    configured = configure(settings, tmp_path, store)
    data = configured.sources.files.paths[0]
    inspections = []
    original_create = ContainersManager.create

    def create_and_inspect(self, *args, **kwargs):
        container = original_create(self, *args, **kwargs)
        inspections.append(subprocess.run(["podman", "inspect", container.id], capture_output=True, text=True).stdout)
        return container

    monkeypatch.setattr(ContainersManager, "create", create_and_inspect)
    initialized = invoke(configured, tmp_path, "repo", "init")
    assert initialized.exit_code == 0, initialized.output
    assert f"s3:{store.endpoint}/{BUCKET}/{tmp_path.name}/files" in initialized.output
    assert f"{tmp_path.name}/files/config" in stored_keys(store, tmp_path.name)

    backed_up = invoke(configured, tmp_path, "--log-level", "DEBUG", "exec", "backup", "files", "--json")
    assert backed_up.exit_code == 0, backed_up.output
    [result] = json.loads(backed_up.stdout)
    assert result["destination"] == "offsite" and result["status"] == "ok"
    assert any(key.startswith(f"{tmp_path.name}/files/data/") for key in stored_keys(store, tmp_path.name))

    listed = invoke(configured, tmp_path, "repo", "list", "--json")
    assert listed.exit_code == 0, listed.output
    [state] = json.loads(listed.stdout)
    assert state["state"] == "ok" and state["snapshots"] >= 1 and state["stored_bytes"] > 0

    target = tmp_path / "restored"
    restored = invoke(configured, tmp_path, "restore", "files", "--to-dir", str(target), "--destination", "offsite")
    assert restored.exit_code == 0, restored.output
    assert tree_fingerprint(target / str(data).lstrip("/")) == tree_fingerprint(data)
    for path in (p for p in data.rglob("*") if p.is_file() and not p.is_symlink()):
        assert (target / str(path).lstrip("/")).read_bytes() == path.read_bytes(), path

    kit = tmp_path / "kit.md"
    assert invoke(configured, tmp_path, "recovery-kit", "--output", str(kit)).exit_code == 0
    workdir = job_dir(tmp_path / "kit", settings)
    # a person with the kit and restic: the kit's commands, word for word, in an empty directory
    run = subprocess.run(["podman", "run", "--rm", "-v", f"{workdir}:/kit", "-w", "/kit", settings.images.tools,
                          "sh", "-euc", kit_commands(kit.read_text(), "offsite", "files")],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, f"{run.stdout[-2000:]}\n{run.stderr[-2000:]}"
    from_kit = workdir / "restore-files" / ROOT.strip("/") / str(data).lstrip("/")  # the job saw the paths there
    assert tree_fingerprint(from_kit) == tree_fingerprint(data)

    tested = invoke(configured, tmp_path, "exec", "restore-test", "files", "--json")
    assert tested.exit_code == 0, tested.output
    assert json.loads(tested.stdout)[0]["status"] == "ok"
    checked = invoke(configured, tmp_path, "exec", "check", "--json")
    assert checked.exit_code == 0, checked.output
    pruned = invoke(configured, tmp_path, "exec", "prune", "--json")
    assert pruned.exit_code == 0, pruned.output

    assert inspections
    for inspected in inspections:
        assert store.keys[1] not in inspected and store.keys[0] not in inspected, "a key in podman inspect"
    for output in (initialized.output, backed_up.output, restored.output, tested.output, checked.output, run.stdout,
                   run.stderr):
        assert store.keys[1] not in output


def test_refused_keys_fail_only_that_destination_with_a_clear_message(engine, settings, tmp_path, store, checked):
    wrong = {"kind": "s3", "endpoint": checked.endpoint, "bucket": BUCKET, "path": f"{tmp_path.name}-wrong/{{source}}",
             "credentials_file": str(tmp_path / "secrets" / "wrong-aws-credentials")}
    local = {"kind": "local", "path": str(tmp_path / "repo" / "{source}")}
    configured = configure(settings, tmp_path, store, wrong=wrong, local=local)
    private_file(tmp_path / "secrets" / "wrong-aws-credentials", credentials(checked.keys[0], "not-the-secret-key"),
                 settings)
    initialized = invoke(configured, tmp_path, "repo", "init", "--json")
    assert initialized.exit_code == 1
    states = {r["destination"]: r for r in json.loads(initialized.stdout)}
    assert states["offsite"]["status"] == "ok" and states["local"]["status"] == "ok"
    assert states["wrong"]["status"] == "destination unavailable"

    backed_up = invoke(configured, tmp_path, "exec", "backup", "files", "--json")
    assert backed_up.exit_code == 1
    results = {r["destination"]: r for r in json.loads(backed_up.stdout)}
    assert results["offsite"]["status"] == "ok" and results["local"]["status"] == "ok"
    assert results["wrong"]["status"] == "destination unavailable"
    message = results["wrong"]["message"]
    assert "refused the keys of the S3 credentials file" in message and "HTTP 403" in message, message
    assert "not-the-secret-key" not in backed_up.output


def test_malformed_credentials_file_is_named(engine, settings, tmp_path, store):
    configured = configure(settings, tmp_path, store)
    path = tmp_path / "secrets" / "offsite-aws-credentials"
    path.chmod(0o600)
    path.write_text("aws_access_key_id = AKIA\n")
    result = invoke(configured, tmp_path, "repo", "init", "--json")
    assert result.exit_code == 1
    [state] = json.loads(result.stdout)
    assert state["status"] == "destination unavailable"
    assert str(path) in state["message"] and "not an AWS shared-credentials file" in state["message"]
