"""Hooks: what the settings refuse, and the promises of SourceHooks with a stand-in engine (the real
containers and HTTP server are in tests/integration/test_hooks.py)."""

import json

import pytest

from runner.engine import ContainerStatus, JobError
from runner.hooks import HookError, SourceHooks, describe, state_file
from runner.settings import ConfigError, HttpHook, Settings, load_settings


@pytest.mark.parametrize(("hooks", "named", "says"), [
    ('before = [{kind = "exec", container = "db", command = []}]', "sources.files.hooks.before.0.command",
     "at least 1 item"),
    ('before = [{kind = "exec", container = "db", command = [""]}]', "sources.files.hooks.before.0.command",
     "the program"),
    ('before = [{kind = "http", url = "ftp://example.net/x"}]', "sources.files.hooks.before.0.url", "http://"),
    ('after = [{kind = "http", url = "http://example.net/", timeout = -5}]', "sources.files.hooks.after.0.timeout",
     "greater than 0"),
    ('before = [{kind = "http"}]', "sources.files.hooks.before.0", "exactly one of url and url_file"),
    ('after = [{kind = "stop", containers = ["app"]}]', "sources.files.hooks.after", "belongs in `before`"),
    ('before = [{kind = "stop", containers = ["-x"]}]', "sources.files.hooks.before.0.containers", "Podman name"),
    ('before = [{kind = "shell", command = "rm -rf /"}]', "sources.files.hooks.before.0", "kind"),
])
def test_bad_hooks_are_refused_at_load_naming_the_setting(tmp_path, hooks, named, says):
    config = tmp_path / "runner.toml"
    config.write_text(f"[sources.files.hooks]\n{hooks}\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    [problem] = caught.value.problems
    assert f"{config}: {named}:" in problem and says in problem, problem


class Containers:
    """A stand-in engine: containers by name and state; `broken` ones cannot be started."""

    def __init__(self, **states):
        self.states = dict(states)
        self.broken: set[str] = set()
        self.calls: list[str] = []

    def container_status(self, name):
        return ContainerStatus(name, name in self.states, self.states.get(name, ""))

    def stop_container(self, name, timeout):
        self.calls.append(f"stop {name}")
        self.states[name] = "exited"

    def start_container(self, name):
        self.calls.append(f"start {name}")
        if name in self.broken:
            raise JobError(f"could not start container {name}: broken")
        self.states[name] = "running"


def hooked(tmp_path, engine, **hooks) -> SourceHooks:
    settings = Settings(paths={"state_dir": tmp_path / "state", "staging_dir": tmp_path / "staging"},
                        sources={"files": {"hooks": hooks}})
    return SourceHooks(settings, engine, "files")


def test_stopped_containers_are_started_again_in_reverse_order_whatever_happens(tmp_path):
    engine = Containers(app="running", worker="running", idle="exited")
    hooks = hooked(tmp_path, engine, before=[{"kind": "stop", "containers": ["app", "worker", "idle"]}])
    hooks.before()
    assert engine.states == {"app": "exited", "worker": "exited", "idle": "exited"}
    assert json.loads(state_file(hooks.settings, "files").read_text())["containers"] == ["app", "worker"]
    assert hooks.finish(failed=True) == []
    assert engine.calls == ["stop app", "stop worker", "start worker", "start app"]  # idle was down: left so
    assert engine.states["idle"] == "exited" and not state_file(hooks.settings, "files").exists()


def test_a_container_that_will_not_start_again_is_a_problem_until_the_next_run_starts_it(tmp_path):
    engine = Containers(app="running")
    engine.broken.add("app")
    hooks = hooked(tmp_path, engine, before=[{"kind": "stop", "containers": ["app"]}])
    hooks.before()
    [problem] = hooks.finish(failed=False)
    assert "could not start container app" in problem and "podman start app" in problem
    still_broken = hooked(tmp_path, engine)
    still_broken.recover()
    assert still_broken.notes == [] and len(still_broken.finish(failed=False)) == 1
    engine.broken.clear()
    repaired = hooked(tmp_path, engine)
    repaired.recover()
    assert engine.states["app"] == "running" and repaired.finish(failed=False) == []
    assert not state_file(repaired.settings, "files").exists()


def test_the_next_run_starts_what_a_killed_run_left_stopped(tmp_path):
    engine = Containers(app="running")
    killed = hooked(tmp_path, engine, before=[{"kind": "stop", "containers": ["app"]}])
    killed.before()  # and never finish: SIGKILL
    assert engine.states["app"] == "exited"
    next_run = hooked(tmp_path, engine)
    next_run.recover()
    assert engine.states["app"] == "running"
    assert next_run.notes and "started app again, left stopped by the backup interrupted at" in next_run.notes[0]
    assert not state_file(next_run.settings, "files").exists()


def test_unknown_container_fails_the_before_hook(tmp_path):
    hooks = hooked(tmp_path, Containers(), before=[{"kind": "stop", "containers": ["ghost"]}])
    with pytest.raises(HookError, match="before hook stop ghost failed: there is no container ghost"):
        hooks.before()


def test_on_error_runs_only_after_a_failure_and_after_always(tmp_path):
    ran = []
    hooks = hooked(tmp_path, Containers(), on_error=[{"kind": "http", "url": "http://127.0.0.1:9/on-error"}],
                   after=[{"kind": "http", "url": "http://127.0.0.1:9/after"}])
    hooks._run = lambda phase, hook: ran.append(phase)  # type: ignore[method-assign]
    hooks.finish(failed=False)
    assert ran == ["after"]
    hooks.finish(failed=True)
    assert ran == ["after", "on_error", "after"]


def test_a_secret_url_is_never_described():
    hook = HttpHook(kind="http", url_file="/run/secrets/ping-url")
    assert describe(hook) == "http POST (URL in /run/secrets/ping-url)"
