"""Documents that must not drift from the code."""

import re

from runner.reference import path, render
from tests.conftest import PROJECT_ROOT


def test_configuration_reference_is_generated_from_the_schema():
    assert path().read_text() == render(), "regenerate: runner config reference -o docs/configuration.md"


def test_runbook_quotes_every_restore_command_the_drill_runs():
    drill = (PROJECT_ROOT / "scripts" / "dr-drill.py").read_text()
    runbook = (PROJECT_ROOT / "docs" / "disaster-recovery.md").read_text()
    calls = re.findall(r'runner\("restore", "(\w+)"(.*?)\)\n', drill, re.S)
    assert [source for source, _ in calls] == ["vault", "postgres", "minio"]
    commands = " ".join(re.findall(r"runner restore .*?(?:\n(?!\s)|$)", runbook.replace("\\\n", " "), re.S))
    for source, arguments in calls:
        flags = set(re.findall(r'"(--[\w-]+)"', arguments)) - {"--force"}  # the drill may run twice
        quoted = [line for line in re.findall(rf"runner restore {source}[^\n]*", commands)]
        assert quoted, f"the runbook has no `runner restore {source}`"
        assert any(flags <= set(re.findall(r"--[\w-]+", line)) for line in quoted), (source, flags, quoted)


def test_readme_names_both_commands_and_ci_runs_the_test_command():
    readme = (PROJECT_ROOT / "README.md").read_text()
    assert "./scripts/try" in readme and "./scripts/test" in readme
    assert "./scripts/test" in (PROJECT_ROOT / ".ci" / "run").read_text()
    test_command = (PROJECT_ROOT / "scripts" / "test").read_text()
    assert ".venv/bin/ruff check ." in test_command and ".venv/bin/mypy" in test_command
