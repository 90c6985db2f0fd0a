import os

import pytest

from runner import logs
from runner.secrets import agent, catalog, recovery_kit
from runner.secrets.files import SecretFileError, check_secret_file, secret_fragments
from runner.settings import Settings, load_settings
from tests.conftest import EXAMPLE_CONFIG, PROJECT_ROOT


def full_settings(tmp_path=None) -> Settings:
    return Settings(destinations={"nas": {"kind": "nas", "host": "nas"}, "gdrive": {"kind": "gdrive"}})


def test_catalog_covers_every_secret_a_job_reads():
    names = {s.path.name for s in catalog.catalog(full_settings())}
    assert names == {"restic-vault.password", "restic-postgres.password", "restic-minio.password",
                     "nas-ssh-key", "nas-known_hosts", "gdrive-service-account.json", "postgres.pgpass",
                     "minio-credentials", "vault-snapshot-token"}
    [token] = [s for s in catalog.catalog(full_settings()) if s.agent_token]
    assert token.path.name == "vault-snapshot-token"  # the agent's own token, written by its sink


def test_exec_mode_needs_no_pgpass():
    settings = Settings(sources={"postgres": {"mode": "exec"}})
    assert "postgres.pgpass" not in {s.path.name for s in catalog.catalog(settings)}


def test_agent_config_renders_each_file_privately_and_strictly():
    text = agent.agent_config(full_settings())
    assert text.count("template {") == len([s for s in catalog.catalog(full_settings()) if not s.agent_token])
    assert text.count('sink "file"') == 1
    assert text.count('perms                = "0400"') == text.count("template {")
    assert text.count("error_on_missing_key = true") == text.count("template {")
    assert "exit_on_retry_failure         = true" in text
    assert "remove_secret_id_file_after_reading = false" in text
    assert 'path = "/run/offsite-backup/secrets/vault-snapshot-token"' in text and "mode = 0400" in text


def test_shipped_agent_config_matches_the_example_settings():
    generated = agent.agent_config(load_settings(EXAMPLE_CONFIG).settings, "examples/runner.toml")
    assert (PROJECT_ROOT / "examples" / "agent.hcl").read_text() == generated, \
        "regenerate: runner --config examples/runner.toml vault agent-config -o examples/agent.hcl"


def test_policy_reads_the_backup_path_and_snapshots_only():
    policy = agent.policy(Settings())
    paths = [line.split('"')[1] for line in policy.splitlines() if line.startswith("path ")]
    assert paths == ["secret/data/offsite-backup/*", "sys/storage/raft/snapshot", "auth/token/lookup-self",
                     "auth/token/renew-self"]
    assert "create" not in policy and "delete" not in policy and "sudo" not in policy


def private(path, content, mode=0o400):
    path.write_text(content)
    os.chmod(path, mode)
    return path


def test_secret_file_checks(tmp_path):
    settings = Settings()
    check_secret_file(settings, private(tmp_path / "ok", "s3cret-value"), "test file")
    problems = {
        "absent": (tmp_path / "absent", "does not exist"),
        "empty": (private(tmp_path / "empty", "\n"), "is empty"),
        "open": (private(tmp_path / "open", "value", 0o644), "readable by group or others"),
        "unrendered": (private(tmp_path / "unrendered", "[default]\nkey = <no value>\n"), "contains '<no value>'"),
    }
    for path, message in problems.values():
        with pytest.raises(SecretFileError, match=message) as caught:
            check_secret_file(settings, path, "test file")
        assert str(path) in str(caught.value)


def test_checked_secret_values_are_masked_in_logs(tmp_path):
    check_secret_file(Settings(), private(tmp_path / "creds", "[default]\naws_secret_access_key = Zx9-masked-key\n"),
                      "creds")
    check_secret_file(Settings(), private(tmp_path / "pgpass", "*:*:*:postgres:pg-pass-word\n"), "pgpass")
    assert logs.mask("key Zx9-masked-key and pg-pass-word") == "key ******** and ********"


def test_fragments_take_values_out_of_lines():
    assert {"Zx9-masked-key", "pg-pass-word"} <= secret_fragments("a = Zx9-masked-key\n*:*:*:u:pg-pass-word")


def test_host_key_fingerprint_matches_ssh_keygen():
    line = "nas ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPglwKleQ6LNglAByJatb15cu/VXSDTs8M1ClmBAbX7O"
    # what `ssh-keygen -lf` printed for this line in the tools image
    assert recovery_kit.fingerprint(line) == "nas ssh-ed25519 SHA256:VLCSCG20NGeHspbVJwXOO8YIsgMByNytpaFL6Fkli4I"
    assert recovery_kit.fingerprint("# comment") is None
