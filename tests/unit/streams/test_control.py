"""The control topic's snapshots: encoding, and a worker never going back to older rules."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from llm_cost_ops.settings import Settings
from schemas.pricing_rule import PricingRule, PricingRuleInput
from streams.control import PRICING_KEY, ControlFeed, decode_snapshot, encode_snapshot
from streams.rules import RuleBook


def rule(rule_id: str, price: str = "10") -> PricingRule:
    made = PricingRuleInput.parse(
        {
            "provider": "openai",
            "model": "gpt-4",
            "pricing_structure": {
                "type": "per_token",
                "input_price_per_million": price,
                "output_price_per_million": "123456789.1234567891",
            },
            "effective_date": "2025-01-01",
        }
    )
    now = datetime(2025, 1, 1, tzinfo=UTC)
    return PricingRule(**made.model_dump(), id=rule_id, created_at=now, updated_at=now)


def test_snapshot_round_trip_is_exact() -> None:
    book = decode_snapshot(encode_snapshot([rule("price_a", "0.0000000001")], 7))
    assert book.version == 7
    (found,) = book.rules
    assert found == rule("price_a", "0.0000000001")
    assert found.pricing_structure.output_price_per_million == Decimal("123456789.1234567891")


def test_feed_applies_newer_snapshots_only() -> None:
    applied: list[RuleBook] = []
    feed = ControlFeed(Settings(), applied.append)
    feed.apply(PRICING_KEY, encode_snapshot([rule("price_a")], 2))
    feed.apply(PRICING_KEY, encode_snapshot([], 1))  # an older snapshot published late: ignored
    feed.apply(PRICING_KEY, encode_snapshot([rule("price_a"), rule("price_b")], 3))
    assert [(b.version, len(b.rules)) for b in applied] == [(2, 1), (3, 2)]


def test_feed_ignores_what_is_not_a_snapshot() -> None:
    applied: list[RuleBook] = []
    feed = ControlFeed(Settings(), applied.append)
    feed.apply(PRICING_KEY, b"not json")
    feed.apply(PRICING_KEY, b'{"kind": "pricing-rules", "version": 1, "rules": [{"id": "x"}]}')
    feed.apply(b"budgets", encode_snapshot([rule("price_a")], 5))  # another kind of control data
    feed.apply(PRICING_KEY, None)
    assert applied == []


def test_feed_applies_newer_budget_snapshots_exactly() -> None:
    from schemas.budget import Budget
    from streams.budgets import BudgetBook
    from streams.control import BUDGETS_KEY, encode_budgets

    made = Budget(
        id="bud_a", name="b", organization_id="o", amount="0.0000000001", created_at=datetime(2026, 1, 1, tzinfo=UTC)
    )
    books: list[BudgetBook] = []
    feed = ControlFeed(Settings(), lambda _: None, books.append)
    feed.apply(BUDGETS_KEY, encode_budgets([made], 4))
    feed.apply(BUDGETS_KEY, encode_budgets([], 3))  # older: ignored
    feed.apply(BUDGETS_KEY, b"not json")
    assert [(b.version, b.budgets) for b in books] == [(4, [made])]
    assert books[0].budgets[0].amount == Decimal("0.0000000001")
