"""Real Podman: the API socket (scripts/setup-host starts it) and the tools image, built once."""

import json
import subprocess

import pytest

from runner import images
from runner.engine import Engine, EngineUnavailable
from runner.settings import Settings
from tests.conftest import write_config  # noqa: F401 (the integration tests import it from here)

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


def private_file(path, content: str, settings: Settings):
    """A secret file as Vault Agent would leave it: private, readable by the job user."""
    from runner.workspace import hand_to_job_user

    path.write_text(content)
    path.chmod(0o400)
    hand_to_job_user(path, settings)
    return path


@pytest.fixture(scope="session")
def testcontainers_env(engine, settings):
    """testcontainers talks to Podman's Docker-compatible API; Ryuk's image cannot be pulled here."""
    import os

    os.environ.setdefault("DOCKER_HOST", settings.podman.url)
    os.environ["TESTCONTAINERS_RYUK_DISABLED"] = "true"


def run_tools(settings: Settings, *command: str, mounts: tuple[str, ...] = (), env: dict | None = None,
              user: str = "0") -> str:
    """A one-off command in the tools image, as root unless told (for test fixtures, not for jobs)."""
    volumes = [arg for mount in mounts for arg in ("-v", mount)]
    variables = [arg for item in (env or {}).items() for arg in ("-e", "=".join(item))]
    result = subprocess.run(["podman", "run", "--rm", "--user", user, *volumes, *variables, settings.images.tools,
                             *command], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{command[0]} failed ({result.returncode}): {result.stderr[-2000:]}")
    return result.stdout
