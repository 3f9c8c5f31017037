"""Custom pricing rules through the pricer: the seeds' structures, scopes, dates and tiers,
exact to 10 decimals (streams/pricing.py, streams/rules.py, streams/volume.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.codec import UsageCodec
from schemas.columns import millis, table_from_events
from schemas.pricing_rule import PricingRule, PricingRuleInput
from schemas.usage import UsageEvent
from streams.price_step import price_messages
from streams.pricing import PriceCatalog, Pricer
from streams.rules import RuleBook
from streams.volume import DictVolumes, count_volumes

NOW_MS = millis(datetime(2026, 1, 1, tzinfo=UTC))
CATALOG = PriceCatalog()
COMPONENTS = ("input_cost", "cached_cost", "cache_write_cost", "output_cost", "reasoning_cost", "request_cost")


def rule(rule_id: str, **fields: Any) -> PricingRule:
    fields.setdefault("provider", "openai")
    fields.setdefault("model", "gpt-4")
    made = PricingRuleInput.parse(fields)
    now = datetime.now(UTC)
    return PricingRule(**made.model_dump(), id=rule_id, created_at=now, updated_at=now)


def per_token(input_price: str, output_price: str, **extra: str) -> dict[str, str]:
    return {
        "type": "per_token",
        "input_price_per_million": input_price,
        "output_price_per_million": output_price,
        **extra,
    }


def event(**fields: Any) -> UsageEvent:
    base: dict[str, Any] = {
        "provider": "openai",
        "model": "gpt-4",
        "organization_id": "org-a",
        "prompt_tokens": 1000,
        "completion_tokens": 500,
        "timestamp": "2025-01-15T10:00:00Z",
    }
    return UsageEvent.parse(base | fields)


def price(
    rules: list[PricingRule], events: list[UsageEvent], volumes: DictVolumes | None = None
) -> list[dict[str, Any]]:
    table = table_from_events(events)
    message = np.zeros(table.num_rows, dtype=np.int64)
    before = count_volumes(table, message, volumes if volumes is not None else DictVolumes())
    priced = Pricer(CATALOG, RuleBook.of(rules)).price(table, NOW_MS, before)
    rows: list[dict[str, Any]] = priced.to_pylist()
    return rows


def test_seeds_example_gpt4_at_10_and_30() -> None:
    # The seeds' `cost-ops pricing add --provider openai --model gpt-4 --input-price 10.0 --output-price 30.0`
    (row,) = price([rule("price_a", pricing_structure=per_token("10.0", "30.0"))], [event()])
    assert row["total_cost"] == Decimal("0.0250000000")
    assert (row["input_cost"], row["output_cost"]) == (Decimal("0.0100000000"), Decimal("0.0150000000"))
    assert row["price_source"] == "price_a"
    assert row["currency"] == "USD"
    assert json.loads(row["price_rates"]) == {
        "rule": "price_a",
        "scope": "global",
        "type": "per_token",
        "input_price_per_million": "10.0",
        "output_price_per_million": "30.0",
    }


def test_cached_input_discount() -> None:
    structure = per_token("10", "30", cached_input_discount="0.5")
    (row,) = price([rule("price_a", pricing_structure=structure)], [event(cached_tokens=400)])
    assert row["input_cost"] == Decimal("0.0060000000")  # 600 uncached x $10
    assert row["cached_cost"] == Decimal("0.0020000000")  # 400 x $5
    assert row["total_cost"] == Decimal("0.0230000000")


def test_explicit_cache_and_reasoning_prices() -> None:
    structure = per_token("10", "30", cached_input_price_per_million="1", reasoning_price_per_million="60")
    (row,) = price([rule("price_a", pricing_structure=structure)], [event(cached_tokens=400, reasoning_tokens=100)])
    assert row["cached_cost"] == Decimal("0.0004000000")
    assert row["output_cost"] == Decimal("0.0120000000")  # 400 visible output x $30
    assert row["reasoning_cost"] == Decimal("0.0060000000")  # 100 x $60
    assert row["total_cost"] == Decimal("0.0244000000")


def test_cache_write_price_and_its_default() -> None:
    explicit = per_token("10", "30", cache_write_price_per_million="12.5")
    (row,) = price([rule("price_a", pricing_structure=explicit)], [event(cached_tokens=100, cache_write_tokens=400)])
    assert row["cache_write_cost"] == Decimal("0.0050000000")  # 400 x $12.5
    assert row["input_cost"] == Decimal("0.0050000000")  # 500 uncached x $10
    (row,) = price([rule("price_b", pricing_structure=per_token("10", "30"))], [event(cache_write_tokens=400)])
    assert row["cache_write_cost"] == Decimal("0.0040000000")  # the input rate
    assert row["total_cost"] == Decimal("0.0250000000")  # cache writes are part of the prompt: not counted twice


def test_reasoning_defaults_to_the_output_price() -> None:
    (row,) = price([rule("price_a", pricing_structure=per_token("10", "30"))], [event(reasoning_tokens=100)])
    assert row["reasoning_cost"] == Decimal("0.0030000000")
    assert row["total_cost"] == Decimal("0.0250000000")  # reasoning is part of completion: not counted twice


def test_per_request_with_overage() -> None:
    structure = {
        "type": "per_request",
        "price_per_request": "0.01",
        "included_tokens": 1000,
        "overage_price_per_million": "5",
    }
    over, under = price(
        [rule("price_r", pricing_structure=structure)],
        [event(), event(prompt_tokens=600, completion_tokens=400)],
    )
    assert over["request_cost"] == Decimal("0.0125000000")  # $0.01 + 500 tokens x $5/M
    assert over["total_cost"] == Decimal("0.0125000000")
    assert under["total_cost"] == Decimal("0.0100000000")  # 1000 tokens: all included
    for name in ("input_cost", "cached_cost", "output_cost", "reasoning_cost"):
        assert over[name] == Decimal(0)


TIERS = {
    "type": "tiered",
    "tiers": [
        {"threshold": 0, "input_price_per_million": "10", "output_price_per_million": "30"},
        {"threshold": 1_200, "input_price_per_million": "8", "output_price_per_million": "24"},
        {"threshold": 2_500, "input_price_per_million": "5", "output_price_per_million": "15"},
    ],
}


def test_tier_threshold_crossed_inside_one_event() -> None:
    first, second = price([rule("price_t", pricing_structure=TIERS)], [event(), event()])
    # First event: prompt fills 0..1000 at $10; output 1000..1500: 200 at $30, 300 at $24.
    assert first["input_cost"] == Decimal("0.0100000000")
    assert first["output_cost"] == Decimal("0.0132000000")
    assert first["tier_volume"] == 0
    # Second event from 1500: prompt 1500..2500 at $8; output 2500..3000 at $15.
    assert second["input_cost"] == Decimal("0.0080000000")
    assert second["output_cost"] == Decimal("0.0075000000")
    assert second["tier_volume"] == 1500


def test_tiers_count_cached_then_input_then_reasoning_then_output() -> None:
    tiers = {
        "type": "tiered",
        "tiers": [
            {
                "threshold": 0,
                "input_price_per_million": "10",
                "output_price_per_million": "30",
                "cached_input_discount": "0.5",
            },
            {
                "threshold": 300,
                "input_price_per_million": "1",
                "output_price_per_million": "3",
                "cached_input_discount": "0.5",
                "reasoning_price_per_million": "2",
            },
        ],
    }
    (row,) = price(
        [rule("price_t", pricing_structure=tiers)],
        [event(prompt_tokens=400, cached_tokens=200, completion_tokens=100, reasoning_tokens=50)],
    )
    assert row["cached_cost"] == Decimal("0.0010000000")  # 0..200 at $5
    assert row["input_cost"] == Decimal("0.0010000000") + Decimal("0.0001000000")  # 200..300 at $10, 300..400 at $1
    assert row["reasoning_cost"] == Decimal("0.0001000000")  # 400..450 at $2
    assert row["output_cost"] == Decimal("0.0001500000")  # 450..500 at $3


def test_cache_writes_count_after_cache_reads_in_tiers() -> None:
    tiers = {
        "type": "tiered",
        "tiers": [
            {"threshold": 0, "input_price_per_million": "10", "output_price_per_million": "30",
             "cache_write_price_per_million": "20"},
            {"threshold": 150, "input_price_per_million": "1", "output_price_per_million": "3",
             "cache_write_price_per_million": "2"},
        ],
    }  # fmt: skip
    (row,) = price(
        [rule("price_t", pricing_structure=tiers)],
        [event(prompt_tokens=300, cached_tokens=100, cache_write_tokens=100, completion_tokens=0)],
    )
    assert row["cached_cost"] == Decimal("0.0010000000")  # 0..100 at $10 (no cache price: the input rate)
    assert row["cache_write_cost"] == Decimal("0.0010000000") + Decimal("0.0001000000")  # 100..150 at $20, ..200 at $2
    assert row["input_cost"] == Decimal("0.0001000000")  # 200..300 at $1


def test_tier_volume_is_per_organization_and_calendar_month() -> None:
    rules = [rule("price_t", pricing_structure=TIERS)]
    rows = price(
        rules,
        [
            event(),
            event(organization_id="org-b"),
            event(timestamp="2025-02-01T00:00:00Z"),  # a new month starts from zero
            event(timestamp="2025-01-31T23:59:59.999Z"),
        ],
    )
    assert [r["tier_volume"] for r in rows] == [0, 0, 0, 1500]


def test_tier_volume_carries_across_takes() -> None:
    rules = [rule("price_t", pricing_structure=TIERS)]
    volumes = DictVolumes()
    (first,) = price(rules, [event()], volumes)
    (second,) = price(rules, [event()], volumes)
    assert (first["tier_volume"], second["tier_volume"]) == (0, 1500)
    assert second["output_cost"] == Decimal("0.0075000000")


def test_effective_date_switch_at_midnight_utc() -> None:
    rules = [
        rule("price_old", pricing_structure=per_token("10", "30"), effective_date="2025-01-01", end_date="2025-02-01"),
        rule("price_new", pricing_structure=per_token("5", "15"), effective_date="2025-02-01"),
    ]
    before, at, after = price(
        rules,
        [
            event(timestamp="2025-01-31T23:59:59.999Z"),
            event(timestamp="2025-02-01T00:00:00Z"),
            event(timestamp="2025-02-01T00:00:00.001Z"),
        ],
    )
    assert (before["price_source"], before["total_cost"]) == ("price_old", Decimal("0.0250000000"))
    assert (at["price_source"], at["total_cost"]) == ("price_new", Decimal("0.0125000000"))
    assert after["price_source"] == "price_new"


def test_before_any_rule_the_catalog_prices() -> None:
    rules = [rule("price_new", pricing_structure=per_token("5", "15"), effective_date="2025-02-01")]
    (row,) = price(rules, [event()])
    assert row["price_source"] == "genai-prices==0.2.3 openai/gpt-4"
    assert row["total_cost"] == Decimal("0.0600000000")  # $30/$60 list price


def test_catalog_price_change_applies_by_event_time() -> None:
    # o3's list price was cut on 2025-06-10: $10/$40 before, $2/$8 from then.
    early, late = price(
        [],
        [
            event(model="o3", timestamp="2025-06-09T23:59:00Z", prompt_tokens=1_000_000, completion_tokens=1_000_000),
            event(model="o3", timestamp="2025-06-10T00:00:00Z", prompt_tokens=1_000_000, completion_tokens=1_000_000),
        ],
    )
    assert early["total_cost"] == Decimal("50.0000000000")
    assert late["total_cost"] == Decimal("10.0000000000")


def test_lookup_order_project_organization_global_catalog_unpriced() -> None:
    rules = [
        rule("price_p", pricing_structure=per_token("1", "1"), organization_id="org-a", project_id="proj-1"),
        rule("price_o", pricing_structure=per_token("2", "2"), organization_id="org-a"),
        rule("price_g", pricing_structure=per_token("3", "3")),
    ]
    rows = price(
        rules,
        [
            event(project_id="proj-1"),
            event(project_id="proj-2"),
            event(),
            event(organization_id="org-b", project_id="proj-1"),
            event(model="gpt-4o"),
            event(model="no-such-model"),
        ],
    )
    assert [r["price_source"] for r in rows] == [
        "price_p",
        "price_o",
        "price_o",
        "price_g",
        "genai-prices==0.2.3 openai/gpt-4o",
        None,
    ]
    assert rows[-1]["unpriced_reason"] == "Pricing table not found for openai/no-such-model on 2025-01-15"
    assert rows[-1]["total_cost"] is None


def test_a_rule_prices_a_model_the_catalog_does_not_know() -> None:
    (row,) = price(
        [rule("price_x", model="in-house-llm", pricing_structure=per_token("1", "2"))], [event(model="in-house-llm")]
    )
    assert row["pricing_status"] == "priced"
    assert row["total_cost"] == Decimal("0.0020000000")


def test_a_rule_for_the_pinned_version_wins_over_the_model_name() -> None:
    rules = [
        rule("price_name", model="gpt-4o", pricing_structure=per_token("1", "1")),
        rule("price_version", model="gpt-4o-2024-08-06", pricing_structure=per_token("2", "2")),
    ]
    pinned, plain = price(
        rules, [event(model={"name": "gpt-4o", "version": "gpt-4o-2024-08-06"}), event(model="gpt-4o")]
    )
    assert (pinned["price_source"], plain["price_source"]) == ("price_version", "price_name")


def test_a_rule_in_another_currency_keeps_it() -> None:
    (row,) = price([rule("price_e", currency="EUR", pricing_structure=per_token("10", "30"))], [event()])
    assert (row["currency"], row["total_cost"]) == ("EUR", Decimal("0.0250000000"))


def test_exact_where_float_arithmetic_is_off_in_the_10th_decimal() -> None:
    # 1 token at $0.00015 per million is exactly 1.5e-10 USD: half to even gives 2e-10.
    assert round(1 * 0.00015 / 1e6, 10) == 1e-10  # float: 1.4999999999999999e-10 rounds down
    (row,) = price(
        [rule("price_f", pricing_structure=per_token("0.00015", "0.00015"))],
        [event(prompt_tokens=1, completion_tokens=0)],
    )
    assert row["input_cost"] == Decimal("0.0000000002")
    # A large volume: float keeps ~16 significant digits, the 10th decimal of $1e9 is beyond it.
    big = {"prompt_tokens": 10**12, "completion_tokens": 10**12 - 1}
    (row,) = price([rule("price_b", pricing_structure=per_token("1234.5678912345", "0.0000000003"))], [event(**big)])
    assert row["input_cost"] == Decimal("1234567891.2345000000")
    assert row["output_cost"] == Decimal("0.0003000000")  # (10**12 - 1) x 3e-10 / 1e6 = 0.0002999999997 -> 0.0003


tokens = st.integers(min_value=0, max_value=10**9)


@st.composite
def usage(draw: st.DrawFn) -> UsageEvent:
    prompt = draw(tokens)
    completion = draw(tokens)
    cached = draw(st.integers(min_value=0, max_value=prompt))
    return event(
        organization_id=draw(st.sampled_from(["org-a", "org-b"])),
        model=draw(st.sampled_from(["gpt-4", "gpt-4o", "o3", "claude-3-5-sonnet-20241022"])),
        prompt_tokens=prompt,
        completion_tokens=completion,
        cached_tokens=cached,
        cache_write_tokens=draw(st.integers(min_value=0, max_value=prompt - cached)),
        reasoning_tokens=draw(st.integers(min_value=0, max_value=completion)),
    )


PROPERTY_RULES = [
    rule(
        "price_t",
        pricing_structure={
            "type": "tiered",
            "tiers": [
                {
                    "threshold": 0,
                    "input_price_per_million": "10.1234567891",
                    "output_price_per_million": "30",
                    "cached_input_discount": "0.1",
                },
                {"threshold": 10**9, "input_price_per_million": "8", "output_price_per_million": "24.0000000001"},
                {"threshold": 3 * 10**9, "input_price_per_million": "0.0000000001", "output_price_per_million": "0"},
            ],
        },
    ),
    rule(
        "price_r",
        model="gpt-4o",
        organization_id="org-b",
        pricing_structure={
            "type": "per_request",
            "price_per_request": "0.0123456789",
            "included_tokens": 5000,
            "overage_price_per_million": "1.5",
        },
    ),
]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(usage(), min_size=1, max_size=12), st.integers(min_value=1, max_value=12))
def test_costs_are_non_negative_additive_and_independent_of_batching(events: list[UsageEvent], cut: int) -> None:
    whole = price(PROPERTY_RULES, events, DictVolumes())
    volumes = DictVolumes()
    pieces = price(PROPERTY_RULES, events[:cut], volumes) + price(PROPERTY_RULES, events[cut:], volumes)
    for one, other in zip(whole, pieces, strict=True):
        for name in (*COMPONENTS, "total_cost", "tier_volume", "price_source"):
            assert one[name] == other[name], name
    for row in whole:
        if row["total_cost"] is None:
            continue
        parts = [row[name] for name in COMPONENTS]
        assert all(part >= 0 for part in parts)
        assert sum(parts) == row["total_cost"]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=3000), min_size=2, max_size=8))
def test_tiered_costs_of_split_events_add_up_to_the_whole(splits: list[int]) -> None:
    """Graduated tiers: N events of t_i output tokens cost what one event of sum(t_i) costs,
    to within the rounding of each event (one unit of 1e-10 per event)."""
    rules = [rule("price_t", pricing_structure=TIERS)]
    pieces = price(rules, [event(prompt_tokens=0, completion_tokens=t) for t in splits])
    (whole,) = price(rules, [event(prompt_tokens=0, completion_tokens=sum(splits))])
    total = sum(r["output_cost"] for r in pieces)
    assert abs(total - whole["output_cost"]) <= Decimal("1E-10") * len(splits)


def test_price_messages_carries_volume_between_takes(codec: UsageCodec) -> None:
    """The worker's path: volumes read before a take and written after, per key, in order."""
    pricer = Pricer(CATALOG, RuleBook.of([rule("price_t", pricing_structure=TIERS)]))
    volumes = DictVolumes()
    first = price_messages([codec.encode_usage(event())], codec, pricer, frozenset(["openai"]), NOW_MS, volumes)
    second = price_messages([codec.encode_usage(event())], codec, pricer, frozenset(["openai"]), NOW_MS, volumes)
    assert volumes.totals == {("org-a", "openai", "gpt-4", "2025-01"): 3000}
    rows = [o.priced.to_pylist()[0] for o in (*first, *second) if o.priced is not None]
    assert [r["tier_volume"] for r in rows] == [0, 1500]


@pytest.fixture
def codec() -> UsageCodec:
    from llm_cost_ops.settings import Settings
    from llm_cost_ops.wire import build_codec

    return build_codec(Settings())


class PositionVolumes(DictVolumes):
    """Volumes that remember the (partition, offset) of the last message counted, as the
    worker's table does; ``positions`` are those of the current take's messages."""

    def __init__(self) -> None:
        super().__init__()
        self.last: dict[Any, tuple[int, int]] = {}
        self.positions: list[tuple[int, int]] = []

    def counted(self, key: Any, message: int) -> bool:
        stored = self.last.get(key)
        partition, offset = self.positions[message]
        return stored is not None and stored[0] == partition and offset <= stored[1]

    def set(self, key: Any, total: int, message: int) -> None:
        super().set(key, total, message)
        self.last[key] = self.positions[message]


def test_a_replayed_message_is_priced_again_but_counted_once(codec: UsageCodec) -> None:
    pricer = Pricer(CATALOG, RuleBook.of([rule("price_t", pricing_structure=TIERS)]))
    volumes = PositionVolumes()
    messages = [codec.encode_usage(event()) for _ in range(3)]
    volumes.positions = [(0, 10), (0, 11)]
    price_messages(messages[:2], codec, pricer, frozenset(["openai"]), NOW_MS, volumes)
    assert volumes.totals == {("org-a", "openai", "gpt-4", "2025-01"): 3000}
    # The worker crashed before committing offset 11: the next take replays it, then offset 12.
    volumes.positions = [(0, 11), (0, 12)]
    replay, fresh = price_messages(messages[1:], codec, pricer, frozenset(["openai"]), NOW_MS, volumes)
    assert volumes.totals == {("org-a", "openai", "gpt-4", "2025-01"): 4500}
    assert volumes.last == {("org-a", "openai", "gpt-4", "2025-01"): (0, 12)}
    assert replay.priced is not None and fresh.priced is not None
    assert fresh.priced.column("tier_volume").to_pylist() == [3000]


def test_volume_keys_fold_model_case() -> None:
    rows = price([rule("price_t", pricing_structure=TIERS)], [event(model="GPT-4"), event(model="gpt-4")])
    assert [r["tier_volume"] for r in rows] == [0, 1500]
    assert {r["price_source"] for r in rows} == {"price_t"}
