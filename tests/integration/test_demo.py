"""The README's main command (scripts/try's demo) end to end, then the runbook's drill on it."""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import PROJECT_ROOT


@pytest.fixture(scope="module")
def demo(engine, tmp_path_factory):
    directory = tmp_path_factory.mktemp("demo")
    env = {**os.environ, "OFFSITE_DEMO": str(directory),
           "OFFSITE_DEMO_SECRETS": f"/run/offsite-demo-{os.getpid()}/secrets"}
    try:
        yield directory, env
    finally:
        subprocess.run([sys.executable, "scripts/demo.py", "down"], cwd=PROJECT_ROOT, env=env, capture_output=True)


def run_script(env, *argv, timeout=1800):
    return subprocess.run([sys.executable, *argv], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_the_main_command_backs_up_and_restore_tests_everything_twice(demo):
    directory, env = demo
    for attempt in ("first", "second"):
        result = run_script(env, "scripts/demo.py", "up")
        assert result.returncode == 0, f"{attempt} run:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
        for step in ("==> starting the home server", "==> bootstrapping Vault",
                     "==> backing up Vault, PostgreSQL and MinIO", "==> restore tests", "==> status", "Dashboard: "):
            assert step in result.stdout, (attempt, step)
    status = subprocess.run([sys.executable, "-m", "runner", "--config", str(directory / "runner.toml"), "status",
                             "--json"], capture_output=True, text=True, env=env)
    states = json.loads(status.stdout)
    assert {(s["source"], s["destination"]) for s in states} == {
        (source, destination) for source in ("vault", "postgres", "minio") for destination in ("nas", "local")}
    assert all(s["last_outcome"] == "ok" and s["within_rpo"] for s in states), states
    assert all(s["last_restore_test"] == "ok" for s in states if s["destination"] == "nas"), states
    assert status.returncode == 0
    assert (directory / "dashboard.html").stat().st_size > 5000


def test_the_runbook_restores_every_service_from_the_nas_into_a_fresh_stack(demo):
    _, env = demo
    result = run_script(env, "scripts/dr-drill.py")
    assert result.returncode == 0, f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    verified = [line for line in result.stdout.splitlines() if line.startswith("verified: ")]
    assert [line.split(":")[1].strip() for line in verified] == ["Vault", "PostgreSQL", "MinIO"], result.stdout
