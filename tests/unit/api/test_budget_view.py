"""The API's budget view: the changelog read into spend, statuses, and hard limits."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from api.budget_view import HardLimits, next_period_s, status
from api.spend_board import SpendBoard
from llm_cost_ops.settings import Settings
from schemas.budget import Budget
from schemas.usage import UsageEvent
from streams.budgets import Bucket, BudgetBook, Spend, SpendKey

AT = datetime(2026, 3, 31, 10, tzinfo=UTC)
MARCH = int(datetime(2026, 3, 1, tzinfo=UTC).timestamp())


def budget(**fields: Any) -> Budget:
    base = {"id": "bud_1", "name": "b", "organization_id": "org-a", "amount": "10", "created_at": AT}
    return Budget(**{**base, **fields})


def record(board: SpendBoard, partition: int, key: SpendKey, amount: str | None, offset: int = 0) -> None:
    """The changelog record of the key's bucket holding only this key."""
    bucket = Bucket(offset, {key.slot: Spend(Decimal(amount))}) if amount is not None else None
    value = None if bucket is None else json.dumps(bucket.dump()).encode()
    board.apply(json.dumps(key.bucket.text(partition)).encode(), value)


def event(**fields: Any) -> UsageEvent:
    base = {"provider": "openai", "model": {"name": "m"}, "organization_id": "org-a", "timestamp": AT.isoformat()}
    return UsageEvent.model_validate({**base, "prompt_tokens": 1, "completion_tokens": 1, **fields})


def test_board_sums_partitions_and_follows_updates_and_tombstones() -> None:
    board = SpendBoard(Settings())
    key = SpendKey("monthly", MARCH, "organization", "org-a", "", "USD")
    record(board, 0, key, "1.5")
    record(board, 1, key, "2")
    record(board, 0, key, "4.0000000001", offset=9)  # a newer value of the same table key
    assert board.spend(key) == Decimal("6.0000000001")
    record(board, 1, key, None)  # pruned
    assert board.spend(key) == Decimal("4.0000000001")
    board.apply(json.dumps("0|newest").encode(), b"1774915200")  # not a spend: ignored
    board.apply(b"not json", b"[]")
    assert board.spend(key) == Decimal("4.0000000001")


def test_status_reports_spend_remaining_and_thresholds() -> None:
    board = SpendBoard(Settings())
    record(board, 0, SpendKey("monthly", MARCH, "project", "org-a", "p1", "USD"), "8.5")
    seen = status(budget(project_id="p1"), board, AT)
    assert (seen.spend, seen.remaining, seen.percent_used) == (Decimal("8.5"), Decimal("1.5"), 85.0)
    assert seen.thresholds_reached == [Decimal(50), Decimal(80)] and not seen.exceeded
    assert seen.period_start == datetime(2026, 3, 1, tzinfo=UTC)
    assert seen.period_end == datetime(2026, 4, 1, tzinfo=UTC)
    assert seen.scope == "project"


def test_hard_limits_apply_to_the_scope_of_a_spent_hard_budget() -> None:
    board = SpendBoard(Settings())
    record(board, 0, SpendKey("monthly", MARCH, "project", "org-a", "p1", "USD"), "10")
    record(board, 1, SpendKey("monthly", MARCH, "organization", "org-a", "", "USD"), "10")  # not p1's bucket
    limits = HardLimits()
    limits.use(
        BudgetBook(
            [
                budget(id="hard_p1", project_id="p1", enforcement="hard"),
                budget(id="soft_org", enforcement="soft"),
                budget(id="hard_p2", project_id="p2", enforcement="hard", amount="1"),
            ]
        )
    )
    assert [b.id for b in limits.exceeded(event(project_id="p1"), board)] == ["hard_p1"]
    assert limits.exceeded(event(project_id="p2"), board) == []  # p2 spent nothing
    assert limits.exceeded(event(project_id="p1", organization_id="org-b"), board) == []
    april = event(project_id="p1", timestamp="2026-04-01T00:00:00Z")
    assert limits.exceeded(april, board) == []  # a new period
    assert next_period_s(budget(), AT) == 14 * 3600
