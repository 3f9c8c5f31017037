"""The sink's metrics of one batch written to a real (embedded) ClickHouse."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

from llm_cost_ops.metrics import PipelineMetrics
from llm_cost_ops.settings import Settings
from schemas.columns import millis, table_from_events
from schemas.usage import UsageEvent
from sinks.sink import SinkBatch, UsageSink
from sinks.store import ClickHouseStore
from streams.pricing import PriceCatalog


def test_a_written_batch_counts_rows_and_batch_size(
    store: ClickHouseStore, usage_event: Callable[..., UsageEvent]
) -> None:
    priced = PriceCatalog().price(
        table_from_events([usage_event(organization_id="org-m") for _ in range(30)]), millis(datetime.now(UTC))
    )
    metrics = PipelineMetrics()
    sink = UsageSink(Settings(_env_file=None), store, metrics)  # type: ignore[call-arg]
    batch = SinkBatch(tables=[priced, priced.slice(0, 5)], rows=35)  # 5 duplicates

    assert asyncio.run(sink._write(batch, asyncio.Event()))

    value = metrics.registry.get_sample_value
    assert value("costops_sink_rows_written_total", {"table": "usage_costs"}) == 30
    assert value("costops_sink_duplicates_dropped_total") == 5
    assert value("costops_sink_batch_rows_count", {"table": "usage_costs"}) == 1
    assert value("costops_sink_batch_rows_sum", {"table": "usage_costs"}) == 30
    assert value("costops_sink_batch_rows_bucket", {"table": "usage_costs", "le": "10.0"}) == 0
    assert value("costops_sink_batch_rows_bucket", {"table": "usage_costs", "le": "100.0"}) == 1
    assert value("costops_sink_flush_seconds_count") == 2  # usage_costs, rollup_marks
