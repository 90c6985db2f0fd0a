"""The source registry: every source has every part, in its own package, and nothing outside a
source's package reaches into it."""

import ast
import importlib
from pathlib import Path

import click

from runner.settings import Settings
from runner.sources import SOURCES, Source, enabled
from tests.conftest import PROJECT_ROOT

RUNNER = PROJECT_ROOT / "runner"
PARTS = ("backup", "restore", "restore_test", "contents")


def test_restore_priority_order():
    settings = Settings(sources={"files": {"paths": ["/etc/offsite-backup"]}})
    assert list(SOURCES) == ["vault", "postgres", "minio", "files"]
    assert enabled(settings) == ["vault", "postgres", "minio", "files"]
    assert enabled(settings, ["minio", "vault"]) == ["vault", "minio"]


def test_every_source_has_every_part():
    for name, source in SOURCES.items():
        assert isinstance(source, Source), f"{name} lacks part of the Source protocol"
        assert source.NAME == name and source.TITLE
        package = RUNNER / "sources" / name
        assert package.is_dir(), f"{name} is not a package of its own"
        for part in PARTS:
            assert (package / f"{part}.py").is_file(), f"{name} has no {part}.py"
            importlib.import_module(f"runner.sources.{name}.{part}")
        assert source.restore.__doc__, f"{name}'s restore has no help text"
        assert source.show_snapshot.__module__ == f"runner.sources.{name}.contents"
        assert all(isinstance(option, click.Parameter) for option in source.RESTORE_OPTIONS)


def test_every_source_names_its_secret_files():
    settings = Settings(sources={"files": {"paths": ["/etc/offsite-backup"]}})
    paths = {name: [secret.path for secret in source.secret_files(settings)] for name, source in SOURCES.items()}
    assert [p.name for p in paths["postgres"]] == ["postgres.pgpass"]
    assert [p.name for p in paths["minio"]] == ["minio-credentials"]
    assert [p.name for p in paths["vault"]] == ["vault-snapshot-token"]
    assert paths["files"] == []


def imports_of(path: Path) -> list[str]:
    """Every module a file imports, absolute (`from runner.sources import minio` -> runner.sources.minio)."""
    tree = ast.parse(path.read_text())
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names += [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
    return names


def owner(path: Path) -> str | None:
    """The source package a file belongs to, if any."""
    parts = path.relative_to(RUNNER).parts
    return parts[1] if len(parts) > 2 and parts[0] == "sources" else None


def test_no_module_reaches_into_a_source_package_from_outside():
    offences = []
    for path in RUNNER.rglob("*.py"):
        if path == RUNNER / "sources" / "__init__.py":
            continue  # the registry lists the packages themselves
        for module in imports_of(path):
            parts = module.split(".")
            if parts[:2] == ["runner", "sources"] and len(parts) > 2 and parts[2] in SOURCES:
                if owner(path) != parts[2]:
                    offences.append(f"{path.relative_to(PROJECT_ROOT)} imports {module}")
    assert offences == []


def test_the_import_check_sees_an_offence(tmp_path):
    # the check above must be able to fail: a module outside the package importing its internals
    sample = tmp_path / "sample.py"
    sample.write_text("from runner.sources.postgres.backup import PGPASS\nfrom runner.sources import minio\n")
    assert "runner.sources.postgres.backup.PGPASS" in imports_of(sample)
    assert "runner.sources.minio" in imports_of(sample)
