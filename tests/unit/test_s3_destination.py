"""The S3 destination's settings, credentials file, job access and recovery-kit block; restic's key list."""

import socket
from pathlib import Path

import pytest

from runner import destinations, restic
from runner.destinations import S3, DestinationUnavailable, credentials
from runner.secrets import recovery_kit
from runner.settings import ConfigError, Settings, load_settings

SECRET_KEY = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"
GOOD = f"[default]\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\naws_secret_access_key = {SECRET_KEY}\n"


def s3_settings(tmp_path, **overrides) -> Settings:
    config = {"kind": "s3", "endpoint": "http://127.0.0.1:9", "bucket": "home-backups", **overrides}
    return Settings(paths={"state_dir": tmp_path / "state", "staging_dir": tmp_path / "staging",
                           "cache_dir": tmp_path / "cache", "secrets_dir": tmp_path / "secrets"},
                    destinations={"offsite": config})


def secret(path: Path, content: str, mode: int = 0o400) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    path.chmod(mode)
    return path


def destination(tmp_path, **overrides) -> S3:
    [found] = destinations.configured(s3_settings(tmp_path, **overrides))
    assert isinstance(found, S3)
    return found


@pytest.mark.parametrize("endpoint", ["https://s3.eu-central-1.example.com", "http://10.0.0.5:9000",
                                      "http://[fd00::5]:9000", "https://s3.example.com/"])
def test_endpoints_that_restic_and_the_preflight_read_alike(tmp_path, endpoint):
    assert destination(tmp_path, endpoint=endpoint).config.endpoint == endpoint.rstrip("/")


@pytest.mark.parametrize("endpoint", ["s3.example.com", "ftp://s3.example.com", "https://s3.example.com/bucket",
                                      "https://user@s3.example.com", "https://-bad-.example.com",
                                      "http://10.0.0.5:99999"])
def test_other_endpoints_are_refused_naming_the_setting(tmp_path, endpoint):
    config = tmp_path / "runner.toml"
    config.write_text(f'[destinations.offsite]\nkind = "s3"\nendpoint = "{endpoint}"\nbucket = "b-1"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    assert any("destinations.offsite.endpoint" in problem for problem in caught.value.problems)


def test_location_and_job_access_carry_no_key(tmp_path):
    s3 = destination(tmp_path, path="hosts/{source}", region="eu-west-3", bandwidth_limit="4MB")
    secret(s3.settings.paths.secrets_dir / "restic-files.password", "repository password")
    secret(s3.credentials_file, GOOD)
    assert s3.credentials_file == tmp_path / "secrets" / "offsite-aws-credentials"
    access = s3.access("files")
    assert access.location == "s3:http://127.0.0.1:9/home-backups/hosts/files"
    assert access.repository.location == access.location
    assert access.env == {"AWS_SHARED_CREDENTIALS_FILE": "/run/secrets/aws-credentials", "AWS_PROFILE": "default"}
    assert any(m.source == s3.credentials_file and m.target == S3.CREDENTIALS and m.read_only for m in access.mounts)
    argv = restic.init(access.repository)
    assert "s3.region=eu-west-3" in argv and argv[argv.index("--limit-upload") + 1] == "3906"
    assert not any(SECRET_KEY in arg or "AKIA" in arg for arg in [*argv, *access.env.values()])


@pytest.mark.parametrize("content, problem", [
    ("aws_access_key_id = AKIA\n", "cannot be read as an INI file"),
    ("[work]\naws_access_key_id = AKIA\naws_secret_access_key = x\n", "no [default] section"),
    ("[default]\naws_access_key_id = AKIA\n", "[default] has no aws_secret_access_key"),
    (f"[default]\naws_secret_access_key = {SECRET_KEY}\n", "[default] has no aws_access_key_id"),
])
def test_malformed_credentials_are_refused_without_quoting_them(tmp_path, content, problem):
    with pytest.raises(ValueError, match=problem.replace("[", r"\[").replace("]", r"\]")):
        credentials(content)
    s3 = destination(tmp_path)
    secret(s3.credentials_file, content)
    with pytest.raises(DestinationUnavailable) as caught:
        s3.preflight()
    assert str(s3.credentials_file) in str(caught.value) and problem in str(caught.value)
    assert SECRET_KEY not in str(caught.value)
    assert "vault kv put secret/offsite-backup/s3/offsite" in str(caught.value)


def test_credentials_readable_by_others_are_refused(tmp_path):
    s3 = destination(tmp_path)
    secret(s3.credentials_file, GOOD, mode=0o644)
    with pytest.raises(DestinationUnavailable, match="readable by group or others"):
        s3.preflight()


def test_an_endpoint_that_does_not_answer_is_named(tmp_path):
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    s3 = destination(tmp_path, endpoint=f"http://127.0.0.1:{port}", connect_timeout=2)
    secret(s3.credentials_file, GOOD)
    with pytest.raises(DestinationUnavailable, match=f"offsite: S3 endpoint http://127.0.0.1:{port} does not answer"):
        s3.preflight()


def test_a_failed_restic_job_is_diagnosed_by_asking_the_endpoint_again(tmp_path):
    s3 = destination(tmp_path, connect_timeout=2)
    secret(s3.credentials_file, GOOD)
    assert "offsite: S3 endpoint http://127.0.0.1:9 does not answer" in s3.diagnose(None, None)


def test_catalog_entry_renders_the_credentials_file(tmp_path):
    [entry] = destination(tmp_path).secret_files()
    assert entry.kv_path == "s3/offsite" and entry.keys == ("access_key_id", "secret_access_key")
    assert entry.body.startswith("[default]\naws_access_key_id = {{ .Data.data.access_key_id }}\n")


def test_recovery_kit_sets_up_the_keys_and_the_region(tmp_path):
    s3 = destination(tmp_path, region="eu-west-3")
    settings = s3.settings
    secret(s3.credentials_file, GOOD)
    for source in ("vault", "postgres", "minio"):
        secret(settings.paths.secrets_dir / f"restic-{source}.password", f"password-of-{source}")
    kit = recovery_kit.build(settings)
    section = kit.split("## Destination `offsite` (s3)", 1)[1]
    assert GOOD.strip() in section
    assert "export AWS_SHARED_CREDENTIALS_FILE=./offsite-aws-credentials AWS_PROFILE=default" in section
    assert ("restic -r s3:http://127.0.0.1:9/home-backups/offsite/vault -o s3.region=eu-west-3 "
            "--password-file ./vault-on-offsite.password snapshots --tag vault") in section


def test_key_list_is_read_and_needs_exactly_one_current_key():
    listed = ('[{"current":false,"id":"8434","userName":"offsite","hostName":"h","created":"2026-11-30 08:16:19"},'
              '{"current":true,"id":"ec2c","userName":"offsite","hostName":"h","created":"2026-11-30 08:16:22"}]')
    keys = restic.parse_keys([listed])
    assert [(key.id, key.current) for key in keys] == [("8434", False), ("ec2c", True)]
    with pytest.raises(restic.OutputError, match="0 keys marked current"):
        restic.parse_keys([listed.replace("true", "false")])
    with pytest.raises(restic.OutputError):
        restic.parse_keys(["saved new key"])
    with pytest.raises(restic.OutputError, match="'current' missing"):
        restic.parse_keys(['[{"id":"8434"}]'])
