"""The plain files source end to end: backed up, restored with `runner restore files`, and
restore-tested, against a real restic repository."""

import hashlib
import importlib
import json
import os
import stat

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


def configuration_tree(root):
    """A configuration tree as /etc holds them: root's private files, group-readable ones, another user's,
    a setuid program, a setgid directory, a private directory, a link, and a cache the excludes leave out.
    The names in it."""
    root.mkdir(mode=0o755)
    layout = [("app.conf", 0o644, 0, 0), ("secret.key", 0o600, 0, 0), ("shared.conf", 0o640, 0, 1234),
              ("readonly.conf", 0o400, 2000, 2000), ("helper", 0o4755, 0, 0), ("empty", 0o444, 0, 0),
              ("conf.d/", 0o2775, 0, 1234), ("conf.d/10-site.conf", 0o664, 2000, 1234),
              ("private/", 0o700, 2000, 2000), ("private/token", 0o600, 2000, 2000)]
    for name, *_ in layout:
        if name.endswith("/"):
            (root / name).mkdir()
        else:
            (root / name).write_bytes(b"" if name == "empty" else name.encode() + os.urandom(300))
    for name, mode, uid, gid in reversed(layout):
        os.chown(root / name, uid, gid)
        os.chmod(root / name, mode)
    os.symlink("app.conf", root / "current.conf")
    os.lchown(root / "current.conf", 2000, 2000)
    (root / "state.cache").write_text("left out")
    return [name.rstrip("/") for name, *_ in layout] + ["current.conf"]


def attributes(path):
    info = path.lstat()
    content = hashlib.sha256(path.read_bytes()).hexdigest() if stat.S_ISREG(info.st_mode) else os.readlink(path) \
        if stat.S_ISLNK(info.st_mode) else "dir"
    return content, stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid


def configured_tree(settings, tmp_path):
    tmp_path.chmod(0o755)
    tree = tmp_path / "etc-app"
    layout = configuration_tree(tree)
    private_file(tmp_path / "password", "files test password", settings)
    configured = Settings(
        paths={**settings.paths.model_dump(), "state_dir": tmp_path / "state", "staging_dir": tmp_path / "staging"},
        destinations={"local": {"kind": "local", "path": str(tmp_path / "repo"),
                                "password_file": str(tmp_path / "password")}},
        sources={"files": {"paths": [tree], "excludes": ["*.cache"]},
                 **{s: {"enabled": False} for s in ("vault", "postgres", "minio")}},
    )
    assert invoke(configured, tmp_path, "repo", "init").exit_code == 0
    backed_up = invoke(configured, tmp_path, "exec", "backup", "files", "--json")
    assert backed_up.exit_code == 0, backed_up.output
    assert json.loads(backed_up.stdout)[0]["status"] == "ok"  # root's 0600 and 0400 files were read too
    return configured, tree, layout


def test_configuration_files_come_back_with_content_mode_and_owner(engine, settings, tmp_path):
    configured, tree, layout = configured_tree(settings, tmp_path)
    target = tmp_path / "restored"
    restored = invoke(configured, tmp_path, "restore", "files", "--to-dir", str(target))
    assert restored.exit_code == 0, restored.output
    assert "with their owners and modes" in restored.output
    copy = target / str(tree).lstrip("/")
    for name in layout:
        assert attributes(copy / name) == attributes(tree / name), name
    assert sorted(str(p.relative_to(copy)) for p in copy.rglob("*")) == sorted(layout)  # no state.cache
    assert stat.S_IMODE((copy / "helper").stat().st_mode) == 0o4755  # set again after the owner changed

    one = tmp_path / "one"
    only = invoke(configured, tmp_path, "restore", "files", "--to-dir", str(one), "--path", f"{tree}/private")
    assert only.exit_code == 0, only.output
    private = one / str(tree).lstrip("/") / "private"
    assert attributes(private) == attributes(tree / "private")
    assert attributes(private / "token") == attributes(tree / "private" / "token")


def test_restore_test_compares_every_file_and_catches_a_changed_mode(engine, settings, tmp_path, monkeypatch):
    configured, tree, layout = configured_tree(settings, tmp_path)
    passed = invoke(configured, tmp_path, "exec", "restore-test", "files", "--json")
    assert passed.exit_code == 0, passed.output
    [result] = json.loads(passed.stdout)
    assert result["status"] == "ok", result["message"]
    assert "modes and owners as backed up" in result["message"]
    # every file and directory of the tree, and the tree itself; not the link
    assert result["figures"]["compared_with_originals"] == len(layout) - 1 + 1

    restore_test = importlib.import_module("runner.sources.files.restore_test")  # the package names the function
    real = restore_test.apply_attributes

    def tampered(nodes, restored):  # what a faulty restore would leave: one file's mode changed
        done = real(nodes, restored)
        os.chmod(restored / "data" / str(tree).lstrip("/") / "secret.key", 0o644)
        return done

    monkeypatch.setattr(restore_test, "apply_attributes", tampered)
    failed = invoke(configured, tmp_path, "exec", "restore-test", "files", "--json")
    assert failed.exit_code == 1
    [result] = json.loads(failed.stdout)
    assert result["status"] == "restore mismatch"
    assert f"/data{tree}/secret.key has mode 0644, the backup had 0600" in result["message"]

    os.chmod(tree / "shared.conf", 0o600)  # the original changed since: compared with the snapshot only
    monkeypatch.setattr(restore_test, "apply_attributes", real)
    again = invoke(configured, tmp_path, "exec", "restore-test", "files", "--json")
    [result] = json.loads(again.stdout)
    assert result["status"] == "ok" and result["figures"]["changed_since"] == 1


def test_paths_holding_the_runners_secrets_are_refused(engine, settings, tmp_path):
    configured = configure(settings, tmp_path)
    secrets_dir = tmp_path / "run" / "secrets"
    secrets_dir.mkdir(parents=True)
    refused = Settings(**{**configured.model_dump(), "paths": {**configured.paths.model_dump(),
                                                               "secrets_dir": secrets_dir},
                          "sources": {**configured.sources.model_dump(), "files": {"paths": [tmp_path / "run"]}}})
    result = invoke(refused, tmp_path, "exec", "backup", "files", "--dry-run", "--json")
    assert result.exit_code == 1
    [outcome] = json.loads(result.stdout)
    assert "sources.files.paths: refusing to back up" in outcome["message"]
    assert f"which holds {secrets_dir}" in outcome["message"]


def test_the_backup_job_sees_the_paths_read_only_and_gets_back_one_capability(engine, settings, tmp_path,
                                                                              monkeypatch):
    from podman.domain.containers_manager import ContainersManager

    created = []
    original_create = ContainersManager.create

    def recording(self, *args, **kwargs):
        created.append(kwargs)
        return original_create(self, *args, **kwargs)

    monkeypatch.setattr(ContainersManager, "create", recording)
    configured, tree, _ = configured_tree(settings, tmp_path)
    [backup] = [options for options in created if options["labels"]["io.offsite-backup.job"].startswith("backup-")]
    [data] = [mount for mount in backup["mounts"] if mount["target"] == f"/data{tree}"]
    assert data["read_only"] and data["source"] == str(tree)
    assert backup["cap_drop"] == ["ALL"] and backup["cap_add"] == ["DAC_READ_SEARCH"]
    assert backup["user"] == settings.jobs.user and backup["read_only"] and backup["no_new_privileges"]
    others = [options for options in created if options is not backup]
    assert others and all("cap_add" not in options for options in others)
