"""Prometheus metrics of one :class:`~llm_cost_ops.delivery.UsageProducer`, on a registry it is given
(or one of its own): nothing is registered at import time."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class ProducerMetrics:
    """Counters of records through the producer, and the spool's size."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.sent = Counter("costops_producer_records_sent_total", "Records accepted by send()", registry=r)
        self.delivered = Counter(
            "costops_producer_records_delivered_total", "Records acknowledged by Kafka", registry=r
        )
        self.failed = Counter(
            "costops_producer_records_failed_total",
            "Accepted records whose delivery failed for good (their on_delivery got the error)",
            registry=r,
        )
        self.rejected = Counter(
            "costops_producer_records_rejected_total",
            "Records send() refused (spool_full, queue_full, closed)",
            ["reason"],
            registry=r,
        )
        self.spooled = Counter(
            "costops_producer_records_spooled_total", "Records written to the local spool", registry=r
        )
        self.replayed = Counter(
            "costops_producer_spool_messages_replayed_total",
            "Spooled messages acknowledged by Kafka on replay (a message holds a batch of records)",
            registry=r,
        )
        self.spool_bytes = Gauge("costops_producer_spool_bytes", "Bytes of the local spool on disk", registry=r)
