"""Budgets: a spending limit on an organization, or on one of its projects, users or models,
per UTC day or month, with alert thresholds (the FAQ's "Can I set spending limits?")."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from schemas.errors import validated
from schemas.pricing_rule import CURRENCIES, MAX_PRICE, PRICE_PLACES, Identifier, Name
from schemas.query import Money, UtcDatetime

BudgetScope = Literal["organization", "project", "user", "model"]
BudgetPeriod = Literal["daily", "monthly"]
Enforcement = Literal["soft", "hard"]

Percent = Annotated[Decimal, Field(gt=0, le=1000, allow_inf_nan=False, decimal_places=2)]
MEMBER_FIELDS: dict[str, str] = {"project": "project_id", "user": "user_id", "model": "model"}
"""The event field a budget of each scope (other than ``organization``) is keyed on."""


class BudgetInput(BaseModel):
    """What a caller sends to create a budget (``POST /api/v1/budgets``).

    The scope follows from the one member given: ``project_id``, ``user_id`` or ``model``
    (none: the whole organization). A budget counts the costs in its currency only.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Name
    organization_id: Identifier
    project_id: Identifier | None = None
    user_id: Identifier | None = None
    model: Identifier | None = None
    period: BudgetPeriod = "monthly"
    amount: Annotated[Decimal, Field(gt=0, le=MAX_PRICE, allow_inf_nan=False, decimal_places=PRICE_PLACES)]
    currency: str = "USD"
    thresholds: list[Percent] = Field(default_factory=lambda: [Decimal(50), Decimal(80), Decimal(100)], min_length=1)
    """Percentages of ``amount``; each raises one ``budget.threshold`` alert per period."""
    enforcement: Enforcement = "soft"
    """``hard``: once spend reaches ``amount``, ingestion rejects (or flags) the scope's events."""

    @field_validator("currency")
    @classmethod
    def _known_currency(cls, value: str) -> str:
        value = value.strip().upper()
        if value not in CURRENCIES:
            raise ValueError(f"unknown currency; one of: {', '.join(sorted(CURRENCIES))}")
        return value

    @field_validator("thresholds")
    @classmethod
    def _sorted_unique(cls, value: list[Decimal]) -> list[Decimal]:
        return sorted(set(value))

    @field_validator("user_id", "model")
    @classmethod
    def _one_member(cls, value: str | None, info: ValidationInfo) -> str | None:
        earlier = [name for name in ("project_id", "user_id") if info.data.get(name) is not None]
        if value is not None and earlier:
            raise ValueError(f"give at most one of project_id, user_id, model (also given: {', '.join(earlier)})")
        return value

    @property
    def scope(self) -> BudgetScope:
        for scope, name in MEMBER_FIELDS.items():
            if getattr(self, name) is not None:
                return scope  # type: ignore[return-value]
        return "organization"

    @property
    def member(self) -> str:
        """The project, user or model the budget is on ("" for an organization budget)."""
        name = MEMBER_FIELDS.get(self.scope)
        return "" if name is None else str(getattr(self, name))

    @classmethod
    def parse(cls, data: object) -> BudgetInput:
        """Validate, raising :class:`InvalidInputError` with one reason per bad field."""
        return validated(cls, data, "budget")


class Budget(BudgetInput):
    """A stored budget."""

    id: str
    created_at: UtcDatetime
    created_by: str | None = None

    @property
    def series(self) -> tuple[str, str, str, str]:
        """(scope, organization, member, currency): the spend series the budget reads."""
        return (self.scope, self.organization_id, self.member, self.currency)


class BudgetStatus(BaseModel):
    """A budget with its spend in the current period (``GET /api/v1/budgets``)."""

    id: str
    name: str
    organization_id: str
    scope: BudgetScope
    project_id: str | None
    user_id: str | None
    model: str | None
    period: BudgetPeriod
    amount: Money
    currency: str
    thresholds: list[Money]
    enforcement: Enforcement
    period_start: UtcDatetime
    period_end: UtcDatetime
    spend: Money
    remaining: Money
    percent_used: float
    thresholds_reached: list[Money]
    exceeded: bool
    """Spend reached the amount in this period (a hard budget blocks or flags ingestion)."""
    created_at: UtcDatetime
    created_by: str | None


class BudgetList(BaseModel):
    data: list[BudgetStatus]
    as_of: datetime | None
    """When this API process last had every spend the workers had written (None: not yet, e.g.
    no worker has run; spend then reads as 0)."""
