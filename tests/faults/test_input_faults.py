"""Inputs the runner must cope with or refuse clearly, against real services: names that are not UTF-8
in a PostgreSQL server, an SSH key of the wrong type, an unseal-keys file others can read."""

import json

import pytest
from click.testing import CliRunner

from runner import images
from runner.cli import cli
from tests.integration.conftest import private_file, run_tools, write_config
from tests.integration.nas import Identity, NasContainer
from tests.integration.services import Postgres
from tests.integration.test_sources import backup, configure, invoke, manifest_of, postgres_settings, snapshots

# A SQL_ASCII database, whose names and rows are bytes as the client sent them: \351 is 'é' in LATIN1,
# not UTF-8. The names are made from escapes, so the script itself is plain ASCII.
LEGACY_DATABASE = r"""
CREATE DATABASE legacy WITH TEMPLATE template0 ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C';
\connect legacy
DO $$ BEGIN
    EXECUTE format('CREATE TABLE %I (id int PRIMARY KEY, label text)', E'r\351sum\351');
    EXECUTE format('INSERT INTO %I SELECT g, E''caf\351 '' || g FROM generate_series(1, 250) g', E'r\351sum\351');
END $$;
CREATE TABLE plain (id int);
INSERT INTO plain SELECT generate_series(1, 10);
"""
TABLE = 'public."r\\xe9sum\\xe9"'  # as the manifest records it: the byte that is not UTF-8 as \xe9


@pytest.fixture(scope="module")
def legacy_postgres(testcontainers_env, settings):
    with Postgres(settings) as server:
        server.load(LEGACY_DATABASE)
        assert server.sql("SELECT encode(convert_to(relname, 'SQL_ASCII'), 'hex') FROM pg_class "
                          "WHERE relname LIKE 'r%sum%' AND relkind = 'r'", "legacy").strip() == "72e973756de9"
        yield server


def test_postgres_names_that_are_not_utf8_are_backed_up_and_restore_tested(engine, settings, tmp_path,
                                                                           legacy_postgres):
    images.build(settings, ["testbed-postgres"])
    configured = configure(settings, tmp_path, postgres=postgres_settings(legacy_postgres, tmp_path, settings))
    configured = configured.model_copy(update={"restore_tests": configured.restore_tests.model_copy(
        update={"postgres_image": images.testbed_tag("postgres")})})
    code, results = backup(configured, tmp_path, "postgres")
    assert code == 0, results["postgres"]["message"]
    [dump] = [s for s in snapshots(engine, configured, "postgres") if "postgres-manifest" not in s.tags]
    manifest = manifest_of(engine, configured, tmp_path, dump)
    assert manifest["databases"]["legacy"][TABLE]["rows"] == 250
    assert manifest["databases"]["legacy"]["public.plain"]["rows"] == 10

    code, results = invoke(configured, tmp_path, "exec", "restore-test", "postgres")
    assert code == 0, results["postgres"]["message"]
    assert results["postgres"]["status"] == "ok"
    assert results["postgres"]["message"].endswith("restored with equal rows")
    assert results["postgres"]["figures"]["tables"] == sum(len(t) for t in manifest["databases"].values())


def make_key(directory, settings, name: str, *options: str) -> Identity:
    directory.mkdir(parents=True, exist_ok=True)
    run_tools(settings, "ssh-keygen", "-q", *options, "-N", "", "-C", "runner-test", "-f", f"/out/{name}",
              mounts=(f"{directory}:/out",))
    key = directory / name
    private_file(key, key.read_text(), settings)
    return Identity(key, (directory / f"{name}.pub").read_text().strip())


@pytest.mark.parametrize("options, found", [
    (("-t", "rsa", "-b", "3072", "-m", "PEM"), "a key of type ssh-rsa in PEM format"),
    (("-t", "rsa", "-b", "3072"), "a key of type ssh-rsa in OpenSSH format"),
    (("-t", "ecdsa"), "a key of type ecdsa-sha2-nistp256 in OpenSSH format"),
])
def test_nas_key_that_is_not_ed25519_is_refused_before_the_nas_is_contacted(engine, settings, tmp_path,
                                                                            testcontainers_env, options, found):
    key = make_key(tmp_path / "ssh", settings, "id_other", *options)
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    (data / "file.txt").write_text("offsite\n")
    with NasContainer(settings, key) as nas:  # the NAS itself would accept this key
        known_hosts = private_file(tmp_path / "known_hosts", nas.known_hosts_line(), settings)
        configured = configure(settings, tmp_path, files={"paths": [data]})
        configured = configured.model_copy(update={"destinations": {"nas": nas.destination(key, known_hosts)}})
        before = nas.files()
        code, results = invoke(configured, tmp_path, "repo", "init")
        after = nas.files()
    message = results["files"]["message"]
    assert code == 1 and results["files"]["status"] == "destination unavailable", message
    assert f"SSH private key of nas {key.private_key} is {found};" in message
    assert "ssh-keygen -t ed25519 -N ''" in message
    assert after == before


def test_unseal_keys_file_that_others_can_read_fails_the_vault_restore_test(engine, settings, tmp_path):
    keys = tmp_path / "unseal-keys"
    keys.write_text("b4Wq0dZcL9y0mZ1uL3JwQm8tN2VYc0pUb3lQd2xCZ1E=\n")
    keys.chmod(0o644)
    configured = configure(settings, tmp_path, vault={"address": "http://192.0.2.1:8200"})
    configured = configured.model_copy(update={"restore_tests": configured.restore_tests.model_copy(
        update={"vault_unseal_keys_file": keys})})
    config = write_config(configured, tmp_path / "runner.toml")
    result = CliRunner().invoke(cli, ["--config", str(config), "exec", "restore-test", "vault", "--json"])
    [outcome] = json.loads(result.stdout)
    assert result.exit_code == 1
    assert outcome["status"] == "failed"
    assert outcome["message"] == (
        f"restore test could not run: unseal-keys file (restore_tests.vault_unseal_keys_file) {keys} is readable "
        "by group or others (mode 0644); make it private (chmod 0400 or 0600)")
