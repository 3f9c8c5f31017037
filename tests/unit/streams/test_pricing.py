"""Exact pricing against the pinned genai-prices catalog (streams/pricing.py)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from genai_prices import Usage, calc_price

from schemas.priced import COST_PLACES, CostBreakdown, PricedUsage, PricingStatus
from schemas.provider import allowed_providers
from schemas.usage import UsageEvent
from streams.pricing import PriceCatalog, TokenRates, cost_breakdown, price_event

NOW = datetime(2025, 1, 15, 12, 0, tzinfo=UTC)
SOURCE = "genai-prices==0.2.3"
EventFactory = Callable[..., UsageEvent]

MODELS = [
    ("openai", "gpt-4o"),
    ("openai", "gpt-4"),
    ("anthropic", "claude-3-5-sonnet-20241022"),
    ("google", "gemini-1.5-pro"),
    ("mistral", "mistral-large-latest"),
    ("cohere", "command-r-plus"),
    ("openai", "o1"),
]


@pytest.fixture(scope="module")
def catalog() -> PriceCatalog:
    return PriceCatalog()


def event(provider: str = "openai", model: Any = "gpt-4o", **fields: Any) -> UsageEvent:
    record: dict[str, Any] = {
        "id": "evt-1",
        "timestamp": "2025-01-15T10:00:00Z",
        "provider": provider,
        "model": model,
        "organization_id": "org-1",
        "prompt_tokens": 1000,
        "completion_tokens": 500,
    }
    record.update(fields)
    return UsageEvent.parse(record, providers=allowed_providers(("acme",)))


def cost_of(priced: PricedUsage) -> CostBreakdown:
    assert priced.pricing_status is PricingStatus.PRICED, priced.unpriced_reason
    assert priced.cost is not None
    assert priced.unpriced_reason is None
    return priced.cost


def reference(ev: UsageEvent, model: str | None = None) -> Decimal:
    usage = Usage(input_tokens=ev.prompt_tokens, cache_read_tokens=ev.cached_tokens, output_tokens=ev.completion_tokens)
    calc = calc_price(usage, model or ev.model.name, provider_id=ev.provider, genai_request_timestamp=ev.timestamp)
    return Decimal(calc.total_price).quantize(COST_PLACES)


def components(cost: CostBreakdown) -> list[Decimal]:
    return [cost.input_cost, cost.cached_cost, cost.output_cost, cost.reasoning_cost]


def test_catalog_source_names_pinned_version(catalog: PriceCatalog) -> None:
    assert catalog.source == SOURCE


@pytest.mark.parametrize(("provider", "model"), MODELS)
@pytest.mark.parametrize(
    ("prompt", "cached", "completion", "reasoning"),
    [(1000, 0, 500, 0), (123457, 10001, 54321, 0), (7, 3, 11, 5), (0, 0, 0, 0), (99999, 99999, 1, 1)],
)
def test_total_matches_genai_prices(
    catalog: PriceCatalog,
    provider: str,
    model: str,
    prompt: int,
    cached: int,
    completion: int,
    reasoning: int,
) -> None:
    ev = event(
        provider,
        model,
        prompt_tokens=prompt,
        cached_tokens=cached,
        completion_tokens=completion,
        reasoning_tokens=reasoning,
    )
    priced = price_event(ev, catalog, NOW)
    cost = cost_of(priced)

    assert cost.total_cost == reference(ev)
    assert sum(components(cost), Decimal(0)) == cost.total_cost
    for part in [*components(cost), cost.total_cost]:
        assert isinstance(part, Decimal)
        assert part.as_tuple().exponent == -10
        assert part >= 0
    assert cost.currency == "USD"
    assert cost.price_source.startswith(f"{SOURCE} {provider}/")
    assert priced.event == ev
    assert priced.priced_at == NOW


def test_fixture_events_match_genai_prices(catalog: PriceCatalog, usage_event: EventFactory) -> None:
    for _ in range(5):
        ev = usage_event()
        assert cost_of(price_event(ev, catalog, NOW)).total_cost == reference(ev)


def test_gpt_4o_exact_components(catalog: PriceCatalog) -> None:
    # gpt-4o: $2.5 input, $1.25 cache read, $10 output per million tokens.
    cost = cost_of(price_event(event(prompt_tokens=1000, cached_tokens=400, completion_tokens=100), catalog, NOW))
    assert cost.input_cost == Decimal("0.0015000000")
    assert cost.cached_cost == Decimal("0.0005000000")
    assert cost.output_cost == Decimal("0.0010000000")
    assert cost.reasoning_cost == Decimal("0E-10")
    assert cost.total_cost == Decimal("0.0030000000")
    assert cost.price_source == f"{SOURCE} openai/gpt-4o"


def test_cached_tokens_at_cache_read_rate(catalog: PriceCatalog) -> None:
    rates, _ = catalog.rates(event())
    assert rates == TokenRates(
        input=Decimal("2.5"), cached=Decimal("1.25"), output=Decimal("10"), reasoning=Decimal("10")
    )
    with_cache = cost_of(price_event(event(cached_tokens=1000), catalog, NOW))
    without = cost_of(price_event(event(cached_tokens=0), catalog, NOW))
    assert with_cache.cached_cost == Decimal("0.0012500000")
    assert with_cache.input_cost == Decimal("0E-10")
    assert without.input_cost == Decimal("0.0025000000")
    assert with_cache.total_cost < without.total_cost


def test_anthropic_cache_read_rate(catalog: PriceCatalog) -> None:
    ev = event("anthropic", "claude-3-5-sonnet-20241022", prompt_tokens=10000, cached_tokens=8000)
    cost = cost_of(price_event(ev, catalog, NOW))
    assert cost.input_cost == Decimal("0.0060000000")  # 2000 * $3
    assert cost.cached_cost == Decimal("0.0024000000")  # 8000 * $0.30
    assert cost.output_cost == Decimal("0.0075000000")  # 500 * $15
    assert cost.price_source == f"{SOURCE} anthropic/claude-3-5-sonnet"


@pytest.mark.parametrize(("provider", "model"), [("openai", "gpt-4"), ("mistral", "mistral-large-latest")])
def test_cached_tokens_at_input_rate_without_cache_price(catalog: PriceCatalog, provider: str, model: str) -> None:
    rates, _ = catalog.rates(event(provider, model))
    assert rates.cached == rates.input
    with_cache = cost_of(price_event(event(provider, model, cached_tokens=400), catalog, NOW))
    without = cost_of(price_event(event(provider, model, cached_tokens=0), catalog, NOW))
    assert with_cache.cached_cost == Decimal(400) * rates.input / Decimal(1_000_000)
    assert with_cache.cached_cost > 0
    assert with_cache.total_cost == without.total_cost


def test_gpt_4_cached_exact(catalog: PriceCatalog) -> None:
    cost = cost_of(price_event(event("openai", "gpt-4", cached_tokens=400), catalog, NOW))
    assert cost.input_cost == Decimal("0.0180000000")  # 600 * $30
    assert cost.cached_cost == Decimal("0.0120000000")  # 400 * $30
    assert cost.output_cost == Decimal("0.0300000000")  # 500 * $60
    assert cost.total_cost == Decimal("0.0600000000")


def test_reasoning_tokens_at_output_rate(catalog: PriceCatalog) -> None:
    reasoning = cost_of(price_event(event("openai", "o1", completion_tokens=1000, reasoning_tokens=400), catalog, NOW))
    plain = cost_of(price_event(event("openai", "o1", completion_tokens=1000), catalog, NOW))

    assert reasoning.output_cost == Decimal("0.0360000000")  # 600 * $60
    assert reasoning.reasoning_cost == Decimal("0.0240000000")  # 400 * $60
    assert plain.output_cost == Decimal("0.0600000000")
    assert plain.reasoning_cost == Decimal("0E-10")
    assert reasoning.total_cost == plain.total_cost


def test_only_reasoning_tokens(catalog: PriceCatalog) -> None:
    cost = cost_of(price_event(event("openai", "o1", completion_tokens=500, reasoning_tokens=500), catalog, NOW))
    assert cost.output_cost == Decimal("0E-10")
    assert cost.reasoning_cost == Decimal("0.0300000000")


@pytest.mark.parametrize(
    ("prompt", "cached", "expected"),
    [
        # Base tier ($1.25 in / $5 out) up to and including 128000 prompt tokens.
        (128000, 0, Decimal("0.1650000000")),
        (127999, 0, Decimal("0.1649987500")),
        # Above it the higher tier ($2.5 in / $10 out) applies to every token, output too.
        (128001, 0, Decimal("0.3300025000")),
        (200000, 50000, Decimal("0.5100000000")),
    ],
)
def test_gemini_tier_by_prompt_tokens(catalog: PriceCatalog, prompt: int, cached: int, expected: Decimal) -> None:
    ev = event("google", "gemini-1.5-pro", prompt_tokens=prompt, cached_tokens=cached, completion_tokens=1000)
    cost = cost_of(price_event(ev, catalog, NOW))
    assert cost.total_cost == expected
    assert cost.total_cost == reference(ev)


def test_gemini_high_tier_rates(catalog: PriceCatalog) -> None:
    low, _ = catalog.rates(event("google", "gemini-1.5-pro", prompt_tokens=128000))
    high, _ = catalog.rates(event("google", "gemini-1.5-pro", prompt_tokens=128001))
    assert (low.input, low.output) == (Decimal("1.25"), Decimal("5"))
    assert (high.input, high.output, high.cached) == (Decimal("2.5"), Decimal("10"), Decimal("2.5"))
    ev = event("google", "gemini-1.5-pro", prompt_tokens=200000, completion_tokens=1000)
    cost = cost_of(price_event(ev, catalog, NOW))
    assert cost.input_cost == Decimal("0.5000000000")
    assert cost.output_cost == Decimal("0.0100000000")


@pytest.mark.parametrize(
    ("provider", "model"), [("openai", "totally-unknown-model"), ("acme", "acme-1"), ("anthropic", "gpt-4o")]
)
def test_unknown_model_is_unpriced(catalog: PriceCatalog, provider: str, model: str) -> None:
    ev = event(provider, model)
    priced = price_event(ev, catalog, NOW)

    assert priced.pricing_status is PricingStatus.UNPRICED
    assert priced.cost is None
    assert priced.unpriced_reason == f"no list price for {provider}/{model} in {SOURCE}"
    assert priced.event == ev
    assert priced.priced_at == NOW


def test_known_version_preferred_over_name(catalog: PriceCatalog) -> None:
    ev = event(model={"name": "gpt-4", "version": "gpt-4-turbo-2024-04-09"})
    cost = cost_of(price_event(ev, catalog, NOW))
    assert cost.price_source == f"{SOURCE} openai/gpt-4-turbo"
    assert cost.input_cost == Decimal("0.0100000000")  # 1000 * $10
    assert cost.output_cost == Decimal("0.0150000000")  # 500 * $30
    assert cost.total_cost == reference(ev, "gpt-4-turbo-2024-04-09")
    assert cost.total_cost != reference(ev, "gpt-4")


def test_unknown_version_falls_back_to_name(catalog: PriceCatalog) -> None:
    ev = event(model={"name": "gpt-4", "version": "internal-build-7"})
    cost = cost_of(price_event(ev, catalog, NOW))
    assert cost.price_source == f"{SOURCE} openai/gpt-4"
    assert cost.total_cost == reference(ev, "gpt-4")


def test_model_name_case_insensitive(catalog: PriceCatalog) -> None:
    upper = cost_of(price_event(event(model="GPT-4o"), catalog, NOW))
    lower = cost_of(price_event(event(model="gpt-4o"), catalog, NOW))
    assert upper == lower


def test_cost_breakdown_rounds_half_even() -> None:
    rates = TokenRates(input=Decimal("0.00015"), cached=Decimal(0), output=Decimal("0.00025"), reasoning=Decimal(0))
    # 1 token at $0.00015/M = 1.5e-10 -> 2e-10; 1 token at $0.00025/M = 2.5e-10 -> 2e-10 (half even).
    cost = cost_breakdown(event(prompt_tokens=1, completion_tokens=1), rates, "test")
    assert cost.input_cost == Decimal("2E-10")
    assert cost.output_cost == Decimal("2E-10")
    assert cost.total_cost == Decimal("4E-10")
    assert cost.price_source == "test"


def test_pricing_is_deterministic(catalog: PriceCatalog) -> None:
    ev = event("anthropic", "claude-3-5-sonnet-20241022", prompt_tokens=31337, cached_tokens=1234)
    assert price_event(ev, catalog, NOW) == price_event(ev, PriceCatalog(), NOW)
