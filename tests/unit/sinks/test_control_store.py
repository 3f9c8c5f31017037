"""The control store (sinks/control_store.py) on a real SQLite file and a real PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, select

from llm_cost_ops.errors import InvalidInputError, NotFoundError
from schemas.control import Actor
from schemas.pricing_rule import PricingRuleInput
from sinks.control_schema import MIGRATIONS, schema_migrations
from sinks.control_store import ControlStore, create_control_engine, database_url

RuleFactory = Callable[..., PricingRuleInput]
JAN_1 = datetime(2025, 1, 1, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def control_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        # A directory that does not exist yet: open() creates it.
        return f"sqlite:///{tmp_path / 'data' / 'control.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def store(control_url: str) -> Iterator[ControlStore]:
    store = ControlStore.open(control_url)
    yield store
    store.close()


@pytest.fixture
def rule() -> RuleFactory:
    """A valid rule input; keywords override fields (``pricing_structure`` replaced whole)."""

    def build(**overrides: Any) -> PricingRuleInput:
        data: dict[str, Any] = {
            "provider": "openai",
            "model": "gpt-4-turbo",
            "pricing_structure": {
                "type": "per_token",
                "input_price_per_million": "10.0",
                "output_price_per_million": "30.0",
                "cached_input_discount": "0.5",
            },
            "currency": "USD",
            "effective_date": "2025-01-01",
        }
        data.update(overrides)
        return PricingRuleInput.parse(data)

    return build


def test_open_migrates_once(control_url: str) -> None:
    ControlStore.open(control_url).close()
    ControlStore.open(control_url).close()  # the second open finds nothing to apply
    engine = create_control_engine(control_url)
    try:
        tables = set(inspect(engine).get_table_names())
        assert {"pricing_rules", "audit_log", "control_schema_migrations"} <= tables
        with engine.connect() as conn:
            assert list(conn.scalars(select(schema_migrations.c.version))) == sorted(MIGRATIONS)
    finally:
        engine.dispose()


def test_create_get_list(store: ControlStore, rule: RuleFactory) -> None:
    created = store.create_rule(rule(description="list price"), Actor("alice"))
    assert created.id.startswith("price_")
    assert created.created_by == "alice"
    assert created.created_at == created.updated_at
    assert store.get_rule(created.id) == created
    assert store.list_rules() == [created]
    assert store.all_rules() == [created]


def test_decimals_round_trip_exactly(store: ControlStore, rule: RuleFactory) -> None:
    tiny, large = Decimal("0.0000000001"), Decimal("123456789.1234567891")
    structure = {"type": "per_token", "input_price_per_million": tiny, "output_price_per_million": large}
    created = store.create_rule(rule(pricing_structure=structure), Actor("test"))
    loaded = store.get_rule(created.id).pricing_structure
    assert loaded.type == "per_token"
    assert (loaded.input_price_per_million, loaded.output_price_per_million) == (tiny, large)
    assert str(loaded.output_price_per_million) == "123456789.1234567891"


def test_tiered_and_per_request_round_trip(store: ControlStore, rule: RuleFactory) -> None:
    tiered = {
        "type": "tiered",
        "tiers": [
            {"threshold": 0, "input_price_per_million": "3", "output_price_per_million": "15"},
            {"threshold": 10**9, "input_price_per_million": "2.5", "output_price_per_million": "12.5"},
        ],
    }
    per_request = {"type": "per_request", "price_per_request": "0.002", "included_tokens": 1000}
    a = store.create_rule(rule(model="claude", pricing_structure=tiered), Actor("test"))
    b = store.create_rule(rule(model="tiny", pricing_structure=per_request), Actor("test"))
    assert store.get_rule(a.id) == a
    assert store.get_rule(b.id) == b


def test_dates_round_trip_as_utc(store: ControlStore, rule: RuleFactory) -> None:
    created = store.create_rule(
        rule(effective_date="2025-03-01T12:30:00+02:00", end_date="2025-04-01T00:00:00Z"), Actor("test")
    )
    loaded = store.get_rule(created.id)
    assert loaded.effective_date == datetime(2025, 3, 1, 10, 30, tzinfo=UTC)
    assert loaded.end_date == datetime(2025, 4, 1, tzinfo=UTC)
    assert loaded.effective_date.utcoffset() == timedelta(0)
    assert loaded.created_at == created.created_at
    assert loaded.created_at.tzinfo is not None


def test_update_replaces_and_keeps_creation(store: ControlStore, rule: RuleFactory) -> None:
    created = store.create_rule(rule(), Actor("alice"))
    structure = {"type": "per_token", "input_price_per_million": "9", "output_price_per_million": "27"}
    updated = store.update_rule(created.id, rule(pricing_structure=structure, end_date="2025-06-01"), Actor("bob"))
    assert updated.id == created.id
    assert (updated.created_at, updated.created_by) == (created.created_at, "alice")
    assert updated.updated_at >= created.updated_at
    assert updated.end_date == datetime(2025, 6, 1, tzinfo=UTC)
    assert updated.pricing_structure.type == "per_token"
    assert updated.pricing_structure.input_price_per_million == Decimal(9)
    assert updated.pricing_structure.cached_input_discount is None  # replaced, not merged
    assert store.get_rule(created.id) == updated


def test_update_may_overlap_its_own_range(store: ControlStore, rule: RuleFactory) -> None:
    created = store.create_rule(rule(), Actor("test"))
    assert store.update_rule(created.id, rule(effective_date="2024-06-01"), Actor("test")).effective_date.year == 2024


def test_delete_returns_the_rule(store: ControlStore, rule: RuleFactory) -> None:
    created = store.create_rule(rule(), Actor("test"))
    assert store.delete_rule(created.id, Actor("test")) == created
    assert store.list_rules() == []
    with pytest.raises(NotFoundError, match=created.id):
        store.get_rule(created.id)


@pytest.mark.parametrize("call", ["get", "update", "delete"])
def test_unknown_rule_not_found(store: ControlStore, rule: RuleFactory, call: str) -> None:
    with pytest.raises(NotFoundError, match="no pricing rule price_missing"):
        if call == "get":
            store.get_rule("price_missing")
        elif call == "update":
            store.update_rule("price_missing", rule(), Actor("test"))
        else:
            store.delete_rule("price_missing", Actor("test"))
    assert store.version() == 0


def test_audit_log_and_version(store: ControlStore, rule: RuleFactory) -> None:
    assert store.version() == 0
    created = store.create_rule(rule(), Actor("alice"))
    v1 = store.version()
    updated = store.update_rule(created.id, rule(end_date="2025-06-01"), Actor("bob"))
    v2 = store.version()
    store.delete_rule(created.id, Actor("carol"))
    v3 = store.version()
    assert 0 < v1 < v2 < v3

    history = store.history(created.id)
    assert [(e.id, e.action, e.actor) for e in history] == [
        (v1, "create", "alice"),
        (v2, "update", "bob"),
        (v3, "delete", "carol"),
    ]
    assert all(e.entity_type == "pricing_rule" and e.entity_id == created.id for e in history)
    create, update, delete = history
    assert create.before is None
    assert create.after == created.model_dump(mode="json")
    assert update.before == created.model_dump(mode="json")
    assert update.after == updated.model_dump(mode="json")
    assert update.after is not None and update.after["end_date"] == "2025-06-01T00:00:00Z"
    assert delete.before == updated.model_dump(mode="json")
    assert delete.after is None
    assert create.at.tzinfo is not None
    assert store.history("price_other") == []


def test_overlap_refused_and_nothing_stored(store: ControlStore, rule: RuleFactory) -> None:
    first = store.create_rule(rule(), Actor("test"))
    version = store.version()
    with pytest.raises(InvalidInputError) as caught:
        store.create_rule(rule(effective_date="2025-06-01"), Actor("test"))
    assert caught.value.message == "invalid pricing: effective_date"
    assert caught.value.field_errors == {
        "effective_date": f"overlaps {first.id} (from 2025-01-01T00:00:00Z to open); set its end_date first"
    }
    assert store.list_rules() == [first]
    assert store.version() == version


def test_overlap_with_a_later_rule_says_where_to_end(store: ControlStore, rule: RuleFactory) -> None:
    later = store.create_rule(rule(effective_date="2025-06-01", end_date="2025-07-01"), Actor("test"))
    with pytest.raises(InvalidInputError) as caught:
        store.create_rule(rule(effective_date="2025-01-01"), Actor("test"))
    assert caught.value.field_errors["effective_date"] == (
        f"overlaps {later.id} (from 2025-06-01T00:00:00Z to 2025-07-01T00:00:00Z); "
        "end this rule by 2025-06-01T00:00:00Z"
    )


def test_update_into_overlap_refused_and_unchanged(store: ControlStore, rule: RuleFactory) -> None:
    first = store.create_rule(rule(end_date="2025-06-01"), Actor("test"))
    second = store.create_rule(rule(effective_date="2025-06-01"), Actor("test"))
    version = store.version()
    with pytest.raises(InvalidInputError, match="effective_date"):
        store.update_rule(first.id, rule(), Actor("test"))  # open-ended again: runs into the second
    assert store.get_rule(first.id) == first
    assert store.get_rule(second.id) == second
    assert store.version() == version


@pytest.mark.parametrize(
    "other",
    [
        {"model": "gpt-4o"},
        {"provider": "azure"},
        {"organization_id": "org-1"},
        {"organization_id": "org-1", "project_id": "proj-1"},
    ],
)
def test_different_keys_do_not_overlap(store: ControlStore, rule: RuleFactory, other: dict[str, str]) -> None:
    store.create_rule(rule(), Actor("test"))
    store.create_rule(rule(**other), Actor("test"))
    assert len(store.list_rules()) == 2


def test_adjacent_ranges_do_not_overlap(store: ControlStore, rule: RuleFactory) -> None:
    store.create_rule(rule(end_date="2025-06-01"), Actor("test"))
    store.create_rule(rule(effective_date="2025-06-01"), Actor("test"))
    assert len(store.list_rules()) == 2


def test_filters_and_active_at(store: ControlStore, rule: RuleFactory) -> None:
    old = store.create_rule(rule(end_date="2025-06-01"), Actor("test"))
    new = store.create_rule(rule(effective_date="2025-06-01"), Actor("test"))
    org = store.create_rule(rule(organization_id="org-1"), Actor("test"))
    other = store.create_rule(rule(provider="anthropic", model="claude"), Actor("test"))

    assert {r.id for r in store.list_rules(provider="OpenAI")} == {old.id, new.id, org.id}
    assert [r.id for r in store.list_rules(model="claude")] == [other.id]
    assert [r.id for r in store.list_rules(organization_id="org-1")] == [org.id]
    assert {r.id for r in store.list_rules(scope="global")} == {old.id, new.id, other.id}
    may = datetime(2025, 5, 31, 23, 59, 59, 999000, tzinfo=UTC)
    june = datetime(2025, 6, 1, tzinfo=UTC)  # the end is exclusive, the start inclusive
    assert {r.id for r in store.list_rules(model="gpt-4-turbo", scope="global", active_at=may)} == {old.id}
    assert {r.id for r in store.list_rules(model="gpt-4-turbo", scope="global", active_at=june)} == {new.id}
    assert store.list_rules(active_at=JAN_1 - timedelta(minutes=1)) == []


def test_concurrent_overlapping_creates_store_one(control_url: str, rule: RuleFactory) -> None:
    # Two stores on one database stand for two processes: their in-process locks are separate,
    # so only the database's own locking keeps the check and the insert together.
    stores = [ControlStore.open(control_url) for _ in range(2)]
    results: list[str] = []
    start = threading.Barrier(8)

    def create(index: int) -> None:
        start.wait()
        try:
            stores[index % 2].create_rule(rule(), Actor(f"writer-{index}"))
            results.append("created")
        except InvalidInputError:
            results.append("refused")

    threads = [threading.Thread(target=create, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert sorted(results) == ["created"] + ["refused"] * 7
        assert len(stores[0].list_rules()) == 1
        assert stores[1].version() == 1
    finally:
        for s in stores:
            s.close()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u:p@db:5432/costops", "postgresql+psycopg://u:p@db:5432/costops"),
        ("postgres://u:p@db/costops", "postgresql+psycopg://u:p@db/costops"),
        ("postgresql+psycopg://u:p@db/costops", "postgresql+psycopg://u:p@db/costops"),
        ("sqlite:////srv/data/control.db", "sqlite:////srv/data/control.db"),
    ],
)
def test_database_url(url: str, expected: str) -> None:
    assert database_url(url).render_as_string(hide_password=False) == expected
