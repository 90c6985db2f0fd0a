from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_CONFIG = PROJECT_ROOT / "examples" / "runner.toml"


@pytest.fixture(autouse=True)
def _clean_runner_environment(monkeypatch):
    """Tests decide the configuration themselves: no RUNNER_* variable leaks in from the shell."""
    import os

    for name in list(os.environ):
        if name.upper().startswith("RUNNER_"):
            monkeypatch.delenv(name)


def write_config(settings, path):
    """The settings as the TOML file the CLI reads."""
    import tomli_w

    path.write_text(tomli_w.dumps(settings.model_dump(mode="json", exclude_none=True)))
    return path
