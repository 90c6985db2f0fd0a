"""Hooks around a real backup: a container stopped while the files are read and started again afterwards
(also when the backup fails, and when the runner is stopped or killed), a `podman exec` command whose
output reaches the log, a failing before hook that fails its own source and no other, and HTTP requests
received by a server the test runs."""

import json
import os
import secrets
import signal
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from runner.cli import cli
from runner.hooks import state_file
from runner.settings import Settings
from tests.integration.conftest import private_file, write_config
from tests.integration.services import Postgres

RUNNER = Path(sys.executable).parent / "runner"


def container_state(name: str) -> str:
    return subprocess.run(["podman", "inspect", "--format", "{{.State.Status}}", name],
                          capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def app(engine, settings):
    """A stand-in application container (it would write the backed-up files)."""
    name = f"offsite-test-app-{secrets.token_hex(3)}"
    subprocess.run(["podman", "run", "-d", "--name", name, settings.images.tools, "sleep", "infinity"],
                   check=True, capture_output=True)
    yield name
    subprocess.run(["podman", "rm", "-f", "-t", "0", name], capture_output=True)


class Receiver:
    """A local HTTP server that records each request with the app container's state at that moment, and
    can act on the runner from inside a request (stop or kill it while its hooks run)."""

    def __init__(self):
        self.requests: list[tuple[str, str, str]] = []
        self.app = ""
        self.on_request = None
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                state = container_state(receiver.app) if receiver.app else ""
                receiver.requests.append((self.command, self.path, state))
                if receiver.on_request:
                    receiver.on_request(self.path)
                status = 500 if self.path.startswith("/fail") else 200
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"hook received\n")

            do_GET = do_POST = _answer

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def paths(self) -> list[str]:
        return [path for _, path, _ in self.requests]


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.server.shutdown()


def configure(base: Settings, tmp_path, files_hooks: dict, **sources) -> Settings:
    tmp_path.chmod(0o755)
    data = tmp_path / "app-config"
    data.mkdir(mode=0o755, exist_ok=True)
    (data / "app.conf").write_text("setting = 1\n")
    (data / "app.conf").chmod(0o644)
    for source in ("files", "postgres"):
        private_file(tmp_path / f"restic-{source}.password", f"hooks test password of {source}", base)
    return Settings(
        paths={**base.paths.model_dump(), "state_dir": tmp_path / "state", "staging_dir": tmp_path / "staging"},
        restic={"password_file": str(tmp_path / "restic-{source}.password")},
        destinations={"local": {"kind": "local", "path": str(tmp_path / "repos" / "{source}")}},
        sources={"files": {"paths": [data], "hooks": files_hooks},
                 **{name: sources.get(name, {"enabled": False}) for name in ("vault", "postgres", "minio")}},
    )


def invoke(settings, tmp_path, *args):
    config = write_config(settings, tmp_path / "runner.toml")
    return CliRunner().invoke(cli, ["--config", str(config), *args], prog_name="runner")


def backup(settings, tmp_path, *args):
    result = invoke(settings, tmp_path, "--log-level", "DEBUG", "exec", "backup", *args, "--json")
    return result, {r["source"]: r for r in json.loads(result.stdout)}


def stop_and_report(app: str, receiver: Receiver) -> dict:
    return {"before": [{"kind": "stop", "containers": [app], "timeout": "10s"},
                       {"kind": "http", "method": "GET", "url": f"{receiver.url}/during"}],
            "on_error": [{"kind": "http", "url": f"{receiver.url}/on-error"}],
            "after": [{"kind": "http", "url": f"{receiver.url}/after"}]}


def test_stop_hook_keeps_the_app_down_during_the_backup_and_starts_it_again(engine, settings, tmp_path, app,
                                                                            receiver):
    receiver.app = app
    configured = configure(settings, tmp_path, stop_and_report(app, receiver))
    assert invoke(configured, tmp_path, "repo", "init").exit_code == 0
    result, results = backup(configured, tmp_path, "files")
    assert result.exit_code == 0, result.output
    assert results["files"]["status"] == "ok"
    assert ("GET", "/during", "exited") in receiver.requests  # down while the backup ran
    assert receiver.requests[-1] == ("POST", "/after", "running")  # up again before the after hooks
    assert "/on-error" not in receiver.paths()
    assert container_state(app) == "running"
    assert not state_file(configured, "files").exists()
    assert f"before hook stop {app} ok" in result.output


def test_stopped_app_is_started_again_when_the_backup_fails(engine, settings, tmp_path, app, receiver):
    receiver.app = app
    configured = configure(settings, tmp_path, stop_and_report(app, receiver))  # no `repo init`: no repository
    result, results = backup(configured, tmp_path, "files")
    assert result.exit_code == 1
    assert results["files"]["status"] == "repository missing"
    assert ("GET", "/during", "exited") in receiver.requests
    assert receiver.paths()[-2:] == ["/on-error", "/after"]
    assert container_state(app) == "running"


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["stopped", "killed"])
def test_app_stopped_by_an_interrupted_runner_is_started_again(engine, settings, tmp_path, app, receiver, how):
    """systemd stops a unit with SIGTERM: the runner starts the app before it exits. Killed outright it cannot:
    the next backup of the source does, first, and says so."""
    receiver.app = app
    configured = configure(settings, tmp_path, stop_and_report(app, receiver))
    assert invoke(configured, tmp_path, "repo", "init").exit_code == 0
    config = write_config(configured, tmp_path / "runner.toml")
    runner = subprocess.Popen([str(RUNNER), "--config", str(config), "exec", "backup", "files"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env={k: v for k, v in os.environ.items() if not k.upper().startswith("RUNNER_")})
    receiver.on_request = lambda path: os.kill(runner.pid, how) if path == "/during" else None
    output, _ = runner.communicate(timeout=300)
    receiver.on_request = None
    assert ("GET", "/during", "exited") in receiver.requests
    if how == signal.SIGTERM:
        assert runner.returncode != 0, output  # click reports the interruption as "Aborted!"
        assert container_state(app) == "running"
        assert f"started container {app} again" in output
        assert not state_file(configured, "files").exists()
        return
    assert container_state(app) == "exited" and state_file(configured, "files").exists()
    quiet = configure(settings, tmp_path, {})  # the next run, even with the hooks taken out of the configuration
    result, results = backup(quiet, tmp_path, "files")
    assert result.exit_code == 0, result.output
    assert container_state(app) == "running"
    assert f"started {app} again, left stopped by the backup interrupted" in results["files"]["message"]
    assert not state_file(configured, "files").exists()


def test_exec_hook_runs_in_the_container_and_its_output_is_logged(engine, settings, tmp_path, app):
    command = ["sh", "-c", "echo flushed-by-hook; echo hook-on-stderr >&2; touch /tmp/flushed"]
    configured = configure(settings, tmp_path, {"before": [{"kind": "exec", "container": app, "command": command}]})
    assert invoke(configured, tmp_path, "repo", "init").exit_code == 0
    result, results = backup(configured, tmp_path, "files")
    assert result.exit_code == 0, result.output
    assert results["files"]["status"] == "ok"
    subprocess.run(["podman", "exec", app, "test", "-f", "/tmp/flushed"], check=True)  # it ran in the app
    lines = result.output.splitlines()
    assert any("INFO" in line and f"before hook exec in {app}: sh -c" in line and " ok in " in line
               for line in lines), result.output
    assert any("DEBUG" in line and "flushed-by-hook" in line for line in lines)
    assert any("DEBUG" in line and "hook-on-stderr" in line for line in lines)


@pytest.fixture(scope="module")
def postgres(testcontainers_env, settings):
    with Postgres(settings) as server:
        server.sql("CREATE TABLE t (id int); INSERT INTO t VALUES (1);")
        yield server


def test_failing_before_hook_fails_its_source_alone_with_an_alert(engine, settings, tmp_path, app, postgres,
                                                                  receiver):
    pgpass = private_file(tmp_path / "pgpass", f"*:*:*:postgres:{postgres.password}\n", settings)
    hooks = {"before": [{"kind": "exec", "container": app, "command": ["sh", "-c", "echo app busy >&2; exit 3"]},
                        {"kind": "http", "url": f"{receiver.url}/never"}],
             "on_error": [{"kind": "http", "url": f"{receiver.url}/on-error"}],
             "after": [{"kind": "http", "url": f"{receiver.url}/after"}]}
    configured = configure(settings, tmp_path, hooks,
                           postgres={"container": postgres.name, "pgpass_file": str(pgpass)})
    assert invoke(configured, tmp_path, "repo", "init").exit_code == 0
    result, results = backup(configured, tmp_path, "all")
    assert result.exit_code == 1
    assert results["postgres"]["status"] == "ok"
    assert results["files"]["status"] == "failed" and not results["files"]["snapshot_id"]
    expected = f"before hook exec in {app}: sh -c 'echo app busy >&2; exit 3' failed: exited with code 3: app busy"
    assert expected in results["files"]["message"]
    assert receiver.paths() == ["/on-error", "/after"]  # the later before hook never ran; the after hooks did
    assert any("alert [offsite-backup] PROBLEM: backup failed, files on local" in line and expected in line
               for line in result.output.splitlines()), result.output


def test_http_hook_with_a_secret_url_and_an_unexpected_status(engine, settings, tmp_path, receiver):
    url_file = private_file(tmp_path / "ping-url", f"{receiver.url}/ping?token=hook-secret-token\n", settings)
    hooks = {"before": [{"kind": "http", "method": "GET", "url_file": str(url_file), "expected_status": 200}],
             "after": [{"kind": "http", "url": f"{receiver.url}/fail-after"}]}
    configured = configure(settings, tmp_path, hooks)
    assert invoke(configured, tmp_path, "repo", "init").exit_code == 0
    result, results = backup(configured, tmp_path, "files")
    assert receiver.paths() == ["/ping?token=hook-secret-token", "/fail-after"]
    assert result.exit_code == 1
    files = results["files"]
    assert files["status"] == "failed" and files["snapshot_id"]  # stored, but the after hook failed
    assert "was stored, but after hook http POST" in files["message"]
    assert "answered 500 Internal Server Error, not 2xx" in files["message"]
    assert "hook-secret-token" not in result.output
    assert f"before hook http GET (URL in {url_file}) ok" in result.output


def test_dry_run_names_a_hook_container_that_does_not_exist_and_runs_no_hook(engine, settings, tmp_path, app,
                                                                              receiver):
    hooks = {"before": [{"kind": "stop", "containers": [app]}, {"kind": "http", "url": f"{receiver.url}/x"}],
             "after": [{"kind": "exec", "container": "offsite-test-no-such-app", "command": ["true"]}]}
    configured = configure(settings, tmp_path, hooks)
    assert invoke(configured, tmp_path, "repo", "init").exit_code == 0
    result = invoke(configured, tmp_path, "exec", "backup", "files", "--dry-run", "--json")
    assert result.exit_code == 1
    [outcome] = json.loads(result.stdout)
    assert "after hook exec in offsite-test-no-such-app: true: there is no container offsite-test-no-such-app" \
        in outcome["message"]
    assert container_state(app) == "running" and receiver.requests == []
