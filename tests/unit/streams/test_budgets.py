"""Budget spend and thresholds (streams/budgets.py) as pure logic over a dict store."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from schemas.budget import Budget, BudgetInput
from streams.budgets import (
    Bucket,
    BucketKey,
    BudgetBook,
    Counted,
    SpendKey,
    budget_alert,
    count_spend,
    count_take,
    crossings,
    mark_reached,
    period_end,
    period_start,
    spend_contributions,
)

DAY = 86_400
T0 = int(datetime(2026, 3, 31, 10, tzinfo=UTC).timestamp())  # a day before a month's end
MARCH = int(datetime(2026, 3, 1, tzinfo=UTC).timestamp())
APRIL = int(datetime(2026, 4, 1, tzinfo=UTC).timestamp())


def priced(*rows: dict[str, Any]) -> pa.Table:
    full = [
        {
            "organization_id": "org-a",
            "project_id": None,
            "user_id": None,
            "model": "m",
            "currency": "USD",
            "total_cost": Decimal("1"),
            "timestamp": T0 * 1000,
            **row,
        }
        for row in rows
    ]
    schema = pa.schema(
        [
            ("organization_id", pa.string()),
            ("project_id", pa.string()),
            ("user_id", pa.string()),
            ("model", pa.string()),
            ("currency", pa.string()),
            ("total_cost", pa.decimal128(38, 10)),
            ("timestamp", pa.int64()),
        ]
    )
    table = pa.Table.from_pylist(full, schema=schema)
    return table.set_column(6, "timestamp", table.column("timestamp").cast(pa.timestamp("ms", tz="UTC")))


class DictSpend:
    def __init__(self) -> None:
        self.values: dict[str, list[object]] = {}
        self.newest: dict[int, int] = {}

    def get(self, partition: int, bucket: BucketKey) -> Bucket | None:
        value = self.values.get(bucket.text(partition))
        return None if value is None else Bucket.load(json.loads(json.dumps(value)))  # as the table would

    def write(self, counted: Counted) -> None:
        for (partition, bucket), value in counted.buckets.items():
            self.values[bucket.text(partition)] = value.dump()
        self.newest = dict(counted.newest_s)


def take(
    store: DictSpend, positions: list[tuple[int, int]], tables: list[pa.Table], book: BudgetBook, retention: int = 3
) -> list[Any]:
    message = np.concatenate([np.full(t.num_rows, i) for i, t in enumerate(tables)])
    counted = count_take(positions, pa.concat_tables(tables), message, store, store.newest, retention, T0 + 100 * DAY)
    found = crossings(counted, book)
    mark_reached(counted, found)
    store.write(counted)
    return found


def budget(**fields: Any) -> Budget:
    base = {"name": "b", "organization_id": "org-a", "amount": "10", "created_at": datetime(2026, 1, 1, tzinfo=UTC)}
    return Budget(**{**base, "id": fields.pop("id", "bud_1"), **fields})


def series_keys(counted: Counted) -> list[tuple[int, SpendKey]]:
    """Every spend of the buckets a take touched."""
    return sorted((p, bucket.key(slot)) for (p, bucket), found in counted.buckets.items() for slot in found.spends)


def spend_of(store: DictSpend, key: SpendKey, partition: int = 0) -> Decimal:
    found = store.get(partition, key.bucket)
    return Decimal(0) if found is None or key.slot not in found.spends else found.spends[key.slot].amount


def test_periods_are_utc_days_and_calendar_months() -> None:
    assert period_start("daily", T0) == T0 - 10 * 3600
    assert period_start("monthly", T0) == MARCH
    assert period_end("monthly", MARCH) == APRIL
    december = int(datetime(2026, 12, 5, tzinfo=UTC).timestamp())
    assert period_end("monthly", period_start("monthly", december)) == int(datetime(2027, 1, 1, tzinfo=UTC).timestamp())


def test_spend_per_scope_and_period_with_exact_decimals() -> None:
    store = DictSpend()
    table = priced(
        {"total_cost": Decimal("0.0000000001"), "project_id": "p1", "user_id": "u1"},
        {"total_cost": Decimal("2.5"), "project_id": "p2", "model": "n"},
        {"total_cost": None, "project_id": "p1"},  # unpriced: no spend
        {"total_cost": Decimal("1"), "currency": "EUR"},
    )
    take(store, [(0, 0)], [table], BudgetBook())
    day = period_start("daily", T0)
    assert spend_of(store, SpendKey("daily", day, "organization", "org-a", "", "USD")) == Decimal("2.5000000001")
    assert spend_of(store, SpendKey("monthly", MARCH, "organization", "org-a", "", "USD")) == Decimal("2.5000000001")
    assert spend_of(store, SpendKey("daily", day, "organization", "org-a", "", "EUR")) == Decimal(1)
    assert spend_of(store, SpendKey("daily", day, "project", "org-a", "p1", "USD")) == Decimal("0.0000000001")
    assert spend_of(store, SpendKey("daily", day, "user", "org-a", "u1", "USD")) == Decimal("0.0000000001")
    assert spend_of(store, SpendKey("monthly", MARCH, "model", "org-a", "n", "USD")) == Decimal("2.5")
    assert spend_of(store, SpendKey("monthly", MARCH, "model", "org-a", "m", "USD")) == Decimal("0.0000000001")


def test_a_replayed_message_is_not_counted_twice() -> None:
    store = DictSpend()
    key = SpendKey("monthly", MARCH, "organization", "org-a", "", "USD")
    take(store, [(0, 5), (0, 6)], [priced({}), priced({})], BudgetBook())
    # After a crash the take is replayed, with a new message after it.
    take(store, [(0, 5), (0, 6), (0, 7)], [priced({}), priced({}), priced({})], BudgetBook())
    assert spend_of(store, key) == Decimal(3)


def test_each_threshold_fires_once_per_period_in_order() -> None:
    store = DictSpend()
    book = BudgetBook([budget(thresholds=["50", "80", "100"])])
    fired = take(store, [(0, 0)], [priced({"total_cost": Decimal("4.99")})], book)
    assert fired == []
    fired = take(store, [(0, 1)], [priced({"total_cost": Decimal("0.01")})], book)
    assert [c.percent for c in fired] == [Decimal(50)]
    fired = take(store, [(0, 2)], [priced({"total_cost": Decimal("6")})], book)
    assert [c.percent for c in fired] == [Decimal(80), Decimal(100)]
    assert fired[-1].spend == Decimal(11)
    assert take(store, [(0, 3)], [priced({"total_cost": Decimal("6")})], book) == []
    # A new month: the thresholds are reached afresh.
    fired = take(store, [(0, 4)], [priced({"total_cost": Decimal("10"), "timestamp": (APRIL + 60) * 1000})], book)
    assert [c.percent for c in fired] == [Decimal(50), Decimal(80), Decimal(100)]


def test_budgets_read_only_their_scope_currency_and_period() -> None:
    store = DictSpend()
    book = BudgetBook(
        [
            budget(id="bud_p", project_id="p1", amount="1", thresholds=["100"]),
            budget(id="bud_u", user_id="u1", amount="1", thresholds=["100"]),
            budget(id="bud_m", model="n", amount="1", thresholds=["100"]),
            budget(id="bud_eur", amount="1", currency="EUR", thresholds=["100"]),
            budget(id="bud_day", period="daily", amount="3", thresholds=["100"]),
        ]
    )
    fired = take(store, [(0, 0)], [priced({"project_id": "p1"}, {"project_id": "p2", "user_id": "u2"})], book)
    assert {c.budget.id for c in fired} == {"bud_p"}
    fired = take(store, [(0, 1)], [priced({"timestamp": (T0 - DAY) * 1000, "user_id": "u1"})], book)
    assert {c.budget.id for c in fired} == {"bud_u"}  # yesterday: not today's daily budget
    fired = take(store, [(0, 2)], [priced({"model": "n"})], book)
    assert {c.budget.id for c in fired} == {"bud_m", "bud_day"}  # 3 USD today


def test_a_budget_created_later_sees_the_whole_period() -> None:
    store = DictSpend()
    take(store, [(0, 0)], [priced({"total_cost": Decimal("9")})], BudgetBook())
    fired = take(store, [(0, 1)], [priced({"total_cost": Decimal("0.5")})], BudgetBook([budget()]))
    assert [c.percent for c in fired] == [Decimal(50), Decimal(80)]


def test_periods_past_the_retention_are_not_counted() -> None:
    store = DictSpend()
    take(store, [(0, 0)], [priced({"timestamp": (T0 + 10 * DAY) * 1000})], BudgetBook())  # April 10
    message = np.zeros(1)
    contributions = spend_contributions(priced({"timestamp": (T0 - DAY) * 1000}), message)  # March 30
    counted = count_spend([(0, 1)], contributions, store, store.newest, 3)
    assert counted is not None
    # The daily keys (organization, model) are 11 days old; March is still the previous month.
    assert counted.skipped == 2
    assert all(key.period == "monthly" for _, key in series_keys(counted))


def test_alert_record_names_budget_period_and_threshold() -> None:
    store = DictSpend()
    hard = budget(enforcement="hard", project_id="p1", thresholds=["100"])
    fired = take(store, [(0, 0)], [priced({"total_cost": Decimal("12.5"), "project_id": "p1"})], BudgetBook([hard]))
    alert = budget_alert(fired[0], datetime(2026, 3, 31, 11, tzinfo=UTC))
    assert alert["alert_id"] == f"budget.threshold|bud_1|{MARCH}|100"
    assert alert["type"] == "budget.threshold"
    assert (alert["dimension"], alert["project_id"]) == ("project", "p1")
    assert (alert["actual_cost"], alert["expected_cost"], alert["impact"]) == ("12.5000000000", "10", "2.5000000000")
    assert alert["window_start"] == "2026-03-01T00:00:00.000Z" and alert["window_end"] == "2026-04-01T00:00:00.000Z"
    assert alert["severity"] == "critical"
    assert "125.0% of 10.00" in str(alert["message"])


def test_bucket_keys_round_trip_with_separators_in_ids() -> None:
    key = SpendKey("daily", 86_400, "project", "org|a", 'p"1|x', "USD")
    assert BucketKey.parse(key.bucket.text(3)) == (3, key.bucket)
    assert key.bucket.key(key.slot) == key
    with pytest.raises(ValueError):
        BucketKey.parse("3|newest")


def test_a_take_writes_few_buckets_per_organization() -> None:
    """Forty users, three projects and two models: at most 2 periods x 4 shards records."""
    store = DictSpend()
    rows = [{"user_id": f"u{n}", "project_id": f"p{n % 3}", "model": f"m{n % 2}"} for n in range(40)]
    take(store, [(0, 0), (0, 1)], [priced(*rows[:20]), priced(*rows[20:])], BudgetBook())
    assert len(store.values) <= 8
    assert spend_of(store, SpendKey("monthly", MARCH, "user", "org-a", "u39", "USD")) == 1
    assert spend_of(store, SpendKey("monthly", MARCH, "organization", "org-a", "", "USD")) == 40


def test_a_crash_between_bucket_writes_counts_each_message_once() -> None:
    """A take whose first bucket was written and second was not is replayed: the written one
    skips the replayed messages, the other counts them."""
    store = DictSpend()
    day = period_start("daily", T0)
    take(store, [(0, 0)], [priced({})], BudgetBook())
    message = np.zeros(1)
    contributions = spend_contributions(priced({"total_cost": Decimal("2")}), message)
    counted = count_spend([(0, 1)], contributions, store, store.newest, 3)
    assert counted is not None
    written = next(iter(counted.buckets))
    store.values[written[1].text(0)] = counted.buckets[written].dump()  # the crash: only this one landed
    take(store, [(0, 1)], [priced({"total_cost": Decimal("2")})], BudgetBook())
    for key in series_keys(counted):
        assert spend_of(store, key[1]) == 3, key
    assert spend_of(store, SpendKey("daily", day, "organization", "org-a", "", "USD")) == 3


def test_budget_input_names_each_bad_field() -> None:
    from llm_cost_ops.errors import InvalidInputError

    with pytest.raises(InvalidInputError) as caught:
        bad = {"name": "", "amount": "-1", "currency": "XXX", "thresholds": [0], "period": "weekly"}
        BudgetInput.parse({"organization_id": "o", **bad})
    assert set(caught.value.field_errors) == {"name", "amount", "currency", "thresholds[0]", "period"}
    with pytest.raises(InvalidInputError) as caught:
        BudgetInput.parse({"name": "b", "organization_id": "o", "amount": "1", "project_id": "p", "model": "m"})
    assert "at most one" in caught.value.field_errors["model"]
    parsed = BudgetInput.parse({"name": "b", "organization_id": "o", "amount": "1", "thresholds": [100, 50, 50]})
    assert parsed.thresholds == [Decimal(50), Decimal(100)] and parsed.scope == "organization"


def test_a_bucket_counted_up_to_the_middle_of_a_take_is_counted_message_by_message() -> None:
    """Messages 1 and 2 replayed, with one bucket counted up to message 1 (an earlier, smaller
    take landed there before a crash): the summed path cannot split them, the exact one does."""
    store = DictSpend()
    take(store, [(0, 0)], [priced({})], BudgetBook())
    first = count_spend([(0, 1)], spend_contributions(priced({"total_cost": Decimal("2")}), np.zeros(1)), store, {}, 3)
    assert first is not None
    written = next(iter(first.buckets))
    store.values[written[1].text(0)] = first.buckets[written].dump()
    two = [priced({"total_cost": Decimal("2")}), priced({"total_cost": Decimal("4")})]
    summed = spend_contributions(pa.concat_tables(two), np.array([1, 1]))
    assert count_spend([(0, 1), (0, 2)], summed, store, store.newest, 3, {0: 1}) is None
    take(store, [(0, 1), (0, 2)], two, BudgetBook())
    for _, key in series_keys(first):
        assert spend_of(store, key) == 7, key  # 1 + 2 + 4, each once


def test_a_budget_does_not_alert_for_a_period_that_ended_before_it_existed() -> None:
    store = DictSpend()
    later = budget(created_at=datetime(2026, 4, 2, tzinfo=UTC), thresholds=["100"])
    april = priced({"total_cost": Decimal("10"), "timestamp": (APRIL + DAY) * 1000})
    march = priced({"total_cost": Decimal("10")})  # late, for March: still kept, never alerted
    fired = take(store, [(0, 0), (0, 1)], [april, march], BudgetBook([later]))
    assert [(c.key.start_s, c.percent) for c in fired] == [(APRIL, Decimal(100))]


def test_a_message_delivered_twice_in_a_take_counts_once() -> None:
    from types import SimpleNamespace

    from streams.budget_step import _once_each

    events = [
        SimpleNamespace(message=SimpleNamespace(partition=p, offset=o)) for p, o in [(1, 5), (0, 3), (1, 5), (1, 4)]
    ]
    kept, tables = _once_each(events, ["a", "b", "c", "d"])  # type: ignore[list-item]
    assert [(e.message.partition, e.message.offset) for e in kept] == [(0, 3), (1, 4), (1, 5)]
    assert tables == ["b", "d", "a"]
