import pytest
from click.testing import CliRunner

from runner.cli import cli


def all_commands(group, prefix=()):
    yield prefix
    for name, command in getattr(group, "commands", {}).items():
        yield from all_commands(command, (*prefix, name))


@pytest.mark.parametrize("path", list(all_commands(cli)), ids=lambda p: " ".join(p) or "runner")
def test_every_command_explains_itself(path):
    result = CliRunner().invoke(cli, [*path, "--help"], prog_name="runner")
    assert result.exit_code == 0, result.output
    assert "Usage: runner" in result.output
    # a description, not only the usage line and options
    description = result.output.split("\n\n")[1].strip()
    assert len(description) > 20, result.output
