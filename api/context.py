"""What the API's routes share, built once in the lifespan and passed through ``app.state``."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from api.auth import Authenticator
from api.budget_view import HardLimits
from api.spend_board import SpendBoard
from llm_cost_ops.errors import UnavailableError
from llm_cost_ops.metrics import PipelineMetrics
from llm_cost_ops.producer import UsageProducer
from llm_cost_ops.settings import Settings
from schemas.provider import allowed_providers
from sinks.access_store import AccessStore
from sinks.budget_store import BudgetStore
from sinks.control_store import ControlStore
from sinks.insight_queries import InsightQueries
from sinks.queries import CostQueries
from sinks.sink import UsageSink
from sinks.store import ClickHouseStore
from sinks.webhook_store import WebhookStore
from streams.pricing import PriceCatalog

if TYPE_CHECKING:
    from api.report_runner import ReportRunner

Role = Literal["api", "sink", "all"]
"""``api`` ingests and queries, ``sink`` writes ClickHouse, ``all`` both (embedded mode,
where one process must own the chDB data path)."""

ControlChanged = Callable[[], Awaitable[None]]
"""Awaited by the pricing and budget routes after every committed change. The change is stored by then,
so an implementation should not raise when announcing it fails (the request would report a
failure for a change that happened); it catches up later from :meth:`ControlStore.version`."""


async def _nothing_to_announce() -> None:
    return None


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
    control: ControlStore | None = None
    """Pricing rules and their audit log (roles ``api``/``all``)."""
    control_changed: ControlChanged = _nothing_to_announce
    catalog: PriceCatalog = field(default_factory=PriceCatalog)
    """List prices, for repricing stored events (the workers price live ones)."""
    board: SpendBoard | None = None
    """Budget spend as the workers count it (roles ``api``/``all``)."""
    limits: HardLimits = field(default_factory=HardLimits)
    """The hard budgets, as the control topic last said."""
    authenticator: Authenticator | None = None
    """Keys, tokens and rate limits (roles ``api``/``all``)."""
    reporter: ReportRunner | None = None
    """Generates reports in the background (roles ``api``/``all``)."""

    @property
    def access(self) -> AccessStore:
        if self.control is None:
            raise UnavailableError("API keys and users are not available on this process", retry_after=5)
        return AccessStore(self.control)

    @property
    def queries(self) -> CostQueries:
        return CostQueries(self.store, self.settings.clickhouse.rollups)

    @property
    def webhooks(self) -> WebhookStore:
        if self.control is None:
            raise UnavailableError("webhooks are not available on this process", retry_after=5)
        return WebhookStore(self.control)

    @property
    def budgets(self) -> BudgetStore:
        if self.control is None:
            raise UnavailableError("budgets are not available on this process", retry_after=5)
        return BudgetStore(self.control)

    @property
    def spend(self) -> SpendBoard:
        if self.board is None:
            raise UnavailableError("budget spend is not available on this process", retry_after=5)
        return self.board

    @property
    def alerts(self) -> InsightQueries:
        return InsightQueries(self.store)

    @property
    def providers(self) -> frozenset[str]:
        return allowed_providers(self.settings.custom_providers)
