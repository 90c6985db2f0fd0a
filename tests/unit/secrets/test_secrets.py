import os
import re
import shlex
import subprocess

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


KIT_KEY = """-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW
QyNTUxOQAAACD4JcCpXkOizYJQAciWrW9eXLv1V0g07PDNQpZgQG1+zgAAAJgBPHfQATx3
0AAAAAtzc2gtZWQyNTUxOQAAACD4JcCpXkOizYJQAciWrW9eXLv1V0g07PDNQpZgQG1+zg
AAAEBmZWVkZmFjZWZlZWRmYWNlZmVlZGZhY2VmZWVkZmFjZfglwKleQ6LNglAByJatb15c
u/VXSDTs8M1ClmBAbX7OAAAAEHRlc3RAcmVjb3Zlcnkta2l0AQIDBA==
-----END OPENSSH PRIVATE KEY-----
"""
KIT_HOST_KEY = "nas.example.org ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPglwKleQ6LNglAByJatb15cu/VXSDTs8M1ClmBAbX7O"
KIT_ACCOUNT = '{"type": "service_account", "client_email": "backup@p.iam.gserviceaccount.com", "private_key": "k"}'


def kit_settings(tmp_path) -> Settings:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    return Settings(paths={"secrets_dir": secrets},
                    destinations={"nas": {"kind": "nas", "host": "nas.example.org", "port": 2222},
                                  "gdrive": {"kind": "gdrive", "team_drive": "0ABCdef"},
                                  "local": {"kind": "local", "path": "/srv/repositories/{source}"}})


def kit_secrets(settings: Settings) -> dict[str, str]:
    """The files Vault Agent would have rendered; returns the repository passwords."""
    directory = settings.paths.secrets_dir
    private(directory / "nas-ssh-key", KIT_KEY)
    private(directory / "nas-known_hosts", f"# nas.example.org:2222 SSH-2.0-OpenSSH_10.0\n{KIT_HOST_KEY}\n")
    private(directory / "gdrive-service-account.json", KIT_ACCOUNT)
    passwords = {source: f"password-of-{source}-x7Q" for source in ("vault", "postgres", "minio")}
    for source, password in passwords.items():
        private(directory / f"restic-{source}.password", password)
    return passwords


def kit_blocks(kit: str, heading: str) -> list[str]:
    """The sh blocks of one section of the kit (`## Destination ...` or `### source on destination`)."""
    section = kit.split(heading, 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
    return re.findall(r"```sh\n(.*?)```", section, re.S)


def test_recovery_kit_writes_every_key_and_password_with_commands_alone(tmp_path):
    settings = kit_settings(tmp_path)
    passwords = kit_secrets(settings)
    kit = recovery_kit.build(settings)
    assert "KEEP THIS OFFLINE" in kit and "mode 0400" in kit and "delete" in kit
    work = tmp_path / "restore"
    work.mkdir()
    for heading in ("## Destination `nas`", "## Destination `gdrive`"):
        [setup] = kit_blocks(kit, heading)
        run = subprocess.run(["bash", "-euc", setup], cwd=work, capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
    assert (work / "nas-key").read_text() == KIT_KEY
    assert (work / "nas-known_hosts").read_text().splitlines()[-1] == KIT_HOST_KEY
    assert (work / "gdrive-service-account.json").read_text() == KIT_ACCOUNT + "\n"
    assert "service_account_file = ./gdrive-service-account.json" in (work / "gdrive-rclone.conf").read_text()
    assert all(oct(p.stat().st_mode & 0o777) == "0o600" for p in work.iterdir())
    fingerprint = recovery_kit.fingerprint(KIT_HOST_KEY).split()[-1]
    assert fingerprint in run_ok(["ssh-keygen", "-lf", str(work / "nas-known_hosts")])

    for destination in ("nas", "gdrive", "local"):
        for source, password in passwords.items():
            [block] = kit_blocks(kit, f"### {source} on {destination}")
            password_file = f"{source}-on-{destination}.password"
            commands = [line for line in block.splitlines() if "restic " in line]
            assert len(commands) == 2 and all(f"--password-file ./{password_file}" in c for c in commands)
            assert commands[1].endswith(f"restore latest --tag {source} --target ./restore-{source}")
            writes_password = "\n".join(line for line in block.splitlines() if "restic " not in line)
            run_ok(["bash", "-euc", writes_password], cwd=work)
            assert (work / password_file).read_text() == password + "\n"  # restic strips the newline
    [nas_command] = [line for line in kit_blocks(kit, "### vault on nas")[0].splitlines() if " snapshots " in line]
    ssh = shlex.split(nas_command)[4].removeprefix("sftp.command=")
    assert "-i ./nas-key" in ssh and "-o UserKnownHostsFile=./nas-known_hosts" in ssh
    assert "-o StrictHostKeyChecking=yes" in ssh and "-p 2222 backup@nas.example.org -s sftp" in ssh
    assert "RCLONE_CONFIG=./gdrive-rclone.conf restic -r rclone:gdrive:Backups/homeserver/vault" in kit
    assert "restic -r /srv/repositories/vault --password-file ./vault-on-local.password snapshots" in kit


def test_recovery_kit_keeps_what_the_disaster_recovery_drill_reads(tmp_path):
    settings = kit_settings(tmp_path)
    passwords = kit_secrets(settings)
    kit = recovery_kit.build(settings)
    for source, password in passwords.items():  # as scripts/dr-drill.py reads them
        section = kit.split(f"### {source} on nas", 1)[1]
        assert re.search(r"Password: (\S+)", section).group(1) == password
    assert [line.strip() for line in kit.splitlines() if re.match(r"^\s{4}\S+ ssh-ed25519 ", line)] == [KIT_HOST_KEY]


def test_recovery_kit_names_every_missing_file_at_once(tmp_path):
    settings = kit_settings(tmp_path)
    with pytest.raises(recovery_kit.RecoveryKitError) as caught:
        recovery_kit.build(settings)
    for name in ("nas-ssh-key", "nas-known_hosts", "gdrive-service-account.json", "restic-vault.password"):
        assert name in str(caught.value)


def run_ok(argv, cwd=None) -> str:
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout
