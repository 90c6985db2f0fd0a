"""The plain files source end to end: backed up, restored with `runner restore files`, and
restore-tested, against a real restic repository."""

import json
import os

from click.testing import CliRunner

from runner.cli import cli
from runner.selftest import tree_fingerprint, write_sample
from runner.settings import Settings
from tests.integration.conftest import private_file, write_config


def configure(base: Settings, tmp_path) -> Settings:
    tmp_path.chmod(0o755)
    data = tmp_path / "etc-app"
    data.mkdir(mode=0o755)
    write_sample(data)  # binary, empty, nested, odd names, a link
    for path in data.rglob("*"):
        if not path.is_symlink():
            path.chmod(0o755 if path.is_dir() else 0o644)
    private_file(tmp_path / "password", "files test password", base)
    return Settings(
        paths={**base.paths.model_dump(), "state_dir": tmp_path / "state", "staging_dir": tmp_path / "staging"},
        destinations={"local": {"kind": "local", "path": str(tmp_path / "repo"),
                                "password_file": str(tmp_path / "password")}},
        sources={"files": {"paths": [data]}, **{s: {"enabled": False} for s in ("vault", "postgres", "minio")}},
    )


def invoke(settings, tmp_path, *args):
    config = write_config(settings, tmp_path / "runner.toml")
    return CliRunner().invoke(cli, ["--config", str(config), *args], prog_name="runner")


def backed_up(engine, settings, tmp_path):
    configured = configure(settings, tmp_path)
    assert invoke(configured, tmp_path, "repo", "init").exit_code == 0
    result = invoke(configured, tmp_path, "exec", "backup", "files")
    assert result.exit_code == 0, result.output
    return configured, configured.sources.files.paths[0]


def test_restore_files_brings_each_file_back_under_its_original_path(engine, settings, tmp_path):
    configured, data = backed_up(engine, settings, tmp_path)
    target = tmp_path / "restored"
    first = invoke(configured, tmp_path, "restore", "files", "--to-dir", str(target))
    assert first.exit_code == 0, first.output
    assert "Next:" in first.output
    restored = target / str(data).lstrip("/")
    assert tree_fingerprint(restored) == tree_fingerprint(data)
    again = invoke(configured, tmp_path, "restore", "files", "--to-dir", str(target))
    assert again.exit_code == 1 and "is not empty; use --force" in again.output
    assert invoke(configured, tmp_path, "restore", "files", "--to-dir", str(target), "--force").exit_code == 0


def test_restore_test_of_files_passes_and_a_damaged_repository_fails_it(engine, settings, tmp_path):
    configured, data = backed_up(engine, settings, tmp_path)
    passed = invoke(configured, tmp_path, "exec", "restore-test", "files", "--json")
    assert passed.exit_code == 0, passed.output
    [result] = json.loads(passed.stdout)
    files = sum(1 for path in data.rglob("*") if path.is_file() and not path.is_symlink())
    assert result["status"] == "ok" and result["figures"]["files"] == files
    assert "content verified" in result["message"]
    assert set(result["figures"]["phase_seconds"]) == {"fetch", "verify"}

    packs = [p for p in (tmp_path / "repo" / "data").rglob("*") if p.is_file()]
    for pack in packs:
        os.chmod(pack, 0o600)
        content = bytearray(pack.read_bytes())
        content[len(content) // 2] ^= 0xFF
        pack.write_bytes(bytes(content))
    failed = invoke(configured, tmp_path, "exec", "restore-test", "files", "--json")
    assert failed.exit_code == 1
    [result] = json.loads(failed.stdout)
    assert result["status"] in ("failed", "restore mismatch") and "restore test" in result["message"]
    assert list((tmp_path / "staging").iterdir()) == []  # the restored copy is removed either way
