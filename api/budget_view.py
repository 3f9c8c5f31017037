"""Budgets against their spend: the status ``GET /api/v1/budgets`` shows, and the hard limits
ingestion enforces. The budgets come from the control topic (every API replica follows it),
the spend from the workers' table (api/spend_board.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from api.spend_board import SpendBoard
from schemas.budget import Budget, BudgetStatus
from schemas.usage import UsageEvent
from streams.budgets import BudgetBook, SpendKey, period_end, period_start


def spend_key(budget: Budget, at: datetime) -> SpendKey:
    """The spend series and period ``budget`` reads at the instant ``at``."""
    start = period_start(budget.period, int(at.timestamp()))
    return SpendKey(budget.period, start, *budget.series)


def next_period_s(budget: Budget, at: datetime) -> float:
    """Seconds from ``at`` to the start of the budget's next period."""
    key = spend_key(budget, at)
    return max(1.0, period_end(key.period, key.start_s) - at.timestamp())


def status(budget: Budget, board: SpendBoard, at: datetime) -> BudgetStatus:
    key = spend_key(budget, at)
    spend = board.spend(key)
    used = spend * 100 / budget.amount
    return BudgetStatus(
        **budget.model_dump(include=set(BudgetStatus.model_fields) & set(Budget.model_fields)),
        scope=budget.scope,
        period_start=datetime.fromtimestamp(key.start_s, UTC),
        period_end=datetime.fromtimestamp(period_end(key.period, key.start_s), UTC),
        spend=spend,
        remaining=max(budget.amount - spend, Decimal(0)),
        percent_used=float(round(used, 2)),
        thresholds_reached=[p for p in budget.thresholds if used >= p],
        exceeded=spend >= budget.amount,
    )


@dataclass
class HardLimits:
    """The hard budgets, by organization; replaced whole when the budgets change."""

    by_organization: dict[str, list[Budget]] = field(default_factory=dict)

    def use(self, book: BudgetBook) -> None:
        hard: dict[str, list[Budget]] = {}
        for budget in book.budgets:
            if budget.enforcement == "hard":
                hard.setdefault(budget.organization_id, []).append(budget)
        self.by_organization = hard

    def exceeded(self, event: UsageEvent, board: SpendBoard) -> list[Budget]:
        """The hard budgets over their amount in the period of the event's timestamp that the
        event would count against."""
        found = []
        for budget in self.by_organization.get(event.organization_id, []):
            member = {"project": event.project_id, "user": event.user_id, "model": event.model.name}.get(budget.scope)
            if budget.scope != "organization" and member != budget.member:
                continue
            if board.spend(spend_key(budget, event.timestamp)) >= budget.amount:
                found.append(budget)
        return found
