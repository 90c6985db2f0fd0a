"""Documents that must not drift from the code."""

import re
import shlex

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


DOCUMENTS = [PROJECT_ROOT / "README.md", *sorted((PROJECT_ROOT / "docs").glob("*.md"))]
# What pointed outside the repository once: a parent directory, a shared folder, the specification's
FOREIGN = re.compile(r"\.\./|(?<![\w-])shared/|specification folder|spec folder", re.I)


def test_no_link_or_path_in_the_readme_or_docs_points_outside_the_repository():
    problems = []
    for document in DOCUMENTS:
        text = document.read_text()
        name = document.relative_to(PROJECT_ROOT)
        problems += [f"{name}: {match.group(0)!r}" for match in FOREIGN.finditer(text)]
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue  # a web address (restic's site), or a heading of the same document
            resolved = (document.parent / target.split("#")[0]).resolve()
            if not resolved.is_relative_to(PROJECT_ROOT) or not resolved.exists():
                problems.append(f"{name}: link {target} leads to {resolved}, not to a file of this repository")
    assert problems == []


def test_readme_links_the_getting_started_guide_and_the_promises():
    readme = (PROJECT_ROOT / "README.md").read_text()
    assert "(docs/getting-started.md)" in readme and "(docs/promises.md)" in readme


def test_promises_state_the_success_criteria_with_their_settings():
    promises = (PROJECT_ROOT / "docs" / "promises.md").read_text()
    for needed in ("99.5 %", "monitoring.success_rate_floor", "monitoring.restore_test_every", "RPO: 24 hours",
                   "RTO: 4 hours", "monthly", "compress", "deduplicat", "01:00", "02:00", "03:00"):
        assert needed in promises, needed


GUIDE = PROJECT_ROOT / "docs" / "getting-started.md"
GUIDE_TEST = PROJECT_ROOT / "tests" / "integration" / "test_getting_started.py"


def guide_steps() -> dict[str, str]:
    return dict(re.findall(r"<!-- step: ([\w-]+) -->\n```\w+\n(.*?)```", GUIDE.read_text(), re.S))


def test_the_getting_started_test_runs_every_step_of_the_guide_and_nothing_else():
    steps = guide_steps()
    used = set(re.findall(r'session\.(?:run|text)\("([\w-]+)"', GUIDE_TEST.read_text()))
    assert used == set(steps), f"in the guide only: {set(steps) - used}; in the test only: {used - set(steps)}"
    unmarked = re.findall(r"(?<!-->)\n\n```sh\n(.*?)```", GUIDE.read_text(), re.S)
    # scripts/bootstrap prepares the suite's own host (the testbed sees its images): the one block not run there
    assert unmarked == ["cd /opt/offsite-backup && ./scripts/bootstrap\n"], unmarked


def test_every_runner_command_of_the_guide_exists_with_its_options():
    from click.testing import CliRunner

    from runner.cli import cli

    commands = [line for body in guide_steps().values() for line in body.splitlines()
                if line.startswith("runner ") or " runner " in line]
    assert len(commands) >= 5, commands
    for line in commands:
        words = shlex.split(line[line.index("runner "):], comments=True)
        words = words[1:next((i for i, w in enumerate(words) if w in ("<", ">", "|", "&&", ")")), len(words))]
        result = CliRunner().invoke(cli, [*words, "--help"])  # an unknown command or option fails to parse
        assert result.exit_code == 0, f"{line}: {result.output}"
