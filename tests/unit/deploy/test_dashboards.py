"""deploy/grafana: the dashboard's ClickHouse SQL runs on the real schema (chDB migrated by
``sinks/migrations.py``, Grafana's macros replaced by concrete values), its Prometheus queries
read metrics the code defines, and its datasources are the provisioned ones.

chDB serves one data path per process, and the integration tests open theirs in the test
process: the queries run in a child process of their own."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from deploy_files import (
    DASHBOARD,
    DATASOURCES,
    EXTERNAL_METRICS,
    ROOT,
    balanced,
    defined_metrics,
    load_yaml,
    promql_metric_names,
)

CLICKHOUSE = "grafana-clickhouse-datasource"
FROM, TO = "2026-01-01 00:00:00", "2026-01-08 00:00:00"
ORGANIZATIONS = ["org-a", "org-b"]
ORGANIZATION_TABLES = "tables with organization_id"
REQUIRED_PANELS = {
    "Spend over time",
    "Spend by provider",
    "Spend by model",
    "Spend by project",
    "Anomalies",
    "Budget alerts",
    "Throughput",
    "Consumer lag",
}

# Runs in a child process: migrate a chDB database named like production's, add a few rows,
# run each query, answer {title: rows or {"error": ...}}.
RUNNER = r"""
import json, sys
import clickhouse_connect
from sinks.store import ClickHouseStore

store = ClickHouseStore(clickhouse_connect.get_client(interface="chdb", path=sys.argv[1]), "costops")
store.migrate()
c = store.client
c.command('''INSERT INTO costops.usage_costs_hourly
    (organization_id, hour, currency, provider, model, project_id, requests, unpriced, total_cost, priced_tokens,
     total_tokens, prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens, latency_sum, latency_count,
     latency_p95, version)
    SELECT 'org-a', toDateTime('2026-01-02 10:00:00', 'UTC'), 'USD', 'openai', 'gpt-4o', 'proj-1', 10, 1,
           toDecimal128('12.5', 10), 900, 1000, 800, 200, 0, 0, 5000, 10,
           quantileState(0.95)(toNullable(toUInt64(500))), now64(6)''')
c.command('''INSERT INTO costops.alerts
    (alert_id, type, organization_id, dimension, currency, window_start, window_end, size_seconds, actual_cost,
     expected_cost, impact, score, method, threshold, severity, direction, windows, message, details, created_at)
    VALUES ('b1', 'budget.threshold', 'org-a', 'organization', 'USD', '2026-01-01 00:00:00', '2026-02-01 00:00:00',
            2678400, 85, 100, -15, 85, 'budget', 80, 'medium', 'above', 1, 'budget at 85%',
            '{"budget_name":"monthly cap","period":"monthly"}', now64(3)),
           ('a1', 'cost.anomaly', 'org-a', 'organization', 'USD', '2026-01-02 10:00:00', '2026-01-02 11:00:00',
            3600, 12.5, 1, 11.5, 9.5, 'robust', 4, 'high', 'above', 1, 'spend 12x', '{}', now64(3))''')
answers = {}
for title, sql in json.load(sys.stdin).items():
    try:
        result = c.query(sql)
        answers[title] = [[str(v) for v in row] for row in result.result_rows]
    except Exception as exc:
        answers[title] = {"error": str(exc).splitlines()[0][:500]}
print(json.dumps(answers))
"""


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def panels() -> list[dict[str, Any]]:
    found = []
    for panel in dashboard()["panels"]:
        found.extend(panel.get("panels", []) if panel["type"] == "row" else [panel])
    return found


def queries(kind: str) -> dict[str, str]:
    """``title[/refId]`` -> rawSql (ClickHouse) or expr (Prometheus) of every target of that datasource type."""
    found = {}
    for panel in panels():
        for target in panel.get("targets", []):
            datasource = target.get("datasource") or panel.get("datasource") or {}
            if datasource.get("type") == kind:
                key = panel["title"] if len(panel["targets"]) == 1 else f"{panel['title']}/{target['refId']}"
                found[key] = target["rawSql" if kind == CLICKHOUSE else "expr"]
    return found


def _call_args(text: str, start: int) -> tuple[list[str], int]:
    """The comma-separated arguments of the call whose ``(`` is at ``start``, and the end index."""
    depth, args, current = 0, [], start + 1
    for i in range(start, len(text)):
        if text[i] == "(":
            depth += 1
        elif text[i] == ")":
            depth -= 1
            if depth == 0:
                args.append(text[current:i].strip())
                return args, i + 1
        elif text[i] == "," and depth == 1:
            args.append(text[current:i].strip())
            current = i + 1
    raise AssertionError(f"unclosed macro call in {text!r}")


def substitute(sql: str, organizations: list[str] | None = ORGANIZATIONS) -> str:
    """Grafana's ClickHouse macros and the ``organization`` variable, as the plugin expands them."""
    while (at := sql.find("$__conditionalAll(")) >= 0:  # the condition, or 1=1 when "All" is selected
        args, end = _call_args(sql, at + len("$__conditionalAll"))
        assert len(args) == 2 and args[1] == "$organization", args
        sql = sql[:at] + (args[0] if organizations else "1=1") + sql[end:]
    quoted = ", ".join(f"'{org}'" for org in organizations or ["(all)"])
    sql = sql.replace("${organization:singlequote}", quoted)
    sql = re.sub(r"\$\{organization\}|\$organization\b", quoted, sql)
    while (at := sql.find("$__timeFilter(")) >= 0:
        (column,), end = _call_args(sql, at + len("$__timeFilter"))
        between = f"{column} >= toDateTime('{FROM}', 'UTC') AND {column} <= toDateTime('{TO}', 'UTC')"
        sql = sql[:at] + between + sql[end:]
    while (at := sql.find("$__timeInterval(")) >= 0:
        (column,), end = _call_args(sql, at + len("$__timeInterval"))
        sql = sql[:at] + f"toStartOfInterval(toDateTime({column}), INTERVAL 3600 second)" + sql[end:]
    sql = sql.replace("$__fromTime", f"toDateTime('{FROM}', 'UTC')").replace("$__toTime", f"toDateTime('{TO}', 'UTC')")
    sql = sql.replace("$__interval_s", "3600")
    assert "$" not in sql, f"a macro or variable the test does not know: {sql}"
    return sql


@pytest.fixture(scope="module")
def answers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every ClickHouse query of the dashboard (and its variable), run on the migrated schema."""
    sqls = {title: substitute(sql) for title, sql in queries(CLICKHOUSE).items()}
    for variable in dashboard()["templating"]["list"]:
        if (variable.get("datasource") or {}).get("type") == CLICKHOUSE:
            sqls[f"variable {variable['name']}"] = substitute(variable["query"])
    sqls[ORGANIZATION_TABLES] = (
        "SELECT table FROM system.columns WHERE database = 'costops' AND name = 'organization_id' ORDER BY table"
    )
    path: Path = tmp_path_factory.mktemp("chdb-dashboard")
    result = subprocess.run(
        [sys.executable, "-c", RUNNER, str(path)],
        input=json.dumps(sqls),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    data: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return data


def test_the_dashboard_has_the_panels_operators_need() -> None:
    titles = {panel["title"] for panel in panels()}
    assert titles >= REQUIRED_PANELS, REQUIRED_PANELS - titles
    ids = [panel["id"] for panel in dashboard()["panels"]]
    assert len(ids) == len(set(ids))
    assert dashboard()["uid"] == "llm-costops"
    assert len(queries(CLICKHOUSE)) >= 8 and len(queries("prometheus")) >= 5


def test_every_clickhouse_query_runs_on_the_migrated_schema(answers: dict[str, Any]) -> None:
    failed = {title: answer["error"] for title, answer in answers.items() if isinstance(answer, dict)}
    assert failed == {}
    assert set(answers) == set(queries(CLICKHOUSE)) | {"variable organization", ORGANIZATION_TABLES}


def test_the_queries_answer_from_the_rows_stored(answers: dict[str, Any]) -> None:
    assert answers["Spend over time"] == [["2026-01-02 10:00:00", "USD", "12.5000000000"]]
    assert answers["Total spend"] == [["USD", "12.5000000000"]]
    assert answers["Spend by model"] == [["openai", "gpt-4o", "12.5000000000", "10", "1000"]]
    assert answers["Spend by project"] == [["org-a", "proj-1", "12.5000000000", "10"]]
    assert answers["variable organization"] == [["org-a"]]
    budget = answers["Budget alerts"]
    assert len(budget) == 1 and budget[0][2:4] == ["monthly cap", "monthly"]
    assert len(answers["Anomalies"]) == 1 and "high" in answers["Anomalies"][0]


def test_a_query_on_a_missing_column_fails(tmp_path: Path) -> None:
    sql = "SELECT sum(cost_usd) FROM costops.usage_costs_hourly FINAL WHERE $__timeFilter(hour)"
    result = subprocess.run(
        [sys.executable, "-c", RUNNER, str(tmp_path)],
        input=json.dumps({"broken": substitute(sql)}),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    answer = json.loads(result.stdout.strip().splitlines()[-1])["broken"]
    assert "error" in answer and "cost_usd" in answer["error"]


def test_macros_are_expanded_and_unknown_ones_refused() -> None:
    sql = (
        "SELECT 1 WHERE $__timeFilter(hour) AND "
        "$__conditionalAll(organization_id IN (${organization:singlequote}), $organization)"
    )
    assert substitute(sql, ["o1"]) == (
        f"SELECT 1 WHERE hour >= toDateTime('{FROM}', 'UTC') AND hour <= toDateTime('{TO}', 'UTC') "
        "AND organization_id IN ('o1')"
    )
    assert substitute(sql, None).endswith("AND 1=1")
    with pytest.raises(AssertionError, match="does not know"):
        substitute("SELECT $__unixEpochFilter(t)")


@pytest.mark.parametrize("title", sorted(queries("prometheus")))
def test_every_prometheus_query_reads_metrics_the_code_defines(title: str) -> None:
    expr = queries("prometheus")[title]
    assert balanced(expr), expr
    names = promql_metric_names(expr)
    assert names, f"{title} reads no metric"
    assert names - defined_metrics() - set(EXTERNAL_METRICS) == set(), title


def test_pipeline_panels_read_the_pipelines_throughput_and_lag() -> None:
    read = set().union(*(promql_metric_names(expr) for expr in queries("prometheus").values()))
    for metric in (
        "costops_events_priced_total",
        "costops_sink_rows_written_total",
        "costops_events_dead_lettered_total",
        "kafka_consumergroup_lag",
    ):
        assert metric in read


def test_panels_use_the_provisioned_datasources() -> None:
    provisioned = {(ds["type"], ds["uid"]) for ds in load_yaml(DATASOURCES)["datasources"]}
    assert (CLICKHOUSE, "clickhouse") in provisioned
    used = set()
    for panel in panels():
        for target in panel.get("targets", []):
            datasource = target.get("datasource") or panel["datasource"]
            used.add((datasource["type"], datasource["uid"]))
    for variable in dashboard()["templating"]["list"]:
        used.add((variable["datasource"]["type"], variable["datasource"]["uid"]))
    assert used <= provisioned
    clickhouse = next(ds for ds in load_yaml(DATASOURCES)["datasources"] if ds["uid"] == "clickhouse")
    assert clickhouse["jsonData"]["defaultDatabase"] == "costops"
    assert clickhouse["secureJsonData"]["password"] == "$CLICKHOUSE_PASSWORD"  # from the environment, not the file


def test_every_clickhouse_table_is_qualified_with_the_deployments_database() -> None:
    for title, sql in queries(CLICKHOUSE).items():
        for table in re.findall(r"\bFROM\s+([\w.]+)", sql):
            assert table.startswith("costops."), f"{title}: {table}"


def test_the_gdpr_deletion_in_the_operations_guide_covers_every_table_of_an_organization(
    answers: dict[str, Any],
) -> None:
    """docs/operations.md deletes an organization table by table: a new table holding
    ``organization_id`` must join that list (the schema is the migrated one, here)."""
    tables = {row[0] for row in answers[ORGANIZATION_TABLES]}
    assert {"usage_costs", "usage_costs_hourly", "cost_windows", "alerts"} <= tables
    guide = (ROOT / "docs" / "operations.md").read_text()
    loop = re.search(r"for table in ([\w ]+); do\n.*?DELETE WHERE organization_id", guide, re.S)
    assert loop is not None, "the deletion loop is gone from docs/operations.md"
    assert set(loop[1].split()) == tables
