"""Exact pricing against the pinned genai-prices catalog (streams/pricing.py)."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import ROUND_HALF_EVEN, Context, Decimal, localcontext
from functools import cache
from typing import Any

import pyarrow as pa
import pytest
from genai_prices import Usage, calc_price, data_snapshot
from genai_prices.types import (
    ClauseAnd,
    ClauseContains,
    ClauseEndsWith,
    ClauseEquals,
    ClauseOr,
    ClauseStartsWith,
    ModelInfo,
    ModelPrice,
    StartDateConstraint,
    TieredPrices,
    TimeOfDateConstraint,
)

from schemas.columns import USAGE_SCHEMA, event_record, from_millis, millis, table_from_events, table_from_records
from schemas.priced import COST_PLACES, MONEY, PRICED_SCHEMA, PricingStatus
from schemas.usage import MAX_TOKENS, UsageEvent
from streams.pricing import PriceCatalog, UnknownPriceError

UsageFactory = Callable[..., dict[str, Any]]
EventFactory = Callable[..., UsageEvent]

NOW = datetime(2025, 1, 15, 12, 0, tzinfo=UTC)
NOW_MS = millis(NOW)
EVENT_MS = millis(datetime(2025, 1, 15, 10, 0, tzinfo=UTC))
SOURCE = "genai-prices==0.2.3"
COMPONENTS = ("input_cost", "cached_cost", "cache_write_cost", "output_cost", "reasoning_cost", "request_cost")
COSTS = (*COMPONENTS, "total_cost")
ZERO = Decimal("0E-10")
UNIT = Decimal("1E-10")
WIDE = Context(prec=100)
SNAPSHOT = data_snapshot.get_snapshot()
PROVIDER_IDS = [provider.id for provider in SNAPSHOT.providers]
ALL_PROVIDERS = frozenset([*PROVIDER_IDS, "acme"])

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


@pytest.fixture
def event(usage_record: UsageFactory) -> EventFactory:
    """An event at EVENT_MS, 1000 prompt and 500 completion tokens, nothing cached; keywords override."""

    def build(provider: str = "openai", model: Any = "gpt-4o", **fields: Any) -> UsageEvent:
        values: dict[str, Any] = {
            "timestamp": "2025-01-15T10:00:00Z",
            "provider": provider,
            "model": model,
            "prompt_tokens": 1000,
            "completion_tokens": 500,
            "cached_tokens": 0,
        }
        values.update(fields)
        return UsageEvent.parse(usage_record(**values), providers=ALL_PROVIDERS)

    return build


def price(catalog: PriceCatalog, events: Sequence[UsageEvent]) -> list[dict[str, Any]]:
    """The priced rows of ``events`` priced as one batch, after checking the table's shape."""
    usage = table_from_events(events)
    table = catalog.price(usage, NOW_MS)
    assert table.schema.equals(PRICED_SCHEMA)
    assert table.select(USAGE_SCHEMA.names).equals(usage)  # the usage columns go through untouched
    rows: list[dict[str, Any]] = table.to_pylist()
    for row in rows:
        assert row["priced_at"] == NOW
        assert row["currency"] == "USD"
    return rows


def priced(row: dict[str, Any]) -> dict[str, Any]:
    """The row, once checked to be priced with well-formed costs."""
    assert row["pricing_status"] == PricingStatus.PRICED, row["unpriced_reason"]
    assert row["unpriced_reason"] is None
    for name in COSTS:
        assert isinstance(row[name], Decimal), name
        assert row[name].as_tuple().exponent == -10, name
        assert row[name] >= 0, name
    assert sum((row[name] for name in COMPONENTS), ZERO) == row["total_cost"]
    return row


def price_one(catalog: PriceCatalog, event: UsageEvent) -> dict[str, Any]:
    (row,) = price(catalog, [event])
    return priced(row)


def reference(event: UsageEvent, model: str | None = None) -> Decimal:
    """genai-prices' own total for the event, to 10 places."""
    usage = Usage(
        input_tokens=event.prompt_tokens,
        cache_read_tokens=event.cached_tokens,
        cache_write_tokens=event.cache_write_tokens,
        output_tokens=event.completion_tokens,
    )
    calc = calc_price(
        usage, model or event.model.name, provider_id=event.provider, genai_request_timestamp=event.timestamp
    )
    return calc.total_price.quantize(COST_PLACES, rounding=ROUND_HALF_EVEN)


def test_catalog_source_names_pinned_version(catalog: PriceCatalog) -> None:
    assert catalog.source == SOURCE
    # Every price boundary of the snapshot is on a whole minute: a minute's events share prices.
    assert catalog.period_ms == 60_000


@pytest.mark.parametrize(("provider", "model"), MODELS)
@pytest.mark.parametrize(
    ("prompt", "cached", "completion", "reasoning"),
    [(1000, 0, 500, 0), (123457, 10001, 54321, 0), (7, 3, 11, 5), (0, 0, 0, 0), (99999, 99999, 1, 1)],
)
def test_total_matches_genai_prices(
    catalog: PriceCatalog,
    event: EventFactory,
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
    row = price_one(catalog, ev)

    assert row["total_cost"] == reference(ev)
    assert row["price_source"].startswith(f"{SOURCE} {provider}/")
    assert row["event_id"] == ev.id


def test_fixture_events_match_genai_prices(catalog: PriceCatalog, usage_event: EventFactory) -> None:
    events = [usage_event() for _ in range(5)]
    for ev, row in zip(events, price(catalog, events), strict=True):
        assert priced(row)["total_cost"] == reference(ev)


def test_gpt_4o_exact_components(catalog: PriceCatalog, event: EventFactory) -> None:
    # gpt-4o: $2.5 input, $1.25 cache read, $10 output per million tokens.
    row = price_one(catalog, event(prompt_tokens=1000, cached_tokens=400, completion_tokens=100))
    assert row["input_cost"] == Decimal("0.0015000000")
    assert row["cached_cost"] == Decimal("0.0005000000")
    assert row["output_cost"] == Decimal("0.0010000000")
    assert row["reasoning_cost"] == ZERO
    assert row["total_cost"] == Decimal("0.0030000000")
    assert row["price_source"] == f"{SOURCE} openai/gpt-4o"


def test_cost_columns_are_clickhouse_decimals(catalog: PriceCatalog, event: EventFactory) -> None:
    table = catalog.price(table_from_events([event()]), NOW_MS)
    for name in COSTS:
        assert table.schema.field(name).type == MONEY


def test_cached_tokens_at_cache_read_rate(catalog: PriceCatalog, event: EventFactory) -> None:
    rates = catalog.rates("openai", "gpt-4o", None, EVENT_MS)
    assert (rates.input, rates.cached, rates.output, rates.reasoning) == (
        Decimal("2.5"),
        Decimal("1.25"),
        Decimal("10"),
        Decimal("10"),
    )
    assert rates.source == f"{SOURCE} openai/gpt-4o"
    assert json.loads(rates.description) == {
        "type": "catalog",
        "catalog": SOURCE,
        "model": "openai/gpt-4o",
        "input_price_per_million": "2.5",
        "cached_input_price_per_million": "1.25",
        "cache_write_price_per_million": "2.5",
        "output_price_per_million": "10",
        "reasoning_price_per_million": "10",
    }
    with_cache, without = (priced(r) for r in price(catalog, [event(cached_tokens=1000), event(cached_tokens=0)]))
    assert with_cache["cached_cost"] == Decimal("0.0012500000")
    assert with_cache["input_cost"] == ZERO
    assert without["input_cost"] == Decimal("0.0025000000")
    assert without["cached_cost"] == ZERO
    assert with_cache["total_cost"] < without["total_cost"]


def test_anthropic_cache_read_rate(catalog: PriceCatalog, event: EventFactory) -> None:
    row = price_one(catalog, event("anthropic", "claude-3-5-sonnet-20241022", prompt_tokens=10000, cached_tokens=8000))
    assert row["input_cost"] == Decimal("0.0060000000")  # 2000 * $3
    assert row["cached_cost"] == Decimal("0.0024000000")  # 8000 * $0.30
    assert row["output_cost"] == Decimal("0.0075000000")  # 500 * $15
    assert row["price_source"] == f"{SOURCE} anthropic/claude-3-5-sonnet"


def test_anthropic_cache_write_rate(catalog: PriceCatalog, event: EventFactory) -> None:
    ev = event("anthropic", "claude-3-5-sonnet-20241022", prompt_tokens=10000, cached_tokens=3000,
               cache_write_tokens=5000)  # fmt: skip
    row = price_one(catalog, ev)
    assert row["input_cost"] == Decimal("0.0060000000")  # 2000 uncached * $3
    assert row["cached_cost"] == Decimal("0.0009000000")  # 3000 * $0.30
    assert row["cache_write_cost"] == Decimal("0.0187500000")  # 5000 * $3.75
    assert row["total_cost"] == reference(ev)  # genai-prices' own calculator agrees


def test_cache_writes_at_input_rate_without_a_cache_write_price(catalog: PriceCatalog, event: EventFactory) -> None:
    row = price_one(catalog, event("openai", "gpt-4o", prompt_tokens=1000, cache_write_tokens=400))
    assert row["cache_write_cost"] == Decimal("0.0010000000")  # 400 * $2.5, the input rate
    assert row["input_cost"] == Decimal("0.0015000000")  # 600 * $2.5


@pytest.mark.parametrize(("provider", "model"), [("openai", "gpt-4"), ("mistral", "mistral-large-latest")])
def test_cached_tokens_at_input_rate_without_cache_price(
    catalog: PriceCatalog, event: EventFactory, provider: str, model: str
) -> None:
    rates = catalog.rates(provider, model, None, EVENT_MS)
    assert rates.cached == rates.input
    assert isinstance(rates.input, Decimal)
    with_cache, without = (
        priced(r) for r in price(catalog, [event(provider, model, cached_tokens=400), event(provider, model)])
    )
    assert with_cache["cached_cost"] == Decimal(400) * rates.input / Decimal(1_000_000)
    assert with_cache["cached_cost"] > 0
    assert with_cache["total_cost"] == without["total_cost"]


def test_gpt_4_cached_exact(catalog: PriceCatalog, event: EventFactory) -> None:
    row = price_one(catalog, event("openai", "gpt-4", cached_tokens=400))
    assert row["input_cost"] == Decimal("0.0180000000")  # 600 * $30
    assert row["cached_cost"] == Decimal("0.0120000000")  # 400 * $30
    assert row["output_cost"] == Decimal("0.0300000000")  # 500 * $60
    assert row["total_cost"] == Decimal("0.0600000000")


def test_reasoning_tokens_at_output_rate(catalog: PriceCatalog, event: EventFactory) -> None:
    reasoning, plain = (
        priced(r)
        for r in price(
            catalog,
            [
                event("openai", "o1", completion_tokens=1000, reasoning_tokens=400),
                event("openai", "o1", completion_tokens=1000),
            ],
        )
    )
    assert reasoning["output_cost"] == Decimal("0.0360000000")  # 600 * $60
    assert reasoning["reasoning_cost"] == Decimal("0.0240000000")  # 400 * $60
    assert plain["output_cost"] == Decimal("0.0600000000")
    assert plain["reasoning_cost"] == ZERO
    assert reasoning["total_cost"] == plain["total_cost"]


def test_only_reasoning_tokens(catalog: PriceCatalog, event: EventFactory) -> None:
    row = price_one(catalog, event("openai", "o1", completion_tokens=500, reasoning_tokens=500))
    assert row["output_cost"] == ZERO
    assert row["reasoning_cost"] == Decimal("0.0300000000")


GEMINI_TIERS = [
    # Base tier ($1.25 in / $5 out) up to and including 128000 prompt tokens.
    (128000, 0, Decimal("0.1650000000")),
    (127999, 0, Decimal("0.1649987500")),
    # Above it the higher tier ($2.5 in / $10 out) applies to every token, output too.
    (128001, 0, Decimal("0.3300025000")),
    (200000, 50000, Decimal("0.5100000000")),
]


@pytest.mark.parametrize(("prompt", "cached", "expected"), GEMINI_TIERS)
def test_gemini_tier_by_prompt_tokens(
    catalog: PriceCatalog, event: EventFactory, prompt: int, cached: int, expected: Decimal
) -> None:
    ev = event("google", "gemini-1.5-pro", prompt_tokens=prompt, cached_tokens=cached, completion_tokens=1000)
    row = price_one(catalog, ev)
    assert row["total_cost"] == expected
    assert row["total_cost"] == reference(ev)


def test_gemini_tiers_per_row_in_one_batch(catalog: PriceCatalog, event: EventFactory) -> None:
    """One group, one rate lookup, yet each row gets the tier of its own prompt."""
    events = [
        event("google", "gemini-1.5-pro", prompt_tokens=prompt, cached_tokens=cached, completion_tokens=1000)
        for prompt, cached, _ in GEMINI_TIERS
    ]
    rows = [priced(r) for r in price(catalog, events)]
    assert [r["total_cost"] for r in rows] == [expected for _, _, expected in GEMINI_TIERS]


def test_gemini_high_tier_rates(catalog: PriceCatalog, event: EventFactory) -> None:
    rates = catalog.rates("google", "gemini-1.5-pro", None, EVENT_MS)
    assert isinstance(rates.input, TieredPrices)
    assert isinstance(rates.output, TieredPrices)
    assert rates.input.base == Decimal("1.25")
    assert [(t.start, t.price) for t in rates.input.tiers] == [(128000, Decimal("2.5"))]
    assert rates.output.base == Decimal("5")
    assert [(t.start, t.price) for t in rates.output.tiers] == [(128000, Decimal("10"))]
    assert rates.cached == rates.input  # no cache-read price: cached tokens at the (tiered) input rate
    row = price_one(catalog, event("google", "gemini-1.5-pro", prompt_tokens=200000, completion_tokens=1000))
    assert row["input_cost"] == Decimal("0.5000000000")
    assert row["output_cost"] == Decimal("0.0100000000")


@pytest.mark.parametrize(
    ("provider", "model"), [("openai", "totally-unknown-model"), ("acme", "acme-1"), ("anthropic", "gpt-4o")]
)
def test_unknown_model_is_unpriced(catalog: PriceCatalog, event: EventFactory, provider: str, model: str) -> None:
    ev = event(provider, model)
    (row,) = price(catalog, [ev])

    assert row["pricing_status"] == PricingStatus.UNPRICED
    for name in (*COSTS, "price_source"):
        assert row[name] is None, name
    day = ev.timestamp.date().isoformat()
    assert row["unpriced_reason"] == f"Pricing table not found for {provider}/{model} on {day}"  # the seeds' COST_001
    assert row["event_id"] == ev.id
    with pytest.raises(UnknownPriceError, match=f"Pricing table not found for {provider}/{model} on "):
        catalog.rates(provider, model, None, EVENT_MS)


def test_unknown_model_in_a_batch_leaves_the_others_priced(catalog: PriceCatalog, event: EventFactory) -> None:
    events = [event(), event(model="no-such-model"), event("openai", "gpt-4")]
    rows = price(catalog, events)
    assert [r["pricing_status"] for r in rows] == ["priced", "unpriced", "priced"]
    assert [r["event_id"] for r in rows] == [e.id for e in events]
    assert rows[1]["total_cost"] is None
    assert priced(rows[0])["total_cost"] == reference(events[0])
    assert priced(rows[2])["total_cost"] == reference(events[2])


def test_model_without_token_prices_is_unpriced(catalog: PriceCatalog, event: EventFactory) -> None:
    # mistral-ocr is priced per page, not per token.
    ev = event("mistral", "mistral-ocr-latest")
    (row,) = price(catalog, [ev])
    assert row["pricing_status"] == PricingStatus.UNPRICED
    assert row["total_cost"] is None
    assert row["unpriced_reason"] == (
        f"Pricing table not found for mistral/mistral-ocr-latest on {ev.timestamp.date().isoformat()} "
        f"(mistral/mistral-ocr-latest has no token prices in {SOURCE})"
    )


def test_known_version_preferred_over_name(catalog: PriceCatalog, event: EventFactory) -> None:
    ev = event(model={"name": "gpt-4", "version": "gpt-4-turbo-2024-04-09"})
    row = price_one(catalog, ev)
    assert row["price_source"] == f"{SOURCE} openai/gpt-4-turbo"
    assert row["input_cost"] == Decimal("0.0100000000")  # 1000 * $10
    assert row["output_cost"] == Decimal("0.0150000000")  # 500 * $30
    assert row["total_cost"] == reference(ev, "gpt-4-turbo-2024-04-09")
    assert row["total_cost"] != reference(ev, "gpt-4")


def test_unknown_version_falls_back_to_name(catalog: PriceCatalog, event: EventFactory) -> None:
    ev = event(model={"name": "gpt-4", "version": "internal-build-7"})
    row = price_one(catalog, ev)
    assert row["price_source"] == f"{SOURCE} openai/gpt-4"
    assert row["total_cost"] == reference(ev, "gpt-4")


def test_model_name_case_insensitive(catalog: PriceCatalog, event: EventFactory) -> None:
    upper, lower = (priced(r) for r in price(catalog, [event(model="GPT-4o"), event(model="gpt-4o")]))
    assert upper["model"] == "GPT-4o"
    assert [upper[c] for c in (*COSTS, "price_source")] == [lower[c] for c in (*COSTS, "price_source")]


@pytest.mark.parametrize(
    ("provider", "model", "cached", "expected"),
    [
        # gemini-1.5-flash reads cache at $0.01875/M: 1 token = 187.5e-10 -> 188e-10, 3 = 562.5e-10 -> 562e-10.
        ("google", "gemini-1.5-flash", 1, Decimal("0.0000000188")),
        ("google", "gemini-1.5-flash", 3, Decimal("0.0000000562")),
        # nova-micro reads cache at $0.00875/M: 87.5e-10 -> 88e-10, 262.5e-10 -> 262e-10.
        ("aws", "amazon.nova-micro-v1:0", 1, Decimal("0.0000000088")),
        ("aws", "amazon.nova-micro-v1:0", 3, Decimal("0.0000000262")),
    ],
)
def test_components_round_half_even(
    catalog: PriceCatalog, event: EventFactory, provider: str, model: str, cached: int, expected: Decimal
) -> None:
    row = price_one(catalog, event(provider, model, prompt_tokens=cached, cached_tokens=cached, completion_tokens=0))
    assert row["cached_cost"] == expected
    assert row["total_cost"] == expected


def test_pricing_is_deterministic(catalog: PriceCatalog, event: EventFactory) -> None:
    usage = table_from_events(
        [event("anthropic", "claude-3-5-sonnet-20241022", prompt_tokens=31337, cached_tokens=1234), event()]
    )
    assert catalog.price(usage, NOW_MS).equals(PriceCatalog().price(usage, NOW_MS))


def test_prices_at_the_event_timestamp(catalog: PriceCatalog, event: EventFactory) -> None:
    """o3 went from $10/$40 to $2/$8 on 2025-06-10: the last millisecond before is the old price."""
    change = datetime(2025, 6, 10, tzinfo=UTC)
    before, after = (
        priced(r)
        for r in price(
            catalog,
            [
                event("openai", "o3", timestamp="2025-06-09T23:59:59.999Z"),
                event("openai", "o3", timestamp=change.isoformat()),
            ],
        )
    )
    assert (before["input_cost"], before["output_cost"]) == (Decimal("0.0100000000"), Decimal("0.0200000000"))
    assert (after["input_cost"], after["output_cost"]) == (Decimal("0.0020000000"), Decimal("0.0040000000"))
    assert before["price_source"] == after["price_source"] == f"{SOURCE} openai/o3"
    assert catalog.rates("openai", "o3", None, millis(change) - 1).input == Decimal(10)
    assert catalog.rates("openai", "o3", None, millis(change)).input == Decimal(2)


def test_cache_price_appearing_over_time(catalog: PriceCatalog, event: EventFactory) -> None:
    """ministral-8b had no cache price (cached tokens at the input rate) until 2025-12-02."""
    before, after = (
        priced(r)
        for r in price(
            catalog,
            [
                event("mistral", "ministral-8b-latest", timestamp="2025-12-01T23:59:59.999Z", cached_tokens=1000),
                event("mistral", "ministral-8b-latest", timestamp="2025-12-02T00:00:00Z", cached_tokens=1000),
            ],
        )
    )
    assert before["cached_cost"] == Decimal("0.0001000000")  # 1000 * $0.1
    assert after["cached_cost"] == Decimal("0.0000150000")  # 1000 * $0.015


def test_time_of_day_prices(catalog: PriceCatalog, event: EventFactory) -> None:
    """deepseek-chat costs $0.27 input from 00:30 to 16:30 UTC and $0.135 otherwise."""
    stamps = [
        "2025-01-15T00:29:59.999Z",  # off-peak
        "2025-01-15T00:30:00Z",  # peak
        "2025-01-15T16:29:59.999Z",  # peak
        "2025-01-15T16:30:00Z",  # off-peak
        "2025-01-15T16:30:59.999Z",  # off-peak, same minute as the previous one
    ]
    rows = [priced(r) for r in price(catalog, [event("deepseek", "deepseek-chat", timestamp=t) for t in stamps])]
    assert [r["input_cost"] for r in rows] == [
        Decimal("0.0001350000"),
        Decimal("0.0002700000"),
        Decimal("0.0002700000"),
        Decimal("0.0001350000"),
        Decimal("0.0001350000"),
    ]


def test_empty_table(catalog: PriceCatalog) -> None:
    table = catalog.price(USAGE_SCHEMA.empty_table(), NOW_MS)
    assert table.num_rows == 0
    assert table.schema.equals(PRICED_SCHEMA)


def test_chunked_table_with_different_dictionaries(catalog: PriceCatalog, event: EventFactory) -> None:
    """Two messages' tables side by side: each chunk has dictionaries of its own."""
    first = table_from_events([event(), event("anthropic", "claude-3-5-sonnet-20241022")])
    second = table_from_events([event("anthropic", "claude-3-5-sonnet-20241022"), event(model="no-such-model")])
    both = pa.concat_tables([first, second])
    assert both.column("model").num_chunks == 2

    rows = catalog.price(both, NOW_MS).to_pylist()

    one_by_one = [*catalog.price(first, NOW_MS).to_pylist(), *catalog.price(second, NOW_MS).to_pylist()]
    assert rows == one_by_one
    assert [r["pricing_status"] for r in rows] == ["priced", "priced", "priced", "unpriced"]


# --- exactness over the whole catalog -------------------------------------------------------
#
# Every model of the genai-prices snapshot, reached by a name the catalog resolves to it, priced
# with random token counts at timestamps on both sides of each of its price changes. The expected
# costs are computed here in Decimal, straight from the rule at the top of streams/pricing.py.


@dataclass(frozen=True)
class CatalogModel:
    provider: str
    ref: str
    """A model name the catalog resolves to ``info`` for ``provider``."""
    info: ModelInfo


def clause_refs(clause: Any) -> Iterator[str]:
    """Names a match clause accepts (regexes aside)."""
    if isinstance(clause, ClauseEquals):
        yield clause.equals
    elif isinstance(clause, ClauseStartsWith):
        yield clause.starts_with
    elif isinstance(clause, ClauseEndsWith):
        yield clause.ends_with
    elif isinstance(clause, ClauseContains):
        yield clause.contains
    elif isinstance(clause, ClauseOr):
        for item in clause.or_:
            yield from clause_refs(item)
    elif isinstance(clause, ClauseAnd):
        yield "".join(ref for item in clause.and_ for ref in clause_refs(item))


@cache
def catalog_models() -> tuple[CatalogModel, ...]:
    found = []
    for provider in SNAPSHOT.providers:
        for info in provider.models:
            for ref in (info.id, *clause_refs(info.match)):
                try:
                    _, model = SNAPSHOT.find_provider_model(ref.lower(), None, provider.id, None)
                except LookupError:
                    continue
                if model is info:
                    found.append(CatalogModel(provider.id, ref, info))
                    break
    return tuple(found)


TOKEN_PRICES = ("input_mtok", "cache_read_mtok", "output_mtok")


def model_prices(info: ModelInfo) -> list[ModelPrice]:
    return [info.prices] if isinstance(info.prices, ModelPrice) else [c.prices for c in info.prices]


def rate_values(info: ModelInfo) -> Iterator[Decimal]:
    for price in model_prices(info):
        for key in TOKEN_PRICES:
            value = getattr(price, key)
            if isinstance(value, TieredPrices):
                yield value.base
                yield from (tier.price for tier in value.tiers)
            elif value is not None:
                yield value


def float_noise(model: CatalogModel) -> bool:
    """A rate with more than 10 decimals, e.g. 0.18000000000000002 (a float written as a price)."""
    return any(-int(rate.as_tuple().exponent) > 10 for rate in rate_values(model.info))


def tier_starts(info: ModelInfo) -> list[int]:
    starts: set[int] = set()
    for price in model_prices(info):
        for key in TOKEN_PRICES:
            value = getattr(price, key)
            if isinstance(value, TieredPrices):
                starts.update(tier.start for tier in value.tiers)
    return sorted(starts)


def boundaries(info: ModelInfo) -> list[int]:
    """The milliseconds on both sides of each price change of the model."""
    moments: list[datetime] = []
    if isinstance(info.prices, list):
        for conditional in info.prices:
            constraint = conditional.constraint
            if isinstance(constraint, StartDateConstraint):
                moments.append(datetime.combine(constraint.start_date, time(), UTC))
            elif isinstance(constraint, TimeOfDateConstraint):
                for moment in (constraint.start_time, constraint.end_time):
                    moments.append(datetime.combine(date(2026, 3, 3), moment.replace(tzinfo=moment.tzinfo or UTC)))
    return [ms for moment in moments for ms in (millis(moment) - 1, millis(moment))]


FIRST_MS = millis(datetime(2023, 1, 1, tzinfo=UTC))
LAST_MS = millis(datetime(2027, 6, 1, tzinfo=UTC))


def random_count(rng: random.Random, low: int = 0, high: int = 300_000) -> int:
    """Mostly what calls use, sometimes the most an event may report."""
    roll = rng.random()
    if roll < 0.1:
        return low
    if roll < 0.9:
        return rng.randint(low, max(low, high))
    return rng.randint(low, MAX_TOKENS)


def usage_records(
    rng: random.Random, model: CatalogModel, usage_record: UsageFactory, huge: bool = True
) -> list[dict[str, Any]]:
    """Single-event Avro records for ``model``: valid events, then re-dated (prices are also
    published ahead of time, past what validation accepts as an event's timestamp)."""
    stamps = [*boundaries(model.info), *(rng.randint(FIRST_MS, LAST_MS) for _ in range(3))]
    starts = tier_starts(model.info)
    records = []
    for stamp in stamps:
        if starts and rng.random() < 0.5:
            prompt = rng.choice(starts) + rng.choice((0, 1))  # at a tier's start, and just past it
        else:
            prompt = random_count(rng) if huge else rng.randint(0, 300_000)
        completion = random_count(rng) if huge else rng.randint(0, 100_000)
        cached = rng.choice((0, prompt, rng.randint(0, prompt)))
        fields = {
            "provider": model.provider,
            "model": model.ref,
            "prompt_tokens": prompt,
            "cached_tokens": cached,
            "cache_write_tokens": rng.choice((0, rng.randint(0, prompt - cached))),
            "completion_tokens": completion,
            "reasoning_tokens": rng.choice((0, completion, rng.randint(0, completion))),
            "tags": [],
            "metadata": {},
        }
        record = event_record(UsageEvent.parse(usage_record(**fields), providers=ALL_PROVIDERS))
        record["timestamp"] = stamp
        records.append(record)
    return records


def applicable(rate: Decimal | TieredPrices | None, prompt: int) -> Decimal | None:
    """The rate for an event with ``prompt`` tokens: the tier of the highest start below the prompt."""
    if not isinstance(rate, TieredPrices):
        return rate
    reached = [tier for tier in rate.tiers if prompt > tier.start]
    return max(reached, key=lambda tier: tier.start).price if reached else rate.base


def expected_components(info: ModelInfo, record: dict[str, Any]) -> tuple[list[Decimal], list[Decimal]] | None:
    """(exact, rounded) cost components of the event, or None when the model has no token price then."""
    moment = from_millis(record["timestamp"])
    assert isinstance(moment, datetime)
    price = info.get_prices(moment)
    if price.input_mtok is None and price.output_mtok is None:
        return None
    prompt, cached, writes = record["prompt_tokens"], record["cached_tokens"], record["cache_write_tokens"]
    completion, reasoning = record["completion_tokens"], record["reasoning_tokens"]
    input_rate = applicable(price.input_mtok, prompt) or Decimal(0)
    cache_rate = applicable(price.cache_read_mtok, prompt)
    write_rate = applicable(price.cache_write_mtok, prompt)
    output_rate = applicable(price.output_mtok, prompt) or Decimal(0)
    parts = [
        (prompt - cached - writes, input_rate),
        (cached, input_rate if cache_rate is None else cache_rate),
        (writes, input_rate if write_rate is None else write_rate),
        (completion - reasoning, output_rate),
        (reasoning, output_rate),
        (0, Decimal(0)),  # request_cost: catalog prices are per token
    ]
    with localcontext(WIDE):
        exact = [Decimal(tokens) * rate / Decimal(1_000_000) for tokens, rate in parts]
        return exact, [cost.quantize(COST_PLACES, rounding=ROUND_HALF_EVEN) for cost in exact]


CALC_PRICES = {"input_mtok", "cache_read_mtok", "output_mtok", "cache_write_mtok", "cache_write_1h_mtok"}
"""Price keys an event of ours fully describes (a cache write is billed at ``cache_write_mtok``,
the 5-minute cache's price, as calc_price bills it; the 1-hour price needs a token count events
do not carry)."""


def genai_total(model: CatalogModel, record: dict[str, Any]) -> Decimal | None:
    """calc_price's total for the event, where the model has no price our events cannot describe
    (per request, per search, audio...)."""
    moment = from_millis(record["timestamp"])
    assert isinstance(moment, datetime)
    price = model.info.get_prices(moment)
    keys = {key for key, value in vars(price).items() if value is not None and not key.startswith("_")}
    if not keys <= CALC_PRICES:
        return None
    usage = Usage(
        input_tokens=record["prompt_tokens"],
        cache_read_tokens=record["cached_tokens"],
        cache_write_tokens=record["cache_write_tokens"],
        output_tokens=record["completion_tokens"],
    )
    calc = calc_price(usage, model.ref, provider_id=model.provider, genai_request_timestamp=moment)
    assert calc.model is model.info
    return calc.total_price


def mismatches(model: CatalogModel, records: list[dict[str, Any]], rows: list[dict[str, Any]]) -> list[str]:
    """What differs between the priced rows and the Decimal computation (empty when all agree)."""
    problems = []
    for record, row in zip(records, rows, strict=True):
        where = f"{model.provider}/{model.ref} at {record['timestamp']}"
        assert row["event_id"] == record["id"], where
        expected = expected_components(model.info, record)
        if expected is None:
            reason = f"({model.provider}/{model.info.id} has no token prices in {SOURCE})"
            if (
                row["pricing_status"] != "unpriced"
                or not row["unpriced_reason"].endswith(reason)
                or row["total_cost"] is not None
            ):
                problems.append(f"{where}: expected unpriced, got {row['pricing_status']} {row['unpriced_reason']}")
            continue
        exact, rounded = expected
        got = [row[name] for name in COMPONENTS]
        if row["pricing_status"] != "priced" or got != rounded or row["total_cost"] != sum(rounded, ZERO):
            problems.append(f"{where}: expected {rounded}, got {got} total {row['total_cost']}")
            continue
        if row["price_source"] != f"{SOURCE} {model.provider}/{model.info.id}":
            problems.append(f"{where}: price source {row['price_source']}")
        genai = genai_total(model, record)
        if genai is not None:
            with localcontext(WIDE):
                genai_rounded = genai.quantize(COST_PLACES, rounding=ROUND_HALF_EVEN)
                # calc_price rounds nothing: where a component had to be rounded (a rate of more
                # than 4 decimals), the sum of rounded parts may differ from the rounded sum, by
                # at most half a unit per component.
                slack = 0 if exact == rounded else 2 * UNIT
            if abs(row["total_cost"] - genai_rounded) > slack:
                problems.append(f"{where}: total {row['total_cost']}, genai-prices {genai_rounded}")
    return problems


def test_every_catalog_model_is_reached() -> None:
    assert len(catalog_models()) == sum(len(provider.models) for provider in SNAPSHOT.providers)


@pytest.mark.parametrize("provider", PROVIDER_IDS)
def test_catalog_prices_exactly(catalog: PriceCatalog, usage_record: UsageFactory, provider: str) -> None:
    rng = random.Random(f"exact-{provider}")
    problems = []
    for model in catalog_models():
        if model.provider != provider or float_noise(model):
            continue  # float-noise rates: test_batches_past_int64_with_fine_rates
        records = usage_records(rng, model, usage_record)
        rows = catalog.price(table_from_records(records), NOW_MS).to_pylist()
        problems += mismatches(model, records, rows)
    assert not problems, "\n".join(problems[:20])


def test_whole_catalog_in_one_batch(catalog: PriceCatalog, usage_record: UsageFactory) -> None:
    """Every model in one table (one event each, shuffled): groups resolve independently."""
    rng = random.Random("one-batch")
    models = [model for model in catalog_models() if not float_noise(model)]
    cases = [(model, usage_records(rng, model, usage_record, huge=False)[-1]) for model in models]
    rng.shuffle(cases)

    rows = catalog.price(table_from_records([record for _, record in cases]), NOW_MS).to_pylist()

    problems = []
    for (model, record), row in zip(cases, rows, strict=True):
        problems += mismatches(model, [record], [row])
    assert not problems, "\n".join(problems[:20])


def noisy_batch(usage_record: UsageFactory) -> tuple[list[CatalogModel], list[dict[str, Any]]]:
    rng = random.Random("noise")
    models = [model for model in catalog_models() if float_noise(model)]
    assert models
    records = [usage_records(rng, model, usage_record, huge=False)[-1] for model in models]
    return models, records


def huge_mixed_batch(usage_record: UsageFactory) -> tuple[list[CatalogModel], list[dict[str, Any]]]:
    """Known providers only: a cache read at $0.01875/M beside 400 billion cached tokens at $150/M."""
    models = [
        next(m for m in catalog_models() if (m.provider, m.info.id) == ("google", "gemini-1.5-flash")),
        next(m for m in catalog_models() if (m.provider, m.info.id) == ("openai", "o1-pro")),
    ]
    records = []
    for model, tokens in zip(models, (10, 4 * 10**11), strict=True):
        fields = {"provider": model.provider, "model": model.ref, "prompt_tokens": tokens, "cached_tokens": tokens}
        records.append(event_record(UsageEvent.parse(usage_record(**fields))))
    return models, records


@pytest.mark.parametrize("batch", [noisy_batch, huge_mixed_batch], ids=["float-noise-rates", "huge-mixed"])
def test_batches_past_int64_with_fine_rates(
    catalog: PriceCatalog,
    usage_record: UsageFactory,
    batch: Callable[[UsageFactory], tuple[list[CatalogModel], list[dict[str, Any]]]],
) -> None:
    models, records = batch(usage_record)
    problems = []
    for model, record in zip(models, records, strict=True):
        rows = catalog.price(table_from_records([record]), NOW_MS).to_pylist()
        problems += mismatches(model, [record], rows)
    rows = catalog.price(table_from_records(records), NOW_MS).to_pylist()
    for model, record, row in zip(models, records, rows, strict=True):
        problems += mismatches(model, [record], [row])
    assert not problems, "\n".join(problems[:20])
