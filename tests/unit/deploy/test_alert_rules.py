"""deploy/prometheus: the alert rules parse, cover the administrator guide's alerts and the
pipeline's own failure modes, and every expression reads metrics the code defines (or that a
service of docker-compose.yml exports). promtool is not installed here: expressions are
checked for balanced brackets and their metric names."""

from __future__ import annotations

import re
from typing import Any

import pytest

from deploy_files import (
    ALERTS,
    COMPOSE,
    EXTERNAL_METRICS,
    PROMETHEUS,
    balanced,
    defined_metrics,
    load_yaml,
    promql_metric_names,
)

REQUIRED = {
    "CostOpsHighErrorRate": "costops_http_requests_total",
    "CostOpsCostSpike": "costops_cost_usd_total",
    "CostOpsApiSlow": "costops_http_request_duration_seconds_bucket",
    "CostOpsConsumerLag": "kafka_consumergroup_lag",
    "CostOpsDeadLettersGrowing": "costops_events_dead_lettered_total",
    "CostOpsSinkFailing": "costops_sink_flush_failures_total",
}
"""Alert -> a metric it must read."""
_DURATION = re.compile(r"^\d+(ms|s|m|h|d|w|y)$")


def rules() -> list[dict[str, Any]]:
    data = load_yaml(ALERTS)
    return [rule for group in data["groups"] for rule in group["rules"]]


def test_defined_metrics_come_from_the_code() -> None:
    known = defined_metrics()
    assert {"costops_events_priced_total", "costops_sink_flush_seconds_bucket", "costops_alerts_total"} <= known
    assert "llm_cost_ops_api_requests_total" not in known  # the administrator guide's names are not ours


def test_rule_groups_parse_with_the_fields_prometheus_requires() -> None:
    data = load_yaml(ALERTS)
    assert data["groups"], "no groups"
    for group in data["groups"]:
        assert group["name"] and group["rules"]
        if "interval" in group:
            assert _DURATION.match(group["interval"])
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "labels", "annotations", "keep_firing_for"}, rule
            assert rule["alert"] and isinstance(rule["expr"], str)
            if "for" in rule:
                assert _DURATION.match(rule["for"]), rule["alert"]
            assert rule["labels"]["severity"] in ("info", "warning", "critical"), rule["alert"]
            assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]
    names = [rule["alert"] for rule in rules()]
    assert len(names) == len(set(names)), "duplicate alert names"


def test_the_required_alerts_exist_and_read_their_metric() -> None:
    by_name = {rule["alert"]: rule for rule in rules()}
    for alert, metric in REQUIRED.items():
        assert alert in by_name, f"missing alert {alert}"
        assert metric in promql_metric_names(by_name[alert]["expr"]), alert


def unknown_metrics(expr: str) -> set[str]:
    return promql_metric_names(expr) - defined_metrics() - set(EXTERNAL_METRICS)


@pytest.mark.parametrize("rule", rules(), ids=lambda rule: rule["alert"])
def test_every_expression_is_balanced_and_reads_known_metrics(rule: dict[str, Any]) -> None:
    expr = rule["expr"]
    assert balanced(expr), expr
    names = promql_metric_names(expr)
    assert names, f"{rule['alert']} reads no metric"
    assert unknown_metrics(expr) == set(), rule["alert"]


def test_external_metrics_are_exported_and_scraped() -> None:
    services = load_yaml(COMPOSE)["services"]
    jobs = {job["job_name"] for job in load_yaml(PROMETHEUS)["scrape_configs"]}
    for service in EXTERNAL_METRICS.values():
        assert service in services
        assert service in jobs


def test_the_checks_catch_an_unknown_metric_or_an_unbalanced_expression() -> None:
    guide = 'rate(llm_cost_ops_api_requests_total{status="error"}[5m]) > 0.05'
    assert unknown_metrics(guide) == {"llm_cost_ops_api_requests_total"}
    assert not balanced("sum(rate(costops_cost_usd_total[5m])")
    assert not balanced("sum(rate(costops_cost_usd_total[5m)])")


def test_metric_names_leave_out_functions_labels_keywords_and_durations() -> None:
    expr = (
        'sum by (consumergroup) (rate(a_total{job=~"x.*", le="+Inf"}[5m] offset 1d)) / clamp_min(b_count, 1e-9)'
        " > bool 3 and on(job) up == 0 unless ignoring(instance) group_left(x) c"
    )
    assert promql_metric_names(expr) == {"a_total", "b_count", "up", "c"}


def test_prometheus_loads_the_rules_file() -> None:
    config = load_yaml(PROMETHEUS)
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]
    mount = "./deploy/prometheus:/etc/prometheus:ro"
    assert mount in load_yaml(COMPOSE)["services"]["prometheus"]["volumes"]
