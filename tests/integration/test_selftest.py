"""`runner selftest`, the README's main command for now, through the real CLI and real containers."""

import re

import tomli_w
from click.testing import CliRunner

from runner import images
from runner.cli import cli


def write_config(path, settings):
    path.write_text(tomli_w.dumps({"paths": settings.paths.model_dump(mode="json")}))
    return path


def test_selftest_backs_up_restores_and_lists(engine, settings, tmp_path):
    config = write_config(tmp_path / "runner.toml", settings)
    first = CliRunner().invoke(cli, ["--config", str(config), "selftest"], prog_name="runner")
    assert first.exit_code == 0, first.output
    assert "restored byte-identical" in first.output
    second = CliRunner().invoke(cli, ["--config", str(config), "selftest"], prog_name="runner")
    assert second.exit_code == 0, second.output
    # the listing shows both runs' snapshots in the one repository
    assert len(re.findall(r"^\s*[0-9a-f]{8}\s.*\bselftest\s+/data\b", second.output, re.M)) == 2, second.output
    assert list((settings.paths.staging_dir).iterdir()) == []  # sample and restore cleaned up


def test_selftest_reports_a_wrong_password(engine, settings, tmp_path):
    state = tmp_path / "state"
    config = tmp_path / "runner.toml"
    config.write_text(tomli_w.dumps({"paths": {**settings.paths.model_dump(mode="json"), "state_dir": str(state)}}))
    assert CliRunner().invoke(cli, ["--config", str(config), "selftest"]).exit_code == 0
    password = state / "selftest" / "password"
    password.chmod(0o600)
    password.write_text("not-the-password")
    result = CliRunner().invoke(cli, ["--config", str(config), "selftest"])
    assert result.exit_code == 1
    assert "wrong password" in result.output


def test_unchanged_images_are_not_rebuilt(engine, settings):
    assert images.build(settings, ["tools"]) == {"tools": "up to date"}
