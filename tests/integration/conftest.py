"""Real Podman: the API socket (scripts/setup-host starts it) and the tools image, built once."""

import json
import subprocess

import pytest

from runner import images
from runner.engine import Engine, EngineUnavailable
from runner.settings import Settings

pytestmark = pytest.mark.integration


def pytest_collection_modifyitems(items):
    for item in items:
        if "/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def settings(tmp_path_factory) -> Settings:
    root = tmp_path_factory.mktemp("runner")
    return Settings(paths={
        "state_dir": root / "state", "staging_dir": root / "staging",
        "cache_dir": root / "cache", "secrets_dir": root / "secrets",
    })


@pytest.fixture(scope="session")
def engine(settings) -> Engine:
    engine = Engine(settings)
    try:
        engine.ping()
    except EngineUnavailable as error:
        pytest.fail(f"{error}\nThe integration suite needs Podman: run scripts/setup-host first.")
    images.build(settings, ["tools"])  # skipped when its inputs are unchanged
    return engine


def podman_json(*args):
    result = subprocess.run(["podman", *args], capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


def containers_named(name):
    return podman_json("ps", "--all", "--format", "json", "--filter", f"name={name}")
