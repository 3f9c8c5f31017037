"""Custom pricing: the seeds' pricing structures, with a scope and an effective range.

A rule prices one provider's model for everyone (``global``), for one organization, or for
one project of an organization. Lookup order for an event: project rule, organization rule,
global rule, catalog list price, unpriced (:mod:`streams.rules`). Prices are per million
tokens (or per request), exact ``Decimal``; a rule's range is ``[effective_date, end_date)``
in UTC, on whole minutes.

Structures (``pricing_structure.type``):

* ``per_token``: input and output rates; cached prompt tokens at
  ``cached_input_price_per_million``, else at the input rate less ``cached_input_discount``
  (a fraction, 0.5 = half price), else at the input rate; tokens written to the prompt cache
  at ``cache_write_price_per_million``, else at the input rate; reasoning tokens at
  ``reasoning_price_per_million``, else at the output rate.
* ``per_request``: ``price_per_request`` per call, plus ``overage_price_per_million`` on the
  call's total tokens beyond ``included_tokens``.
* ``tiered``: graduated volume tiers, each with per-token rates as above, by the cumulative
  tokens of the organization on this provider's model in the calendar month (UTC). A tier's
  rates apply to the tokens past its threshold; an event that crosses a threshold is split.
"""

from __future__ import annotations

import secrets
from datetime import UTC, date, datetime, time
from decimal import Context, Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from llm_cost_ops.errors import InvalidInputError
from schemas.errors import field_errors

CURRENCIES = frozenset(
    [
        "USD",
        "EUR",
        "GBP",
        "JPY",
        "CNY",
        "CHF",
        "CAD",
        "AUD",
        "NZD",
        "SEK",
        "NOK",
        "DKK",
        "PLN",
        "CZK",
        "HUF",
        "INR",
        "KRW",
        "SGD",
        "HKD",
        "TWD",
        "BRL",
        "MXN",
        "ZAR",
        "ILS",
        "AED",
        "SAR",
        "TRY",
    ]
)
"""ISO 4217 codes accepted for a price. Costs in different currencies are never added up."""

MAX_PRICE = Decimal(10) ** 9
_EXACT = Context(prec=60)
PRICE_PLACES = 10

Price = Annotated[Decimal, Field(ge=0, le=MAX_PRICE, allow_inf_nan=False, decimal_places=PRICE_PLACES)]
"""A price: non-negative, finite, at most 10 decimal places (per million tokens or per request)."""
Fraction = Annotated[Decimal, Field(ge=0, le=1, allow_inf_nan=False, decimal_places=PRICE_PLACES)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Identifier = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128, pattern=r"^[^\s]+$")]
Scope = Literal["global", "organization", "project"]


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TokenRates(_Strict):
    """Per-token rates per million tokens; the base of ``per_token`` and of each tier."""

    input_price_per_million: Price
    output_price_per_million: Price
    cached_input_discount: Fraction | None = None
    cached_input_price_per_million: Price | None = None
    cache_write_price_per_million: Price | None = None
    reasoning_price_per_million: Price | None = None

    @model_validator(mode="after")
    def _one_cache_rule(self) -> TokenRates:
        if self.cached_input_discount is not None and self.cached_input_price_per_million is not None:
            raise PydanticCustomError(
                "cross_field",
                "give cached_input_discount or cached_input_price_per_million, not both",
                {"field": "cached_input_price_per_million"},
            )
        return self

    @property
    def cached_rate(self) -> Decimal:
        if self.cached_input_price_per_million is not None:
            return self.cached_input_price_per_million
        if self.cached_input_discount is not None:
            # Exact: at most 10 + 10 decimal places, beyond the default 28 significant digits.
            return _EXACT.multiply(
                self.input_price_per_million, _EXACT.subtract(Decimal(1), self.cached_input_discount)
            )
        return self.input_price_per_million

    @property
    def cache_write_rate(self) -> Decimal:
        if self.cache_write_price_per_million is not None:
            return self.cache_write_price_per_million
        return self.input_price_per_million

    @property
    def reasoning_rate(self) -> Decimal:
        if self.reasoning_price_per_million is not None:
            return self.reasoning_price_per_million
        return self.output_price_per_million


class PerToken(TokenRates):
    type: Literal["per_token"] = "per_token"


class PerRequest(_Strict):
    type: Literal["per_request"] = "per_request"
    price_per_request: Price
    included_tokens: Annotated[int, Field(ge=0, le=10**12)] = 0
    overage_price_per_million: Price = Decimal(0)


class Tier(TokenRates):
    threshold: Annotated[int, Field(ge=0, le=10**15)]
    """Cumulative monthly tokens from which this tier's rates apply."""


class Tiered(_Strict):
    type: Literal["tiered"] = "tiered"
    tiers: Annotated[list[Tier], Field(min_length=1, max_length=100)]

    @field_validator("tiers")
    @classmethod
    def _in_order(cls, tiers: list[Tier]) -> list[Tier]:
        if tiers[0].threshold != 0:
            raise PydanticCustomError(
                "cross_field", "the first tier must start at threshold 0", {"field": "tiers[0].threshold"}
            )
        for index in range(1, len(tiers)):
            if tiers[index].threshold <= tiers[index - 1].threshold:
                raise PydanticCustomError(
                    "cross_field",
                    "tiers out of order: each threshold must be greater than the previous one",
                    {"field": f"tiers[{index}].threshold"},
                )
        return tiers


PricingStructure = Annotated[PerToken | PerRequest | Tiered, Field(discriminator="type")]


def _utc_minute(value: Any) -> Any:
    """A date means its midnight UTC; a timestamp must be on a whole minute."""
    if isinstance(value, str) and len(value) == 10:
        value = date.fromisoformat(value)
    if isinstance(value, date) and not isinstance(value, datetime):
        return datetime.combine(value, time(), tzinfo=UTC)
    return value


class PricingRuleInput(_Strict):
    """A custom price as users send it (``POST``/``PUT /api/v1/pricing``)."""

    provider: Annotated[str, StringConstraints(strip_whitespace=True, to_lower=True, min_length=1, max_length=100)]
    model: Annotated[str, StringConstraints(strip_whitespace=True, to_lower=True, min_length=1, max_length=200)]
    """Matched case-insensitively against the event's model version, then its model name."""
    pricing_structure: PricingStructure
    currency: Annotated[str, StringConstraints(strip_whitespace=True, to_upper=True)] = "USD"
    effective_date: datetime = Field(default_factory=lambda: datetime(2000, 1, 1, tzinfo=UTC))
    end_date: datetime | None = None
    scope: Scope | None = None
    """Defaults from the ids given: ``project`` with a project, ``organization`` with only an
    organization, else ``global``."""
    organization_id: Identifier | None = None
    project_id: Identifier | None = None
    description: Annotated[str, StringConstraints(max_length=500)] | None = None

    @field_validator("currency")
    @classmethod
    def _known_currency(cls, value: str) -> str:
        if value not in CURRENCIES:
            raise ValueError(f"unknown currency; one of: {', '.join(sorted(CURRENCIES))}")
        return value

    @field_validator("effective_date", "end_date", mode="before")
    @classmethod
    def _dates(cls, value: Any) -> Any:
        return _utc_minute(value)

    @field_validator("effective_date", "end_date")
    @classmethod
    def _whole_minute_utc(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("must include a time zone (e.g. Z or +00:00), or be a date")
        value = value.astimezone(UTC)
        if value.second or value.microsecond:
            raise ValueError("must fall on a whole minute")
        if value.year < 2000 or value.year > 2999:
            raise ValueError("must be between 2000 and 2999")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> PricingRuleInput:
        if self.end_date is not None and self.end_date <= self.effective_date:
            raise PydanticCustomError("cross_field", "must be after effective_date", {"field": "end_date"})
        scope = self.scope or ("project" if self.project_id else "organization" if self.organization_id else "global")
        if scope == "global" and (self.organization_id or self.project_id):
            raise PydanticCustomError(
                "cross_field", "a global price takes no organization_id or project_id", {"field": "scope"}
            )
        if scope in ("organization", "project") and not self.organization_id:
            raise PydanticCustomError("cross_field", f"is required for a {scope} price", {"field": "organization_id"})
        if scope == "project" and not self.project_id:
            raise PydanticCustomError("cross_field", "is required for a project price", {"field": "project_id"})
        if scope == "organization" and self.project_id:
            raise PydanticCustomError(
                "cross_field", "an organization price takes no project_id", {"field": "project_id"}
            )
        object.__setattr__(self, "scope", scope)
        return self

    @property
    def effective_ms(self) -> int:
        return int(self.effective_date.timestamp() * 1000)

    @property
    def end_ms(self) -> int | None:
        return None if self.end_date is None else int(self.end_date.timestamp() * 1000)

    def overlaps(self, other: PricingRuleInput) -> bool:
        """Same provider, model and scope, and ranges that share a moment."""
        same = (self.provider, self.model, self.scope, self.organization_id, self.project_id) == (
            other.provider,
            other.model,
            other.scope,
            other.organization_id,
            other.project_id,
        )
        if not same:
            return False
        end_a = self.end_ms if self.end_ms is not None else 2**62
        end_b = other.end_ms if other.end_ms is not None else 2**62
        return self.effective_ms < end_b and other.effective_ms < end_a

    @classmethod
    def parse(cls, data: Any) -> PricingRuleInput:
        """Validate, raising :class:`InvalidInputError` with one reason per bad field."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            # The union's tag is not a field users wrote: "pricing_structure.tiered.tiers" -> ".tiers".
            fields = {_untag(name): reason for name, reason in field_errors(exc).items()}
            raise InvalidInputError(f"invalid pricing: {', '.join(fields)}", fields) from None


class PricingRule(PricingRuleInput):
    """A stored rule: the input plus its id and history."""

    id: str
    created_at: datetime
    updated_at: datetime
    created_by: str | None = None


def _untag(name: str) -> str:
    for tag in ("per_token", "per_request", "tiered"):
        name = name.replace(f"pricing_structure.{tag}", "pricing_structure")
    return name


def new_rule_id() -> str:
    return f"price_{secrets.token_hex(8)}"
