"""Prometheus metrics. Each process builds one :class:`PipelineMetrics` on its own registry
(no default global registry) and serves it on ``/metrics``. docs/operations-metrics.md lists
them; :func:`metric_names` is that list as code, for the dashboards' and alert rules' tests.

Names are an interface: dashboards and alert rules reference them. Add metrics; never rename one.
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from llm_cost_ops.histogram import BulkHistogram

__all__ = ["CONTENT_TYPE_LATEST", "COST_BUCKETS", "PipelineMetrics", "metric_names"]

COST_BUCKETS = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 0.1, 1.0, 10.0)
"""Upper bounds of ``costops_cost_amount``, in the event's currency: a cached prompt costs a
millionth of a dollar, a long reasoning call a few dollars."""

BATCH_ROW_BUCKETS = (1, 10, 100, 500, 1_000, 5_000, 10_000, 50_000, 100_000)


class PipelineMetrics:
    """The pipeline's counters; stages add to the ones they own."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.events_ingested = Counter(
            "costops_events_ingested_total", "Usage events accepted by the API and published", registry=r
        )
        self.events_rejected = Counter(
            "costops_events_rejected_total", "Usage records the API rejected as invalid", registry=r
        )
        self.events_priced = Counter(
            "costops_events_priced_total", "Events the pricing agent produced", ["status"], registry=r
        )
        self.events_dead_lettered = Counter(
            "costops_events_dead_lettered_total", "Messages sent to the DLQ", ["reason"], registry=r
        )
        self.dlq_replayed = Counter(
            "costops_dlq_replayed_total", "Dead letters re-published to the usage topic", registry=r
        )
        self.cost_usd = Counter(
            "costops_cost_usd_total",
            "Priced cost in USD (float, for dashboards only)",
            ["provider"],
            registry=r,
        )
        self.windows_closed = Counter(
            "costops_windows_closed_total", "Event-time windows closed and produced", ["size_seconds"], registry=r
        )
        self.late_events = Counter(
            "costops_late_events_total",
            "Events later than their window (stored, in no window)",
            registry=r,
        )
        self.budget_late = Counter(
            "costops_budget_late_contributions_total",
            "Spend for budget periods no longer kept (stored in ClickHouse, not in a budget)",
            registry=r,
        )
        self.budget_rejections = Counter(
            "costops_budget_rejected_events_total", "Events refused by ingestion for a hard budget", registry=r
        )
        self.windows_scored = Counter(
            "costops_windows_scored_total", "Closed windows scored by the anomaly detectors", registry=r
        )
        self.alerts = Counter("costops_alerts_total", "Alerts raised", ["type", "severity"], registry=r)
        self.webhook_deliveries = Counter(
            "costops_webhook_deliveries_total", "Webhook delivery attempts", ["event", "outcome"], registry=r
        )
        self.sink_rows = Counter("costops_sink_rows_written_total", "Rows written to ClickHouse", ["table"], registry=r)
        self.sink_duplicates = Counter(
            "costops_sink_duplicates_dropped_total", "Rows dropped as duplicates within a batch", registry=r
        )
        self.sink_failures = Counter(
            "costops_sink_flush_failures_total", "Failed ClickHouse inserts (retried)", registry=r
        )
        self.sink_flush_seconds = Histogram(
            "costops_sink_flush_seconds", "Duration of one ClickHouse insert", registry=r
        )
        self.http_requests = Counter(
            "costops_http_requests_total", "HTTP requests", ["method", "route", "status"], registry=r
        )
        self.http_seconds = Histogram(
            "costops_http_request_duration_seconds", "HTTP request duration", ["method", "route"], registry=r
        )

        # Added with the observability work (docs/operations-metrics.md).
        self.cost_amount = BulkHistogram(
            "costops_cost_amount",
            "Cost of one priced event, in its currency (float, for dashboards only)",
            ["provider", "currency"],
            COST_BUCKETS,
            registry=r,
        )
        self.messages_consumed = Counter(
            "costops_messages_consumed_total",
            "Kafka messages read, by stage (worker, sink) and topic; a message may hold many events",
            ["stage", "topic"],
            registry=r,
        )
        self.consumer_lag = Gauge(
            "costops_consumer_lag",
            "Messages between the group's committed offset and the partition's high watermark",
            ["group", "topic", "partition"],
            registry=r,
        )
        self.sink_batch_rows = Histogram(
            "costops_sink_batch_rows", "Rows of one ClickHouse insert", ["table"], buckets=BATCH_ROW_BUCKETS, registry=r
        )
        self.rate_limited = Counter(
            "costops_http_rate_limited_total",
            "Requests refused by a rate limiter (api: per key or user; sign_in: per address)",
            ["limiter"],
            registry=r,
        )
        self.auth_failures = Counter(
            "costops_http_auth_failures_total",
            "Requests refused for their credentials: missing, invalid (key or token), sign_in (password), refresh",
            ["reason"],
            registry=r,
        )
        self._lag_series: set[tuple[str, str, str]] = set()

    def set_consumer_lag(self, group: str, lags: Mapping[tuple[str, int], int]) -> None:
        """Set ``group``'s lag for each (topic, partition) it holds, and drop the series of the
        partitions it no longer holds (after a rebalance, another process reports them)."""
        current = {(group, topic, str(partition)) for topic, partition in lags}
        for series in self._lag_series - current:
            if series[0] == group:
                self.consumer_lag.remove(*series)
                self._lag_series.discard(series)
        for (topic, partition), lag in lags.items():
            self.consumer_lag.labels(group, topic, str(partition)).set(lag)
        self._lag_series |= current

    def render(self) -> bytes:
        return generate_latest(self.registry)


def metric_names() -> tuple[str, ...]:
    """Every series name the pipeline's processes and the service producer can expose, as a
    PromQL query writes it: ``_total`` for counters; ``_bucket``, ``_sum`` and ``_count`` for
    histograms (``_created`` series left out). For tests of dashboards and alert rules."""
    from llm_cost_ops.delivery.metrics import ProducerMetrics

    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    names: set[str] = set()
    for registry in (PipelineMetrics().registry, ProducerMetrics().registry):
        for family in registry.collect():
            names.update(family.name + suffix for suffix in suffixes[family.type])
    return tuple(sorted(names))
