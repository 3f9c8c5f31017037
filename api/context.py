"""What the API's routes share, built once in the lifespan and passed through ``app.state``."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Literal

from llm_cost_ops.metrics import PipelineMetrics
from llm_cost_ops.producer import UsageProducer
from llm_cost_ops.settings import Settings
from schemas.provider import allowed_providers
from sinks.queries import CostQueries
from sinks.sink import UsageSink
from sinks.store import ClickHouseStore

Role = Literal["api", "sink", "all"]
"""``api`` ingests and queries, ``sink`` writes ClickHouse, ``all`` both (embedded mode,
where one process must own the chDB data path)."""


@dataclass
class ApiContext:
    settings: Settings
    role: Role
    metrics: PipelineMetrics
    store: ClickHouseStore
    producer: UsageProducer | None = None
    sink: UsageSink | None = None
    sink_task: asyncio.Task[None] | None = None
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    fatal: str | None = None
    """Why the process is shutting itself down, if it is (set when the sink dies)."""

    @property
    def queries(self) -> CostQueries:
        return CostQueries(self.store)

    @property
    def providers(self) -> frozenset[str]:
        return allowed_providers(self.settings.custom_providers)
