"""The pricing agent's metrics of a take: priced/unpriced counts and the cost histogram."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pyarrow as pa

from llm_cost_ops.metrics import PipelineMetrics
from schemas.codec import UsageCodec
from schemas.columns import millis
from schemas.registry import BuiltinSchemaTable
from schemas.serde import AvroSerde
from schemas.usage import UsageEvent
from streams.price_agent import _count
from streams.price_step import price_messages
from streams.pricing import PriceCatalog


def test_a_take_observes_each_priced_cost_once(usage_event: Callable[..., UsageEvent]) -> None:
    codec = UsageCodec(AvroSerde(BuiltinSchemaTable()), "usage-events-value")
    events = [usage_event() for _ in range(3)] + [usage_event(model="no-such-model")]
    outcomes = price_messages(
        [codec.encode_usage(e) for e in events], codec, PriceCatalog(), frozenset({"openai"}), millis(datetime.now(UTC))
    )
    priced = pa.concat_tables([o.priced for o in outcomes if o.priced is not None])
    metrics = PipelineMetrics()

    _count(priced, metrics)

    value = metrics.registry.get_sample_value
    assert value("costops_events_priced_total", {"status": "priced"}) == 3
    assert value("costops_events_priced_total", {"status": "unpriced"}) == 1
    labels = {"provider": "openai", "currency": "USD"}
    assert value("costops_cost_amount_count", labels) == 3  # the unpriced event has no cost
    costs = [float(c) for c in priced.column("total_cost").to_pylist() if c is not None]
    assert abs((value("costops_cost_amount_sum", labels) or 0) - sum(costs)) < 1e-12
    assert value("costops_cost_amount_bucket", {**labels, "le": "+Inf"}) == 3
    assert value("costops_cost_amount_bucket", {**labels, "le": "1e-06"}) == sum(c <= 1e-6 for c in costs)
