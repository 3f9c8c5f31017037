"""The metrics' names as an interface (:func:`metric_names`, docs/operations-metrics.md), the
array-fed cost histogram, and the consumer lag series."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from prometheus_client import CollectorRegistry, Histogram

from llm_cost_ops.consumer_lag import partition_lags
from llm_cost_ops.histogram import BulkHistogram
from llm_cost_ops.metrics import COST_BUCKETS, PipelineMetrics, metric_names

DOC = Path(__file__).parents[3] / "docs" / "operations-metrics.md"

# Dashboards and alert rules reference these: they must never disappear or change.
EXISTING = {
    "costops_events_ingested_total",
    "costops_events_rejected_total",
    "costops_events_priced_total",
    "costops_events_dead_lettered_total",
    "costops_dlq_replayed_total",
    "costops_cost_usd_total",
    "costops_windows_closed_total",
    "costops_late_events_total",
    "costops_budget_late_contributions_total",
    "costops_budget_rejected_events_total",
    "costops_windows_scored_total",
    "costops_alerts_total",
    "costops_webhook_deliveries_total",
    "costops_sink_rows_written_total",
    "costops_sink_duplicates_dropped_total",
    "costops_sink_flush_failures_total",
    "costops_sink_flush_seconds_bucket",
    "costops_http_requests_total",
    "costops_http_request_duration_seconds_bucket",
    "costops_producer_records_sent_total",
    "costops_producer_spool_bytes",
}
ADDED = {
    "costops_cost_amount_bucket",
    "costops_cost_amount_sum",
    "costops_cost_amount_count",
    "costops_messages_consumed_total",
    "costops_consumer_lag",
    "costops_sink_batch_rows_bucket",
    "costops_http_rate_limited_total",
    "costops_http_auth_failures_total",
}


def test_metric_names_lists_every_series_name() -> None:
    names = set(metric_names())
    assert names >= EXISTING
    assert names >= ADDED
    assert all(re.fullmatch(r"costops_[a-z0-9_]+", name) for name in names)
    assert not any(name.endswith("_created") for name in names)


def test_every_metric_is_documented() -> None:
    documented = set(re.findall(r"^\| `(costops_[a-z0-9_]+)`", DOC.read_text(encoding="utf-8"), re.MULTILINE))
    families = {re.sub(r"_(bucket|sum|count)$", "", name) for name in metric_names()}
    assert families == documented


def test_bulk_histogram_matches_prometheus_histogram() -> None:
    values = np.array([0.0, 1e-6, 2e-6, 3e-4, 0.01, 0.5, 10.0, 25.0])
    registry = CollectorRegistry()
    bulk = BulkHistogram("bulk", "b", ["provider", "currency"], COST_BUCKETS, registry=registry)
    one = Histogram("one", "o", ["provider", "currency"], buckets=COST_BUCKETS, registry=registry)
    bulk.observe_many(("openai", "USD"), values[:3])
    bulk.observe_many(("openai", "USD"), values[3:])
    for value in values.tolist():
        one.labels("openai", "USD").observe(value)
    for bound in [*COST_BUCKETS, float("inf")]:
        le = "+Inf" if bound == float("inf") else repr(bound)
        labels = {"provider": "openai", "currency": "USD", "le": le}
        assert registry.get_sample_value("bulk_bucket", labels) == registry.get_sample_value("one_bucket", labels)
    labels = {"provider": "openai", "currency": "USD"}
    assert registry.get_sample_value("bulk_count", labels) == 8
    assert registry.get_sample_value("bulk_sum", labels) == registry.get_sample_value("one_sum", labels)


def test_consumer_lag_series_follow_the_assignment() -> None:
    metrics = PipelineMetrics()
    tp0, tp1 = SimpleNamespace(topic="t", partition=0), SimpleNamespace(topic="t", partition=1)
    high = {0: 120, 1: 50}
    committed = {0: 100, 1: None}  # partition 1: never committed, lag unknown
    lags = partition_lags([tp0, tp1], lambda tp: high[tp.partition], lambda tp: committed[tp.partition])
    assert lags == {("t", 0): 20}
    metrics.set_consumer_lag("sink", {("t", 0): 20, ("t", 1): 5})
    metrics.set_consumer_lag("worker", {("t", 0): 3})
    metrics.set_consumer_lag("sink", {("t", 0): 0})  # partition 1 revoked
    value = metrics.registry.get_sample_value
    assert value("costops_consumer_lag", {"group": "sink", "topic": "t", "partition": "0"}) == 0
    assert value("costops_consumer_lag", {"group": "sink", "topic": "t", "partition": "1"}) is None
    assert value("costops_consumer_lag", {"group": "worker", "topic": "t", "partition": "0"}) == 3
