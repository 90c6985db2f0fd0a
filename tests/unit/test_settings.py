import tomllib

import pytest
from click.testing import CliRunner

from runner.cli import cli
from runner.settings import (
    ConfigError,
    GDriveDestination,
    LocalDestination,
    NasDestination,
    S3Destination,
    Settings,
    load_settings,
    redacted,
)
from tests.conftest import EXAMPLE_CONFIG


def field_paths(model_cls, prefix=""):
    for name, info in model_cls.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
            yield from field_paths(annotation, f"{prefix}{name}.")
        elif name != "destinations":
            yield f"{prefix}{name}"


def toml_paths(data, prefix=""):
    for key, value in data.items():
        if isinstance(value, dict):
            yield from toml_paths(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"


def test_example_config_loads():
    loaded = load_settings(EXAMPLE_CONFIG)
    assert loaded.path == EXAMPLE_CONFIG
    assert loaded.settings.jobs.timeout == 6 * 3600


def test_example_config_covers_every_field():
    with open(EXAMPLE_CONFIG, "rb") as handle:
        example = tomllib.load(handle)
    destinations = example.pop("destinations")
    assert set(field_paths(Settings)) == set(toml_paths(example))
    for kind in (LocalDestination, NasDestination, GDriveDestination, S3Destination):
        tag = kind.model_fields["kind"].annotation.__args__[0]
        shown = [d for d in destinations.values() if d["kind"] == tag]
        assert shown, f"examples/runner.toml shows no {tag} destination"
        assert set(kind.model_fields) == set(shown[0]), tag


def test_every_field_has_a_description():
    def undescribed(model_cls, prefix=""):
        for name, info in model_cls.model_fields.items():
            if not info.description:
                yield prefix + name
            if isinstance(info.annotation, type) and hasattr(info.annotation, "model_fields"):
                yield from undescribed(info.annotation, f"{prefix}{name}.")

    assert list(undescribed(Settings)) == []


def test_three_mistakes_are_all_reported_with_field_and_file(tmp_path):
    config = tmp_path / "runner.toml"
    config.write_text('[paths]\nstate_dir = "relative/dir"\n[jobs]\ntimeout = "soon"\nuser = "0:0"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    problems = caught.value.problems
    assert len(problems) == 3
    for field in ("paths.state_dir", "jobs.timeout", "jobs.user"):
        assert any(field in problem and str(config) in problem for problem in problems), (field, problems)


def test_unknown_setting_is_an_error_naming_it(tmp_path):
    config = tmp_path / "runner.toml"
    config.write_text("[jobs]\ntimout = 60\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    assert "jobs.timout" in caught.value.problems[0] and "unknown setting" in caught.value.problems[0]


def test_invalid_toml_names_the_file(tmp_path):
    config = tmp_path / "runner.toml"
    config.write_text("[jobs\n")
    with pytest.raises(ConfigError, match=str(config)):
        load_settings(config)


def test_explicit_missing_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "absent.toml")


def test_environment_overrides_win_over_the_file(tmp_path, monkeypatch):
    config = tmp_path / "runner.toml"
    config.write_text('[jobs]\ntimeout = "1h"\npids_limit = 100\n')
    monkeypatch.setenv("RUNNER_JOBS__TIMEOUT", "15m")
    settings = load_settings(config).settings
    assert settings.jobs.timeout == 900
    assert settings.jobs.pids_limit == 100  # not overridden: the file's value stands


def test_bad_environment_value_names_the_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("RUNNER_JOBS__PIDS_LIMIT", "many")
    with pytest.raises(ConfigError) as caught:
        load_settings(EXAMPLE_CONFIG)
    assert caught.value.problems == [
        "environment RUNNER_JOBS__PIDS_LIMIT: jobs.pids_limit: Input should be a valid integer, "
        "unable to parse string as an integer (got 'many')"
    ]


def test_runner_config_variable_selects_the_file(tmp_path, monkeypatch):
    config = tmp_path / "runner.toml"
    config.write_text('[log]\nlevel = "DEBUG"\n')
    monkeypatch.setenv("RUNNER_CONFIG", str(config))
    assert load_settings().settings.log.level == "DEBUG"


@pytest.mark.parametrize("text, seconds", [(90, 90), ("90", 90), ("90s", 90), ("15m", 900), ("6h", 21600),
                                           ("2d", 172800)])
def test_durations(text, seconds):
    assert Settings(jobs={"timeout": text}).jobs.timeout == seconds


def test_config_check_command_exit_codes(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[jobs]\ntimeout = "never"\n[paths]\ncache_dir = "cache"\n')
    runner = CliRunner()
    good_run = runner.invoke(cli, ["config", "check", str(EXAMPLE_CONFIG)])
    assert good_run.exit_code == 0, good_run.output
    bad_run = runner.invoke(cli, ["config", "check", str(bad)])
    assert bad_run.exit_code == 2
    assert "jobs.timeout" in bad_run.output and "paths.cache_dir" in bad_run.output


def test_redaction_masks_secret_looking_values_but_keeps_file_paths():
    data = {
        "smtp": {"password": "hunter2-hunter2", "password_file": "/run/secrets/smtp"},
        "ping_url": "https://user:s3cr3t-value@hc.example/ping",
        "token": "",
    }
    shown = redacted(data)
    assert shown["smtp"]["password"] == "********"
    assert shown["smtp"]["password_file"] == "/run/secrets/smtp"
    assert "s3cr3t-value" not in shown["ping_url"] and "hc.example/ping" in shown["ping_url"]
    assert shown["token"] == ""


def test_config_show_prints_effective_values(tmp_path, monkeypatch):
    monkeypatch.setenv("RUNNER_JOBS__USER", "2000:2000")
    result = CliRunner().invoke(cli, ["--config", str(EXAMPLE_CONFIG), "config", "show"])
    assert result.exit_code == 0, result.output
    assert 'user = "2000:2000"' in result.output


def test_destination_errors_name_the_destination_field(tmp_path):
    config = tmp_path / "runner.toml"
    config.write_text('[destinations.nas]\nkind = "nas"\nport = 0\n[destinations.cloud]\nkind = "dropbox"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    problems = "\n".join(caught.value.problems)
    assert f"{config}: destinations.nas.host: Field required" in problems
    assert f"{config}: destinations.nas.port: Input should be greater than or equal to 1" in problems
    assert "destinations.cloud" in problems and "'local', 'nas', 'gdrive'" in problems


def problems_of(tmp_path, text: str) -> list[str]:
    config = tmp_path / "runner.toml"
    config.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    return caught.value.problems


@pytest.mark.parametrize("host", ["nas", "nas.tail1234.ts.net", "NAS-1.lan.", "192.168.1.20", "fd7a:115c:a1e0::1"])
def test_nas_hosts_are_dns_names_or_addresses(host):
    assert NasDestination(kind="nas", host=host).host == host


@pytest.mark.parametrize("setting, value, message", [
    ("host", "-oProxyCommand=touch /tmp/x", "must be a DNS name"),
    ("host", "nas -p 2222", "must be a DNS name"),
    ("host", "nas..lan", "must be a DNS name"),
    ("host", "-nas.lan", "must be a DNS name"),
    ("user", "-oProxyCommand=x", "must be a user name"),
    ("user", "backup@evil", "must be a user name"),
    ("network", "-net", "must be a Podman name"),
])
def test_nas_settings_that_would_reach_the_ssh_command_line_are_refused(tmp_path, setting, value, message):
    host = "" if setting == "host" else 'host = "nas"\n'
    [problem] = problems_of(tmp_path, f'[destinations.nas]\nkind = "nas"\n{host}{setting} = "{value}"\n')
    assert problem.startswith(f"{tmp_path / 'runner.toml'}: destinations.nas.{setting}: {message}")
    assert problem.endswith(f"(got {value!r})")


@pytest.mark.parametrize("section, setting, value, message", [
    ("sources.postgres", "container", "my postgres", "must be a Podman name"),
    ("sources.postgres", "container", "-postgres", "must be a Podman name"),
    ("sources.postgres", "network", "--network=host", "must be a Podman name"),
    ("sources.postgres", "host", "-hsocket", "must be a DNS name"),
    ("sources.postgres", "user", "-Upostgres", "must be a role name"),
    ("sources.postgres", "exec_user", "postgres:-0", "must be a user name"),
    ("sources.minio", "network", "bad/net", "must be a Podman name"),
    ("destinations.cloud", "network", "bad net", "must be a Podman name"),
])
def test_names_are_checked_when_loading(tmp_path, section, setting, value, message):
    kind = 'kind = "gdrive"\n' if section == "destinations.cloud" else ""
    [problem] = problems_of(tmp_path, f'[{section}]\n{kind}{setting} = "{value}"\n')
    assert problem.startswith(f"{tmp_path / 'runner.toml'}: {section}.{setting}: {message}")


def test_postgres_names_that_work_are_accepted():
    postgres = Settings(sources={"postgres": {"container": "offsite-test-postgres_1.a", "network": "home-net",
                                              "host": "db.lan", "user": "backup@pg", "exec_user": "999:999"}}
                        ).sources.postgres
    assert (postgres.container, postgres.user, postgres.exec_user) == ("offsite-test-postgres_1.a", "backup@pg",
                                                                       "999:999")


def test_postgres_without_a_container_is_reached_by_host_only(tmp_path):
    loaded = load_settings(write(tmp_path, '[sources.postgres]\ncontainer = ""\nhost = "db.lan"\nnetwork = "host"\n'))
    assert loaded.settings.sources.postgres.container == ""
    [problem] = problems_of(tmp_path, '[sources.postgres]\ncontainer = ""\n')
    assert problem == (f"{tmp_path / 'runner.toml'}: sources.postgres.host: required when sources.postgres.container "
                       "is empty (a server reached only by host and port): set host, or name the container")
    [problem] = problems_of(tmp_path, '[sources.postgres]\ncontainer = ""\nhost = "db.lan"\nmode = "exec"\n')
    assert problem.startswith(f"{tmp_path / 'runner.toml'}: sources.postgres.mode: 'exec' runs pg_dumpall inside "
                              "the PostgreSQL container, but sources.postgres.container is empty")
    assert load_settings(write(tmp_path, '[sources.postgres]\nenabled = false\ncontainer = ""\n'))


def test_an_impossible_combination_from_the_environment_names_the_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("RUNNER_SOURCES__POSTGRES__CONTAINER", "")
    monkeypatch.setenv("RUNNER_SOURCES__POSTGRES__MODE", "exec")
    with pytest.raises(ConfigError) as caught:
        load_settings(EXAMPLE_CONFIG)
    assert [problem.split(": ")[0] for problem in caught.value.problems] == [
        "environment RUNNER_SOURCES__POSTGRES__MODE"]


def write(tmp_path, text: str):
    config = tmp_path / "runner.toml"
    config.write_text(text)
    return config
