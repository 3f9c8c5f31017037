"""The hourly rollup and deletes on a real engine (chDB): after late events, a replayed
duplicate, a reprice and a delete, the rollup-backed answers equal the base table's exactly;
DELETE /api/v1/usage/{id} is scoped, audited and survives replays."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from access_keys import admin_authenticator
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from api.auth import permit_by_method
from api.errors import register_error_handlers
from api.routes import costs, usage
from llm_cost_ops.errors import NotFoundError
from llm_cost_ops.settings import Settings
from schemas.analytics import SeriesParams
from schemas.auth import RoleInput
from schemas.columns import millis, table_from_events
from schemas.control import Actor
from schemas.query import AggregateParams, CostFilterParams
from schemas.usage import UsageEvent
from sinks.access_store import AccessStore
from sinks.analytics_queries import AnalyticsQueries
from sinks.control_store import ControlStore
from sinks.deletion import UsageDeleter
from sinks.queries import CostQueries
from sinks.rollup import RollupRefresher, dirty_hours, mark_hours
from sinks.rollup_queries import eligible, rollup_source
from sinks.store import ClickHouseStore
from sinks.trend_queries import TrendQueries
from streams.pricing import PriceCatalog, Pricer
from streams.reprice import reprice

Event = Callable[..., UsageEvent]
CATALOG = PriceCatalog()
T0 = datetime(2025, 3, 1, tzinfo=UTC)


def priced(events: list[UsageEvent], at_ms: int | None = None, currency: str | None = None) -> pa.Table:
    table = CATALOG.price(table_from_events(events), at_ms if at_ms is not None else millis(datetime.now(UTC)))
    if currency is not None:
        index = table.schema.get_field_index("currency")
        field = table.schema.field(index)
        table = table.set_column(index, field, pa.array([currency] * len(events)).cast(field.type))
    return table


def write(store: ClickHouseStore, table: pa.Table) -> None:
    """What the sink and reprice do: the rows, then their hours marked."""
    store.insert_arrow("usage_costs", table)
    mark_hours(store, table)


def answers(store: ClickHouseStore, rollups: bool) -> list[Any]:
    """Every rollup-capable answer, over ranges aligned and not, zones whole-hour and not."""
    cost = CostQueries(store, rollups)
    analytics = AnalyticsQueries(store, rollups)
    trends = TrendQueries(store, rollups)
    ranges = [
        CostFilterParams(),
        CostFilterParams(organization_id="org-a", start_date=T0, end_date=T0 + timedelta(days=3)),
        CostFilterParams(start_date=T0 + timedelta(minutes=30), end_date=T0 + timedelta(days=1, minutes=75)),
        CostFilterParams(organization_id="org-b", provider="openai"),
        CostFilterParams(currency="EUR", project_id="p1"),
    ]
    out: list[Any] = []
    for filters in ranges:
        out.append(cost.summary(filters))
        for granularity in (None, "hour", "day"):
            for group_by in ((), ("provider", "model"), ("project_id",)):
                agg = AggregateParams(group_by=group_by, granularity=granularity)  # type: ignore[arg-type]
                out.append(cost.aggregate(filters, agg))
        series = SeriesParams(granularity="day", timezone="UTC", limit=3)
        out += [analytics.usage(filters, series), analytics.costs(filters, series)]
        out += [analytics.providers(filters), analytics.models(filters)]
    zoned = CostFilterParams(start_date=T0, end_date=T0 + timedelta(days=2))
    for zone in ("Europe/Paris", "Asia/Kolkata"):
        out.append(cost.aggregate(zoned, AggregateParams(granularity="day", timezone=zone)))
        out.append(analytics.costs(zoned, SeriesParams(granularity="day", timezone=zone)))
    out.append(trends.trends(zoned, SeriesParams(granularity="hour")))
    out.append(trends.trends(zoned, SeriesParams(granularity="day", timezone="Europe/Paris")))
    return [answer.model_dump() for answer in out]


def assert_same(store: ClickHouseStore) -> None:
    base, rolled = answers(store, False), answers(store, True)
    for expected, actual in zip(base, rolled, strict=True):
        assert actual == expected


@pytest.fixture
def control(tmp_path: Path) -> Iterator[ControlStore]:
    store = ControlStore.open(f"sqlite:///{tmp_path / 'control.db'}")
    yield store
    store.close()


def spread(usage_event: Event, count: int, start: datetime, org: str = "org-a") -> list[UsageEvent]:
    models = [("openai", "gpt-4o"), ("openai", "gpt-4o-mini"), ("anthropic", "claude-3-5-sonnet-20241022"),
              ("openai", "no-such-model")]  # fmt: skip
    events = []
    for i in range(count):
        provider, model = models[i % len(models)]
        events.append(
            usage_event(
                organization_id=org,
                provider=provider,
                model=model,
                project_id=f"p{i % 3}" if i % 5 else None,
                timestamp=(start + timedelta(minutes=37 * i)).isoformat(),
                latency_ms=None if i % 4 == 0 else 50 + 7 * i,
                prompt_tokens=100 + i,
                completion_tokens=20 + i % 13,
            )
        )
    return events


def test_rollup_answers_equal_the_base_table_through_late_events_replays_reprices_and_deletes(
    store: ClickHouseStore, control: ControlStore, usage_event: Event
) -> None:
    refresher = RollupRefresher(store)
    a = spread(usage_event, 120, T0)
    b = spread(usage_event, 60, T0 + timedelta(hours=5), org="org-b")
    write(store, priced(a))
    write(store, priced(b, currency="EUR"))
    assert_same(store)  # every hour dirty: read from usage_costs
    assert refresher.refresh() > 0
    assert dirty_hours(store, None, None, None) == []
    source = rollup_source(store, CostFilterParams(organization_id="org-a"))
    assert source is not None and "UNION ALL" not in source.sql  # all from the rollup
    assert_same(store)

    # Late events, into hours already rolled up.
    late = spread(usage_event, 10, T0 + timedelta(hours=2), org="org-a")
    write(store, priced(late))
    assert len(dirty_hours(store, "org-a", None, None)) > 0
    assert_same(store)
    refresher.refresh()
    assert_same(store)

    # A replayed duplicate (the same priced rows again).
    write(store, priced(a[:30]))
    assert_same(store)
    refresher.refresh()
    assert_same(store)

    # A reprice: newer versions of some rows, one moved to another currency (its old group
    # must vanish from the rollup, not linger).
    later = millis(datetime.now(UTC)) + 60_000
    write(store, priced(a[30:40], at_ms=later, currency="GBP"))
    refresher.refresh()
    assert_same(store)

    # Deletes, then the deleted events replayed (older and newer versions): they stay deleted.
    deleter = UsageDeleter(store, control)
    scope = CostFilterParams(organization_id="org-a")
    alone = usage_event(organization_id="org-a", timestamp=(T0 + timedelta(days=10)).isoformat(), model="gpt-4o")
    write(store, priced([alone]))
    refresher.refresh()
    for event in (a[0], a[31], alone):  # alone: the only event of its hour, so its groups must vanish
        deleter.delete(event.id, scope, Actor("tester"))
    assert_same(store)
    refresher.refresh()
    assert_same(store)
    write(store, priced([a[0], alone]))
    write(store, priced([a[31], alone], at_ms=later + 60_000))
    refresher.refresh()
    assert_same(store)
    # `cost-ops reprice` over everything: it marks what it rewrote, and never sees the deleted.
    assert reprice(store, Pricer(CATALOG), T0, T0 + timedelta(days=11), "org-a").events == 120 + 10 - 2
    assert_same(store)
    refresher.refresh()
    assert_same(store)
    cost = CostQueries(store, True)
    assert cost.usage(a[0].id, scope) is None and cost.usage(alone.id, scope) is None
    everything = cost.summary(CostFilterParams(organization_id="org-a"))
    assert everything.total_requests == 120 + 10 - 2


def test_what_the_rollup_cannot_answer_reads_the_base_table() -> None:
    assert eligible(CostFilterParams())
    assert not eligible(CostFilterParams(user_id="u1"))
    assert not eligible(CostFilterParams(tags=("prod",)))
    assert not eligible(CostFilterParams(metadata={"team": "x"}))
    assert not eligible(CostFilterParams(), ("tag",))
    assert not eligible(CostFilterParams(), (), "minute")
    window = CostFilterParams(start_date=T0, end_date=T0 + timedelta(days=2))
    assert eligible(window, (), "day", "Europe/Paris")
    assert not eligible(window, (), "day", "Asia/Kolkata")  # +05:30
    assert not eligible(CostFilterParams(), (), "day", "Europe/Paris")  # unbounded: offsets unknown


# --- DELETE /api/v1/usage/{id} --------------------------------------------------------------


@dataclass
class DeleteContext:
    store: ClickHouseStore
    settings: Settings
    control: ControlStore

    @property
    def queries(self) -> CostQueries:
        return CostQueries(self.store, True)


def test_delete_usage_is_scoped_audited_and_survives_replays(
    store: ClickHouseStore, control: ControlStore, usage_event: Event, tmp_path: Path
) -> None:
    app = FastAPI()
    register_error_handlers(app)
    app.include_router(
        usage.router, dependencies=[Depends(permit_by_method("read:costs", "write:costs", "delete:costs"))]
    )
    app.include_router(costs.router, dependencies=[Depends(permit_by_method("read:costs", "read:costs"))])
    settings = Settings(data_dir=tmp_path)  # type: ignore[call-arg]
    app.state.context = DeleteContext(store, settings, control)
    app.state.authenticator, admin = admin_authenticator(control, settings)
    access = AccessStore(control)
    actor = Actor("test")
    from schemas.auth import OrganizationInput

    for org in ("org-a", "org-b"):
        access.create_organization(OrganizationInput(id=org, name=org), actor)
    access.create_role(RoleInput(name="deleter", permissions=["read:costs", "delete:costs"]), actor)
    deleter_a = access.create_key("a", "org-a", "deleter", actor).key
    deleter_b = access.create_key("b", "org-b", "deleter", actor).key
    developer_a = access.create_key("dev", "org-a", "developer", actor).key

    mine = usage_event(organization_id="org-a", timestamp=T0.isoformat())
    other = usage_event(organization_id="org-a", timestamp=T0.isoformat())
    write(store, priced([mine, other]))
    RollupRefresher(store).refresh()

    with TestClient(app) as client:

        def call(method: str, path: str, key: str, **params: Any) -> Any:
            return client.request(method, path, headers={"X-API-Key": key}, params=params)

        assert call("DELETE", f"/api/v1/usage/{mine.id}", developer_a).status_code == 403  # no delete:costs
        assert call("DELETE", f"/api/v1/usage/{mine.id}", deleter_b).status_code == 404  # another organization's
        assert call("DELETE", "/api/v1/usage/no-such-id", deleter_a).status_code == 404
        assert call("DELETE", f"/api/v1/usage/{mine.id}", deleter_a).status_code == 204
        assert call("DELETE", f"/api/v1/usage/{mine.id}", deleter_a).status_code == 404  # already gone
        assert call("GET", f"/api/v1/usage/{mine.id}", admin).status_code == 404
        listed = call("GET", "/api/v1/usage", admin).json()
        assert [r["id"] for r in listed["data"]] == [other.id]
        summary = call("GET", "/api/v1/costs/summary", admin, start_date="2025-03-01", end_date="2025-03-02").json()
        assert summary["total_requests"] == 1
        assert Decimal(summary["total_cost"]) == priced([other]).column("total_cost")[0].as_py()

        # Replayed from Kafka later, priced again (newer priced_at) or as it was: still deleted.
        write(store, priced([mine]))
        write(store, priced([mine], at_ms=millis(datetime.now(UTC)) + 3_600_000))
        assert call("GET", f"/api/v1/usage/{mine.id}", admin).status_code == 404
        summary = call("GET", "/api/v1/costs/summary", admin, start_date="2025-03-01", end_date="2025-03-02").json()
        assert summary["total_requests"] == 1

    (entry,) = control.history(mine.id)
    assert (entry.action, entry.entity_type, entry.organization_id) == ("delete", "usage", "org-a")
    assert entry.before is not None and entry.before["id"] == mine.id and entry.after is None
    with pytest.raises(NotFoundError):
        UsageDeleter(store, control).delete(mine.id, CostFilterParams(organization_id="org-a"), actor)
