"""Prometheus metrics. Each process builds one :class:`PipelineMetrics` on its own registry
(no default global registry) and serves it on ``/metrics``."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "PipelineMetrics"]


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

    def render(self) -> bytes:
        return generate_latest(self.registry)
