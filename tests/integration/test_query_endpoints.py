"""The read-only query side (filters, aggregate, trends, analytics, usage listing, cursor
paging) on a real engine (chDB), through the routes where the HTTP shape matters."""

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
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.errors import register_error_handlers
from api.routes import analytics, costs, usage
from llm_cost_ops.settings import Settings
from schemas.columns import millis, table_from_events
from schemas.query import AggregateParams, CostFilterParams, PageParams
from schemas.usage import UsageEvent
from sinks.control_store import ControlStore
from sinks.queries import CostQueries
from sinks.rollup import mark_hours
from sinks.store import ClickHouseStore
from streams.pricing import PriceCatalog

Event = Callable[..., UsageEvent]
CATALOG = PriceCatalog()


@dataclass
class QueryContext:
    """What the query routes read from ``app.state.context``."""

    store: ClickHouseStore
    settings: Settings

    @property
    def queries(self) -> CostQueries:
        return CostQueries(self.store)


@pytest.fixture
def client(store: ClickHouseStore, tmp_path: Path) -> Iterator[TestClient]:
    app = FastAPI()
    register_error_handlers(app)
    for module in (usage, costs, analytics):
        app.include_router(module.router)
    settings = Settings(data_dir=tmp_path, api={"max_per_page": 50})  # type: ignore[arg-type]
    app.state.context = QueryContext(store, settings)
    control = ControlStore.open(f"sqlite:///{tmp_path / 'control.db'}")
    app.state.authenticator, secret = admin_authenticator(control, settings)
    with TestClient(app, headers={"X-API-Key": secret}) as test_client:
        yield test_client
    control.close()


def priced(events: list[UsageEvent], currency: str | None = None) -> pa.Table:
    table = CATALOG.price(table_from_events(events), millis(datetime.now(UTC)))
    if currency is not None:
        index = table.schema.get_field_index("currency")
        field = table.schema.field(index)
        table = table.set_column(index, field, pa.array([currency] * len(events)).cast(field.type))
    return table


def insert(store: ClickHouseStore, events: list[UsageEvent], currency: str | None = None) -> None:
    """Write like the sink: the rows, then their hours marked for the rollup (the analytics and
    trends routes read it: the settings leave ``clickhouse.rollups`` on)."""
    table = priced(events, currency)
    store.insert_arrow("usage_costs", table)
    mark_hours(store, table)


def cost(event: UsageEvent) -> Decimal:
    value = priced([event]).column("total_cost")[0].as_py()
    assert isinstance(value, Decimal)
    return value


def get(client: TestClient, path: str, **params: Any) -> Any:
    response = client.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


# --- filters ----------------------------------------------------------------------------------


def test_user_tag_and_metadata_filters(store: ClickHouseStore, client: TestClient, usage_event: Event) -> None:
    a = usage_event(user_id="u1", tags=["prod", "api"], metadata={"team": "customer-support", "env": "prod"})
    b = usage_event(user_id="u1", tags=["prod"], metadata={"team": "research"})
    c = usage_event(user_id="u2", tags=["api", "prod", "batch"], metadata={"team": "customer-support"})
    d = usage_event(user_id="u2", tags=[], metadata={})
    insert(store, [a, b, c, d])

    def ids(**params: Any) -> set[str]:
        return {r["id"] for r in get(client, "/api/v1/costs", **params)["data"]}

    assert ids(user_id="u1") == {a.id, b.id}
    assert ids(tags="prod,api") == {a.id, c.id}
    assert ids(tags=["prod", "batch"]) == {c.id}
    assert ids(**{"metadata.team": "customer-support"}) == {a.id, c.id}  # the FAQ's example
    assert ids(**{"metadata.team": "customer-support", "metadata.env": "prod"}) == {a.id}
    assert ids(**{"metadata.team": "nobody"}) == set()
    assert ids(user_id="u2", tags="api", **{"metadata.team": "customer-support"}) == {c.id}
    # The same filters reach every query: usage listing, aggregate, summary, analytics.
    assert {r["id"] for r in get(client, "/api/v1/usage", tags="api")["data"]} == {a.id, c.id}
    aggregate = get(client, "/api/v1/costs/aggregate", **{"metadata.team": "customer-support"})
    assert aggregate["data"][0]["request_count"] == 2
    assert get(client, "/api/v1/costs/summary", user_id="u2")["total_requests"] == 2
    assert get(client, "/api/v1/analytics/usage", tags="batch")["totals"]["requests"] == 1


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"metadata.bad key": "x"}, "metadata.bad key"),
        ({"metadata.": "x"}, "metadata."),
        ({"metadata.team": ""}, "metadata.team"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"cursor": "W10"}, "cursor"),
    ],
)
def test_bad_filter_parameters_are_named(client: TestClient, params: dict[str, str], field: str) -> None:
    for path in ("/api/v1/costs", "/api/v1/usage"):
        response = client.get(path, params=params)
        assert response.status_code == 422
        assert field in response.json()["error"]["field_errors"]


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/api/v1/costs/aggregate", {"timezone": "Mars/Olympus"}, "timezone"),
        ("/api/v1/costs/aggregate", {"group_by": "provider,secret"}, "group_by"),
        ("/api/v1/costs/aggregate", {"group_by": "metadata.a b"}, "group_by"),
        ("/api/v1/costs/aggregate", {"granularity": "year"}, "granularity"),
        (
            "/api/v1/costs/aggregate",
            {"granularity": "minute", "start_date": "2020-01-01", "end_date": "2025-01-01"},
            "granularity",
        ),
        ("/api/v1/costs/trends", {"start_date": "2025-01-01"}, "end_date"),
        ("/api/v1/analytics/costs", {"timezone": "nowhere"}, "timezone"),
        ("/api/v1/analytics/usage", {"metadata.x y": "1"}, "metadata.x y"),
    ],
)
def test_bad_query_parameters_are_named(client: TestClient, path: str, params: dict[str, str], field: str) -> None:
    response = client.get(path, params=params)
    assert response.status_code == 422, response.text
    assert field in response.json()["error"]["field_errors"]


# --- aggregate: time zones, gap filling, tag and metadata groups ---------------------------


def test_periods_start_at_local_boundaries(store: ClickHouseStore, client: TestClient, usage_event: Event) -> None:
    insert(store, [usage_event(timestamp="2025-01-15T23:30:00Z")])  # a Wednesday

    def period(granularity: str, timezone: str) -> str:
        body = get(client, "/api/v1/costs/aggregate", granularity=granularity, timezone=timezone)
        assert body["timezone"] == timezone and len(body["data"]) == 1
        value: str = body["data"][0]["period_start"]
        return value

    assert datetime.fromisoformat(period("day", "UTC")) == datetime(2025, 1, 15, tzinfo=UTC)
    assert period("day", "Asia/Tokyo") == "2025-01-16T00:00:00+09:00"  # 08:30 on the 16th in Tokyo
    assert period("day", "America/New_York") == "2025-01-15T00:00:00-05:00"
    assert period("hour", "Asia/Kolkata") == "2025-01-16T05:00:00+05:30"
    assert period("minute", "Asia/Kolkata") == "2025-01-16T05:00:00+05:30"
    assert period("week", "Asia/Tokyo") == "2025-01-13T00:00:00+09:00"  # Monday
    assert period("month", "Europe/Paris") == "2025-01-01T00:00:00+01:00"


def test_gaps_are_filled_per_group_not_invented(store: ClickHouseStore, client: TestClient, usage_event: Event) -> None:
    first = usage_event(timestamp="2025-01-01T10:00:00Z", provider="openai", model="gpt-4o")
    third = usage_event(timestamp="2025-01-03T10:00:00Z", provider="anthropic", model="claude-3-5-sonnet-20241022")
    insert(store, [first, third])
    window = {"start_date": "2025-01-01", "end_date": "2025-01-04", "granularity": "day"}
    body = get(client, "/api/v1/costs/aggregate", **window)
    assert [(g["period_start"][:10], g["request_count"]) for g in body["data"]] == [
        ("2025-01-01", 1), ("2025-01-02", 0), ("2025-01-03", 1), ("2025-01-04", 0),
    ]  # fmt: skip
    assert body["data"][1]["total_cost"] == "0.0000000000"
    grouped = get(client, "/api/v1/costs/aggregate", group_by="provider", **window)["data"]
    assert len(grouped) == 8  # 4 days x the 2 providers that have events
    assert {(g["period_start"][:10], g["provider"]) for g in grouped if g["request_count"]} == {
        ("2025-01-01", "openai"), ("2025-01-03", "anthropic"),
    }  # fmt: skip
    assert sum(Decimal(g["total_cost"]) for g in grouped) == cost(first) + cost(third)
    # In Tokyo the same range is other days: the range's own bounds stay UTC instants.
    tokyo = get(client, "/api/v1/costs/aggregate", timezone="Asia/Tokyo", **window)["data"]
    assert [g["period_start"] for g in tokyo][:2] == ["2025-01-01T00:00:00+09:00", "2025-01-02T00:00:00+09:00"]
    assert sum(g["request_count"] for g in tokyo) == 2
    unfilled = get(client, "/api/v1/costs/aggregate", fill_gaps="false", **window)["data"]
    assert [g["request_count"] for g in unfilled] == [1, 1]
    # No events: a grouped answer invents no group; an ungrouped one is a zero series.
    empty = {"start_date": "2024-01-01", "end_date": "2024-01-02", "granularity": "day"}
    assert get(client, "/api/v1/costs/aggregate", group_by="model", **empty)["data"] == []
    zeros = get(client, "/api/v1/costs/aggregate", **empty)["data"]
    assert [(g["currency"], g["request_count"]) for g in zeros] == [("USD", 0), ("USD", 0)]


def test_group_by_tag_and_metadata(store: ClickHouseStore, client: TestClient, usage_event: Event) -> None:
    both = usage_event(tags=["a", "b"], metadata={"team": "x"})
    only_a = usage_event(tags=["a"], metadata={"team": "y"})
    untagged = usage_event(tags=[], metadata={})
    insert(store, [both, only_a, untagged])
    by_tag = {g["tag"]: g for g in get(client, "/api/v1/costs/aggregate", group_by="tag")["data"]}
    assert {tag: g["request_count"] for tag, g in by_tag.items()} == {"a": 2, "b": 1, None: 1}
    assert Decimal(by_tag["b"]["total_cost"]) == cost(both)  # the two-tag event counts in both groups
    assert Decimal(by_tag["a"]["total_cost"]) == cost(both) + cost(only_a)
    by_team = get(client, "/api/v1/costs/aggregate", group_by="metadata.team,provider")["data"]
    assert {(g["metadata.team"], g["provider"], g["request_count"]) for g in by_team} == {
        ("x", "openai", 1), ("y", "openai", 1), (None, "openai", 1),
    }  # fmt: skip
    filtered = get(client, "/api/v1/costs/aggregate", group_by="tag", tags="b")["data"]
    assert {g["tag"]: g["request_count"] for g in filtered} == {"a": 1, "b": 1}


# --- trends -----------------------------------------------------------------------------------


def test_trends_period_over_period(store: ClickHouseStore, client: TestClient, usage_event: Event) -> None:
    def day(d: int, n: int) -> list[UsageEvent]:
        return [usage_event(timestamp=f"2025-01-{d:02d}T12:00:00Z", prompt_tokens=1000, completion_tokens=0,
                            cached_tokens=0) for _ in range(n)]  # fmt: skip

    # Previous range: Jan 1-3 (2 requests on Jan 3); the range: Jan 4-6 (2, 0, 3 requests).
    events = day(3, 2) + day(4, 2) + day(6, 3)
    insert(store, events)
    unit = cost(events[0])
    body = get(client, "/api/v1/costs/trends", start_date="2025-01-04", end_date="2025-01-06")
    assert body["currency"] == "USD" and body["granularity"] == "day"
    points = [(p["period_start"][:10], Decimal(p["total_cost"]), p["requests"]) for p in body["data"]]
    assert points == [("2025-01-04", 2 * unit, 2), ("2025-01-05", 0, 0), ("2025-01-06", 3 * unit, 3)]
    assert [Decimal(p["change"]) for p in body["data"]] == [0, -2 * unit, 3 * unit]
    assert [p["change_percent"] for p in body["data"]] == [0.0, -100.0, None]  # null: previous was zero
    overall = body["overall"]
    assert Decimal(overall["current"]["total_cost"]) == 5 * unit
    assert Decimal(overall["previous"]["total_cost"]) == 2 * unit
    assert overall["previous"]["start"].startswith("2025-01-01")
    assert Decimal(overall["change"]) == 3 * unit and overall["change_percent"] == 150.0
    assert overall["requests_change"] == 3 and overall["tokens_change"] == 3000


# --- analytics --------------------------------------------------------------------------------


def test_analytics_endpoints(store: ClickHouseStore, client: TestClient, usage_event: Event) -> None:
    openai = [usage_event(timestamp="2025-01-01T10:00:00Z", latency_ms=ms, project_id="p1") for ms in (100, 300)]
    claude = [usage_event(timestamp="2025-01-02T10:00:00Z", provider="anthropic", model="claude-3-5-sonnet-20241022",
                          latency_ms=None, project_id="p2")]  # fmt: skip
    unknown = [usage_event(timestamp="2025-01-02T11:00:00Z", model="no-such-model", project_id="p1")]
    euro = [usage_event(timestamp="2025-01-01T12:00:00Z", project_id="p3")]
    insert(store, openai + claude + unknown)
    insert(store, euro, currency="EUR")
    window = {"start_date": "2025-01-01", "end_date": "2025-01-03"}

    use = get(client, "/api/v1/analytics/usage", **window)
    assert use["totals"]["requests"] == 5
    assert use["totals"]["total_tokens"] == sum(e.tokens_total for e in openai + claude + unknown + euro)
    assert [p["requests"] for p in use["series"]] == [3, 2, 0]  # Jan 3 filled with zeros
    assert {p["provider"]: p["requests"] for p in use["by_provider"]} == {"openai": 4, "anthropic": 1}

    spend = get(client, "/api/v1/analytics/costs", limit=1, **window)
    by_currency = {c["currency"]: c for c in spend["currencies"]}
    assert set(by_currency) == {"EUR", "USD"}  # never added together
    usd = by_currency["USD"]
    assert Decimal(usd["total_cost"]) == sum(cost(e) for e in openai + claude)
    assert (usd["requests"], usd["unpriced_requests"]) == (4, 1)
    assert [Decimal(p["total_cost"]) for p in usd["series"]] == [sum(cost(e) for e in openai), cost(claude[0]), 0]
    assert len(usd["top_projects"]) == 1 and len(usd["top_models"]) == 1  # limit
    top = max((("p1", sum(cost(e) for e in openai)), ("p2", cost(claude[0]))), key=lambda x: x[1])
    assert (usd["top_projects"][0]["name"], Decimal(usd["top_projects"][0]["total_cost"])) == top
    assert Decimal(by_currency["EUR"]["total_cost"]) == cost(euro[0])

    compared = get(client, "/api/v1/analytics/providers", **window)["data"]
    providers = {(p["provider"], p["currency"]): p for p in compared}
    oa = providers["openai", "USD"]
    assert (oa["requests"], oa["unpriced_requests"]) == (3, 1)
    assert oa["avg_latency_ms"] == 200.0
    assert Decimal(oa["avg_cost_per_request"]) == (sum(cost(e) for e in openai) / 2).quantize(Decimal("1E-10"))
    assert providers["anthropic", "USD"]["avg_latency_ms"] is None
    assert ("openai", "EUR") in providers

    models = {(m["model"], m["currency"]): m for m in get(client, "/api/v1/analytics/models", **window)["data"]}
    gpt = models["gpt-4o", "USD"]
    tokens = sum(e.tokens_total for e in openai)
    expected = (sum(cost(e) for e in openai) * 1000 / tokens).quantize(Decimal("1E-10"))
    assert Decimal(gpt["cost_per_1k_tokens"]) == expected
    assert gpt["avg_latency_ms"] == 200.0 and 100 <= gpt["p95_latency_ms"] <= 300
    assert models["no-such-model", "USD"]["cost_per_1k_tokens"] is None
    assert models["no-such-model", "USD"]["total_cost"] is None


# --- usage records ----------------------------------------------------------------------------


def test_usage_list_and_record(store: ClickHouseStore, client: TestClient, usage_event: Event) -> None:
    mine = usage_event(organization_id="org-a", latency_ms=250, tags=["x"], metadata={"k": "v"})
    theirs = usage_event(organization_id="org-b")
    insert(store, [mine, theirs])
    page = get(client, "/api/v1/usage", organization_id="org-a")
    assert page["total"] == 1 and not page["has_more"] and page["next_cursor"] is None
    record = get(client, f"/api/v1/usage/{mine.id}")
    assert record == page["data"][0]
    assert (record["latency_ms"], record["tags"], record["metadata"]) == (250, ["x"], {"k": "v"})
    assert Decimal(record["total_cost"]) == cost(mine)
    # Scoped by the filters: another organization's record is not found.
    response = client.get(f"/api/v1/usage/{theirs.id}", params={"organization_id": "org-a"})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NOT_FOUND" and response.json()["error"]["message"]
    assert client.get(f"/api/v1/costs/{theirs.id}", params={"organization_id": "org-a"}).status_code == 404
    assert client.get("/api/v1/usage/no-such-id").status_code == 404
    assert get(client, "/api/v1/usage/stats")["events"] == 2  # /stats is not an id


# --- cursor paging ----------------------------------------------------------------------------


def test_cursor_walk_sees_every_row_once_while_rows_arrive(
    store: ClickHouseStore, client: TestClient, usage_event: Event
) -> None:
    base = datetime(2025, 1, 15, 10, tzinfo=UTC)
    # Three events per timestamp and two organizations: the tie-breaks are exercised.
    original = [
        usage_event(timestamp=(base + timedelta(seconds=i // 3)).isoformat(), organization_id=f"org-{i % 2}")
        for i in range(25)
    ]
    insert(store, original)
    seen: list[str] = []
    late: set[str] = set()
    params: dict[str, Any] = {}
    for walk, path in enumerate(("/api/v1/costs", "/api/v1/usage"), start=1):
        # Every row there when the walk starts (the first walk's arrivals too, for the second).
        present = {r["id"] for r in get(client, path, per_page=50)["data"]}
        assert {e.id for e in original} <= present
        seen, late, params = [], set(), {"per_page": 4}
        for step in range(100):
            body = get(client, path, **params)
            seen += [r["id"] for r in body["data"]]
            assert body["has_more"] == (body["next_cursor"] is not None)
            if not body["has_more"]:
                break
            params = {"per_page": 4, "cursor": body["next_cursor"]}
            # Meanwhile: a newer event than any listed (sorts before the cursor) and an older one (after it).
            shift = timedelta(days=walk, seconds=step)
            newer = usage_event(timestamp=(base + shift).isoformat(), organization_id="org-0")
            older = usage_event(timestamp=(base - shift).isoformat(), organization_id="org-1")
            insert(store, [newer, older])
            late.add(older.id)
        assert len(seen) == len(set(seen)), "a row was listed twice"
        assert present <= set(seen)
        assert set(seen) - present == late  # the older arrivals, once each; the newer ones not at all


def test_offset_pages_and_cursor_agree(store: ClickHouseStore, client: TestClient, usage_event: Event) -> None:
    insert(store, [usage_event() for _ in range(11)])
    offset = [get(client, "/api/v1/costs", page=p, per_page=5) for p in (1, 2, 3)]
    assert [(len(b["data"]), b["has_more"]) for b in offset] == [(5, True), (5, True), (1, False)]
    second = get(client, "/api/v1/costs", per_page=5, cursor=offset[0]["next_cursor"])
    assert second["data"] == offset[1]["data"] and second["total"] == 11
    assert get(client, "/api/v1/costs", per_page=500)["per_page"] == 50  # capped by settings
    response = client.get("/api/v1/costs", params={"page": 2, "cursor": offset[0]["next_cursor"]})
    assert response.status_code == 422 and "page" in response.json()["error"]["field_errors"]


# --- property: aggregate totals are the sum of the listed costs -------------------------------


@pytest.fixture
def mixed(store: ClickHouseStore, usage_event: Event) -> CostQueries:
    events = [
        usage_event(
            timestamp=f"2025-01-{1 + i % 5:02d}T{i % 24:02d}:00:00Z",
            provider=("openai", "anthropic")[i % 2],
            model=("gpt-4o", "claude-3-5-sonnet-20241022")[i % 2] if i % 7 else "no-such-model",
            user_id=f"u{i % 3}",
            tags=[t for t, on in (("a", i % 2), ("b", i % 3 == 0)) if on],
            metadata={"team": ("x", "y")[i % 2]} if i % 4 else {},
        )
        for i in range(60)
    ]
    insert(store, events[:40])
    insert(store, events[40:], currency="EUR")
    return CostQueries(store)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    provider=st.sampled_from([None, "openai", "anthropic"]),
    user_id=st.sampled_from([None, "u0", "u1", "u2"]),
    tags=st.sampled_from([(), ("a",), ("b",), ("a", "b")]),
    team=st.sampled_from([None, "x", "y"]),
    days=st.tuples(st.integers(1, 5), st.integers(0, 5)),
    group_by=st.sampled_from([(), ("provider",), ("tag",), ("metadata.team", "user_id")]),
)
def test_aggregate_totals_equal_the_listed_costs(
    mixed: CostQueries,
    provider: str | None,
    user_id: str | None,
    tags: tuple[str, ...],
    team: str | None,
    days: tuple[int, int],
    group_by: tuple[str, ...],
) -> None:
    first, length = days
    filters = CostFilterParams.model_validate(
        {
            "provider": provider, "user_id": user_id, "tags": tags, "metadata": {"team": team} if team else {},
            "start_date": f"2025-01-{first:02d}", "end_date": f"2025-01-{min(first + length, 5):02d}",
        }
    )  # fmt: skip
    listed = mixed.list_costs(filters, PageParams(per_page=1000)).data
    expected: dict[str, Decimal] = {}
    for record in listed:
        expected[record.currency] = expected.get(record.currency, Decimal(0)) + (record.total_cost or 0)
    ungrouped = mixed.aggregate(filters, AggregateParams(granularity="day", fill_gaps=True))
    totals: dict[str, Decimal] = {}
    for group in ungrouped.data:
        totals[group.currency] = totals.get(group.currency, Decimal(0)) + (group.total_cost or 0)
    assert totals == {c: v for c, v in expected.items()} or (not listed and set(totals) <= {"USD"})
    assert sum(g.request_count for g in ungrouped.data) == len(listed)
    if "tag" not in group_by:  # tag groups overlap by design; every other grouping partitions
        grouped = mixed.aggregate(filters, AggregateParams(group_by=group_by))
        assert sum(g.request_count for g in grouped.data) == len(listed)
        assert sum((g.total_cost or Decimal(0) for g in grouped.data), Decimal(0)) == sum(expected.values())
