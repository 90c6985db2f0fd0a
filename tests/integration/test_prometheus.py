"""The shipped Grafana dashboard and Prometheus rules use only metrics a real run exports, and promtool
accepts the rules and passes their unit tests."""

import json
import re
import shutil
import subprocess

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from runner.monitoring import metrics
from tests.conftest import PROJECT_ROOT
from tests.integration.test_monitoring import configure, invoke

MONITORING = PROJECT_ROOT / "monitoring"
DASHBOARD = MONITORING / "grafana-dashboard.json"
RULES = MONITORING / "prometheus-alerts.yml"
RULE_TESTS = MONITORING / "prometheus-alerts.test.yml"

KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool",
            "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: its identifiers that are not functions, keywords,
    label names (in matchers, by/without/on/ignoring lists) or durations."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings (label values, regexes)
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)  # range selectors, subqueries
    text = re.sub(r"\$\w+|\$\{\w+\}", " ", text)  # Grafana variables ($__interval)
    names = set()
    for match in re.finditer(r"(?<![\w.])([a-zA-Z_:][\w:]*)\s*(\()?", text):
        name, call = match.groups()
        if not call and name.lower() not in KEYWORDS and not re.fullmatch(r"\d+\w*", name):
            names.add(name)
    return names


def dashboard_expressions(node) -> list[str]:
    """Every PromQL expression of the dashboard: the panels' targets and the template variables' queries."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "expr" and isinstance(value, str):
                found.append(value)
            elif key == "query" and isinstance(value, str) and "(" in value:
                found.append(value)
            else:
                found += dashboard_expressions(value)
    elif isinstance(node, list):
        for item in node:
            found += dashboard_expressions(item)
    return found


def label_values_metric(expr: str) -> str:
    """Grafana's label_values(METRIC, LABEL) is not PromQL: its first argument is the selector."""
    match = re.fullmatch(r"\s*label_values\((.*),\s*\w+\s*\)\s*", expr)
    return match.group(1) if match else expr


def rule_expressions() -> list[str]:
    rules = yaml.safe_load(RULES.read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def test_the_extractor_finds_metric_names_only():
    assert metric_names('time() - max without (kind) (a_b{kind="x",y=~"$z"}) > 90000 or on (source) c[5m]') \
        == {"a_b", "c"}
    assert metric_names("sum by (source) (rate(x_total[1h])) > 0.5 and bool y") == {"x_total", "y"}


@pytest.fixture(scope="module")
def exported(engine, settings, tmp_path_factory) -> set[str]:
    """The metric names in the textfile a real run writes: a backup of the files source to a local
    repository, a check, a prune, a restore test and `runner status`."""
    tmp_path = tmp_path_factory.mktemp("prometheus")
    configured = configure(settings, tmp_path)
    for command in (["repo", "init"], ["exec", "backup", "files"], ["exec", "check", "files"],
                    ["exec", "prune", "files"], ["exec", "restore-test", "files"]):
        result = invoke(configured, tmp_path, *command)
        assert result.exit_code == 0, result.output
    invoke(configured, tmp_path, "status")  # its exit code says whether all is healthy; the metrics are written
    text = metrics.metrics_file(configured).read_text()
    return {sample.name for family in text_string_to_metric_families(text) for sample in family.samples}


def test_the_dashboard_uses_only_metrics_the_runner_exports(exported):
    expressions = [label_values_metric(expr) for expr in dashboard_expressions(json.loads(DASHBOARD.read_text()))]
    assert len(expressions) >= 20
    used = set().union(*(metric_names(expr) for expr in expressions))
    assert used - exported == set(), f"not exported: {used - exported}"
    assert all(metric_names(expr) for expr in expressions), "an expression that selects no metric"
    # every metric the runner exports has a panel
    assert exported - used == set(), f"no panel shows: {exported - used}"


def test_the_alerting_rules_use_only_metrics_the_runner_exports(exported):
    expressions = rule_expressions()
    names = {rule["alert"] for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]}
    assert {"OffsiteBackupFailed", "OffsiteBackupRPOMissed", "OffsiteBackupRestoreTestFailed",
            "OffsiteBackupRestoreTestOverdue", "OffsiteBackupCheckFailed", "OffsiteBackupSuccessRateLow"} <= names
    used = set().union(*(metric_names(expr) for expr in expressions))
    assert used - exported == set(), f"not exported: {used - exported}"


def promtool(*args: str) -> subprocess.CompletedProcess:
    if not shutil.which("promtool"):
        pytest.fail("promtool is missing: install the Debian package prometheus (scripts/setup-host --test)")
    return subprocess.run(["promtool", *args], capture_output=True, text=True, cwd=MONITORING)


def test_promtool_accepts_the_rules_and_their_unit_tests_pass():
    checked = promtool("check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 7 rules found" in checked.stdout
    tested = promtool("test", "rules", str(RULE_TESTS))
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_dashboard_expression_is_valid_promql(tmp_path):
    """promtool parses each of the dashboard's queries, given to it as a recording rule (Grafana's
    variables sit inside label matchers' strings, so the queries are PromQL as they stand)."""
    expressions = [label_values_metric(expr) for expr in dashboard_expressions(json.loads(DASHBOARD.read_text()))]
    rules = tmp_path / "dashboard-queries.yml"
    rules.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{number}", "expr": expr} for number, expr in enumerate(expressions)]}]}))
    checked = promtool("check", "rules", str(rules))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(expressions)} rules found" in checked.stdout


def test_the_dashboard_is_well_formed():
    dashboard = json.loads(DASHBOARD.read_text())
    panels = dashboard["panels"]
    assert len({panel["id"] for panel in panels}) == len(panels)
    variables = {variable["name"] for variable in dashboard["templating"]["list"]}
    for panel in panels:
        position = panel["gridPos"]
        assert 0 <= position["x"] and position["x"] + position["w"] <= 24, panel["title"]
        for target in panel.get("targets", []):
            used = set(re.findall(r"\$\{?(\w+)", target["expr"] + target["datasource"]["uid"]))
            assert used <= variables | {"__interval", "__range"}, (panel["title"], used)
