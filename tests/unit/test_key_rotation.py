"""repo rotate-key's refusals and the rules that keep a repository openable with Vault's password."""

import hvac
import pytest
import requests
from click.testing import CliRunner

from runner.cli import cli
from runner.secrets import rotation
from runner.secrets.rotation import RotationError
from runner.settings import Settings
from tests.conftest import write_config

OLD, NEW = "the-old-password-0123", "the-new-password-4567"


def two_destinations(tmp_path) -> Settings:
    return Settings(paths={"state_dir": tmp_path / "state", "staging_dir": tmp_path / "staging",
                           "cache_dir": tmp_path / "cache", "secrets_dir": tmp_path / "secrets"},
                    destinations={"local": {"kind": "local", "path": str(tmp_path / "{source}")},
                                  "offsite": {"kind": "s3", "endpoint": "http://127.0.0.1:9", "bucket": "b-1"}})


def test_rotating_on_some_of_the_destinations_that_share_the_password_is_refused(tmp_path):
    config = write_config(two_destinations(tmp_path), tmp_path / "runner.toml")
    result = CliRunner().invoke(cli, ["--config", str(config), "repo", "rotate-key", "--destination", "local"],
                                prog_name="runner")
    assert result.exit_code == 2
    assert "would lock offsite out" in result.output and "leave out --destination" in result.output


def test_an_existing_kit_file_is_refused_before_anything_changes(tmp_path):
    config = write_config(two_destinations(tmp_path), tmp_path / "runner.toml")
    kit = tmp_path / "kit.md"
    kit.write_text("the old kit")
    result = CliRunner().invoke(cli, ["--config", str(config), "repo", "rotate-key", "--write-kit", str(kit)],
                                prog_name="runner")
    assert result.exit_code == 2 and "give --write-kit a new file" in result.output
    assert kit.read_text() == "the old kit"


def test_a_render_that_never_comes_fails_naming_the_file_and_the_keys_left(tmp_path):
    path = tmp_path / "restic-files.password"
    path.write_text(OLD)
    with pytest.raises(RotationError) as caught:
        rotation._await_render(path, NEW, deadline=0, wait=5, old={"nas": "5e6f7a8b9c"})
    assert f"did not render the new password into {path} within 5 s" in str(caught.value)
    assert "5e6f7a8b on nas" in str(caught.value)


class Repository:
    def __init__(self, name):
        self.destination = type("Destination", (), {"name": name})()
        self.location = f"/repo/{name}"
        self.removed = []

    def remove_key(self, key):
        self.removed.append(key)


class Vault:
    """A KV v2 client whose write fails; reading gives `holds` (or fails when it is None)."""

    def __init__(self, failure: Exception, holds: str | None):
        self.failure, self.holds = failure, holds
        self.secrets = self
        self.kv = self
        self.v2 = self

    def create_or_update_secret(self, **_):
        raise self.failure

    def read_secret_version(self, **_):
        if self.holds is None:
            raise requests.ConnectionError("Vault is unreachable")
        return {"data": {"data": {"password": self.holds}, "metadata": {"version": 2}}}


@pytest.mark.parametrize("failure, holds, removed, problem", [
    (requests.ConnectionError("reset"), NEW, [], None),  # written, the answer lost: go on
    (hvac.exceptions.InvalidRequest("check-and-set"), OLD, ["new1"], "changed by someone else"),
    (hvac.exceptions.Forbidden("permission denied"), OLD, ["new1"], "Vault was not changed"),
    (requests.ConnectionError("reset"), None, [], "the new keys are left in place"),
])
def test_new_keys_are_removed_only_when_vault_certainly_kept_the_old_password(tmp_path, failure, holds, removed,
                                                                               problem):
    repository = Repository("nas")
    store = lambda: rotation._store(two_destinations(tmp_path), Vault(failure, holds), "files",  # noqa: E731
                                    {"password": NEW}, 1, [repository], {"nas": "new1"})
    if problem:
        with pytest.raises(RotationError, match=problem):
            store()
    else:
        store()
    assert repository.removed == removed
