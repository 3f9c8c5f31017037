"""Pricing: a usage event in, its exact cost out. Plain functions, no Faust.

List prices come from the ``genai-prices`` catalog (exact version pinned in pyproject),
resolved at the event's own timestamp, so a price change never re-prices old traffic.

Cost rule, per million tokens, every amount a ``Decimal``:

* ``input_cost     = (prompt_tokens - cached_tokens) * input rate``
* ``cached_cost    = cached_tokens * cache-read rate`` (the input rate where the catalog has none)
* ``output_cost    = (completion_tokens - reasoning_tokens) * output rate``
* ``reasoning_cost = reasoning_tokens * output rate`` (the catalog bills reasoning as output)

Where the catalog prices a model in context-length tiers, the tier is chosen by the event's
prompt tokens and applies to all its tokens, as the providers (and genai-prices) bill it.
Each component is quantized to 10 places; the total is their sum, so components add up exactly.
A model the catalog does not know is *unpriced*, never priced at zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from importlib.metadata import version

from genai_prices import data_snapshot
from genai_prices.types import ModelInfo, ModelPrice, Provider, TieredPrices

from schemas.priced import COST_PLACES, CostBreakdown, PricedUsage, PricingStatus
from schemas.usage import UsageEvent

MILLION = Decimal(1_000_000)


@dataclass(frozen=True, slots=True)
class TokenRates:
    """Per-million-token rates in force for one event."""

    input: Decimal
    cached: Decimal
    output: Decimal
    reasoning: Decimal


class UnknownPriceError(LookupError):
    """No price for this provider and model at this time; the event stays unpriced."""


class PriceCatalog:
    """List prices from the bundled genai-prices snapshot."""

    def __init__(self) -> None:
        self._snapshot = data_snapshot.get_snapshot()
        self.source = f"genai-prices=={version('genai-prices')}"
        self._models: dict[tuple[str, str], tuple[Provider, ModelInfo]] = {}

    def _model(self, provider: str, name: str) -> tuple[Provider, ModelInfo]:
        key = (provider, name)
        found = self._models.get(key)
        if found is None:
            try:
                found = self._snapshot.find_provider_model(name, None, provider, None)
            except LookupError as exc:
                raise UnknownPriceError(f"no list price for {provider}/{name} in {self.source}") from exc
            self._models[key] = found
        return found

    def rates(self, event: UsageEvent) -> tuple[TokenRates, str]:
        """The rates in force at the event's timestamp, and where they came from."""
        provider, model = self._resolve(event)
        price = model.get_prices(event.timestamp)
        if price.input_mtok is None and price.output_mtok is None:
            raise UnknownPriceError(f"{provider.id}/{model.id} has no token prices in {self.source}")
        prompt = event.prompt_tokens
        input_rate = _rate(price, "input_mtok", prompt)
        cached_rate = _rate(price, "cache_read_mtok", prompt, default=input_rate)
        output_rate = _rate(price, "output_mtok", prompt)
        rates = TokenRates(input=input_rate, cached=cached_rate, output=output_rate, reasoning=output_rate)
        return rates, f"{self.source} {provider.id}/{model.id}"

    def _resolve(self, event: UsageEvent) -> tuple[Provider, ModelInfo]:
        # A pinned version ("gpt-4-turbo-2024-04-09") is the more precise reference; fall
        # back to the model name when the catalog does not list the version.
        if event.model.version:
            try:
                return self._model(event.provider, event.model.version.lower())
            except UnknownPriceError:
                pass
        return self._model(event.provider, event.model.name.lower())


def _rate(price: ModelPrice, key: str, prompt_tokens: int, default: Decimal = Decimal(0)) -> Decimal:
    value = getattr(price, key)
    if value is None:
        return default
    if isinstance(value, TieredPrices):
        # Cliff tiers: the highest tier whose start the prompt exceeds applies to every token.
        applicable = value.base
        for tier in reversed(value.tiers):
            if prompt_tokens > tier.start:
                applicable = tier.price
                break
        return Decimal(applicable)
    return Decimal(value)


def _money(tokens: int, rate: Decimal) -> Decimal:
    return (Decimal(tokens) * rate / MILLION).quantize(COST_PLACES, rounding=ROUND_HALF_EVEN)


def cost_breakdown(event: UsageEvent, rates: TokenRates, source: str) -> CostBreakdown:
    """Apply the cost rule above to one event."""
    return CostBreakdown(
        input_cost=_money(event.prompt_tokens - event.cached_tokens, rates.input),
        cached_cost=_money(event.cached_tokens, rates.cached),
        output_cost=_money(event.completion_tokens - event.reasoning_tokens, rates.output),
        reasoning_cost=_money(event.reasoning_tokens, rates.reasoning),
        currency="USD",
        price_source=source,
    )


def price_event(event: UsageEvent, catalog: PriceCatalog, now: datetime) -> PricedUsage:
    """Price one valid event; an unknown price yields an unpriced record with its reason."""
    try:
        rates, source = catalog.rates(event)
    except UnknownPriceError as exc:
        return PricedUsage(
            event=event,
            pricing_status=PricingStatus.UNPRICED,
            cost=None,
            unpriced_reason=str(exc),
            priced_at=now,
        )
    return PricedUsage(
        event=event,
        pricing_status=PricingStatus.PRICED,
        cost=cost_breakdown(event, rates, source),
        priced_at=now,
    )
