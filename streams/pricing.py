"""Pricing: a table of usage events in, the same events with their exact costs out. No Faust.

Each event is priced by the first of: a custom rule of its project, of its organization, a
global custom rule (:mod:`streams.rules`, :mod:`schemas.pricing_rule`), the list price of the
``genai-prices`` catalog (exact version pinned in pyproject); else it is *unpriced* with the
seeds' ``COST_001`` reason, never priced at zero. Prices are those in force at each event's
own timestamp, so a price change never re-prices old traffic.

Cost rule, per million tokens, every amount exact:

* ``input_cost     = (prompt_tokens - cached_tokens - cache_write_tokens) * input rate``
* ``cached_cost    = cached_tokens * cache-read rate`` (the input rate where the catalog has none)
* ``cache_write_cost = cache_write_tokens * cache-write rate`` (the input rate where none)
* ``output_cost    = (completion_tokens - reasoning_tokens) * output rate``
* ``reasoning_cost = reasoning_tokens * reasoning rate`` (the catalog bills reasoning as output)
* ``request_cost   = price_per_request + overage rate * tokens beyond those included`` (per-request rules)

Graduated tiers (tiered rules) split an event at each threshold it crosses; its tokens count
in the order cached, cache write, uncached input, reasoning, output, from the month's volume before it
(:mod:`streams.volume`), and each class of token is rounded once, over all its tiers.

Where the catalog prices a model in context-length tiers, the tier is chosen by the event's
prompt tokens and applies to all its tokens, as the providers (and genai-prices) bill it.
Each component is rounded half to even to 10 places; the total is their sum, so components
add up exactly. A model the catalog does not know is *unpriced*, never priced at zero.

A batch is priced by groups: events of one model whose timestamps fall in one price period
share their rates, so the catalog is asked once per group and the arithmetic runs on columns
(:mod:`streams.money`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, time
from decimal import Decimal
from importlib.metadata import version

import numpy as np
import pyarrow as pa
from genai_prices import data_snapshot
from genai_prices.types import ModelInfo, ModelPrice, Provider, TieredPrices, TimeOfDateConstraint

from schemas.columns import TIMESTAMP, codes, dictionary_array, from_millis, unique_rows
from schemas.priced import PRICED_SCHEMA, PricingStatus, pricing_not_found
from schemas.pricing_rule import PerRequest, PerToken, PricingRule, Tier, Tiered
from streams.money import common_scale, cost_units, decimal_array, fixed_point, round_units
from streams.rules import RuleBook

_MINUTE_MS = 60_000


class UnknownPriceError(LookupError):
    """No price for this provider and model at this time; the event stays unpriced."""


@dataclass(frozen=True, slots=True)
class Rates:
    """The prices in force for a group of events: per million tokens, flat or tiered."""

    input: Decimal | TieredPrices
    cached: Decimal | TieredPrices
    cache_write: Decimal | TieredPrices
    output: Decimal | TieredPrices
    reasoning: Decimal | TieredPrices
    source: str
    description: str
    """The rates as JSON (``price_rates``): with the event's tokens, enough to recompute its cost."""


class PriceCatalog:
    """List prices from the bundled genai-prices snapshot, looked up once per group."""

    def __init__(self) -> None:
        self._snapshot = data_snapshot.get_snapshot()
        self.source = f"genai-prices=={version('genai-prices')}"
        self._models: dict[tuple[str, str, str | None], tuple[Provider, ModelInfo] | UnknownPriceError] = {}
        self._rates: dict[tuple[str, str, str | None, int], Rates | UnknownPriceError] = {}
        self.period_ms = _MINUTE_MS if self._minute_aligned() else 1
        """Events whose timestamps share this many milliseconds (from the epoch) share prices."""

    def _minute_aligned(self) -> bool:
        """Whether every price boundary in the catalog falls on a whole UTC minute, so that
        events of the same minute always share their prices (dates are whole days)."""
        for provider in self._snapshot.providers:
            for model in provider.models:
                for conditional in model.prices if isinstance(model.prices, list) else ():
                    constraint = conditional.constraint
                    if isinstance(constraint, TimeOfDateConstraint) and not (
                        _whole_minute(constraint.start_time) and _whole_minute(constraint.end_time)
                    ):
                        return False
        return True

    def rates(self, provider: str, model: str, model_version: str | None, timestamp_ms: int) -> Rates:
        """The rates in force at ``timestamp_ms``; :class:`UnknownPriceError` if there are none."""
        key = (provider, model, model_version, timestamp_ms // self.period_ms)
        found = self._rates.get(key)
        if found is None:
            try:
                found = self._lookup(provider, model, model_version, timestamp_ms)
            except UnknownPriceError as exc:
                found = exc
            if len(self._rates) > 100_000:
                self._rates.clear()  # a bound, not an eviction policy: backfills span many periods
            self._rates[key] = found
        if isinstance(found, UnknownPriceError):
            raise found
        return found

    def _lookup(self, provider: str, model: str, model_version: str | None, timestamp_ms: int) -> Rates:
        try:
            found_provider, info = self._resolve(provider, model, model_version)
        except UnknownPriceError:
            raise UnknownPriceError(not_found(provider, model, timestamp_ms)) from None
        moment = from_millis(timestamp_ms)
        if not isinstance(moment, datetime):
            raise UnknownPriceError(f"no price at timestamp {timestamp_ms}")
        price = info.get_prices(moment)
        if price.input_mtok is None and price.output_mtok is None:
            detail = f"{found_provider.id}/{info.id} has no token prices in {self.source}"
            raise UnknownPriceError(f"{not_found(provider, model, timestamp_ms)} ({detail})")
        input_rate = _rate(price, "input_mtok")
        output_rate = _rate(price, "output_mtok")
        cached_rate = _rate(price, "cache_read_mtok", default=input_rate)
        cache_write_rate = _rate(price, "cache_write_mtok", default=input_rate)
        description = {
            "type": "catalog",
            "catalog": self.source,
            "model": f"{found_provider.id}/{info.id}",
            "input_price_per_million": _describe(input_rate),
            "cached_input_price_per_million": _describe(cached_rate),
            "cache_write_price_per_million": _describe(cache_write_rate),
            "output_price_per_million": _describe(output_rate),
            "reasoning_price_per_million": _describe(output_rate),
        }
        return Rates(
            input=input_rate,
            cached=cached_rate,
            cache_write=cache_write_rate,
            output=output_rate,
            reasoning=output_rate,
            source=f"{self.source} {found_provider.id}/{info.id}",
            description=json.dumps(description, separators=(",", ":")),
        )

    def _resolve(self, provider: str, model: str, model_version: str | None) -> tuple[Provider, ModelInfo]:
        # A pinned version ("gpt-4-turbo-2024-04-09") is the more precise reference; fall
        # back to the model name when the catalog does not list the version.
        key = (provider, model, model_version)
        found = self._models.get(key)
        if found is None:
            found = UnknownPriceError(f"Pricing table not found for {provider}/{model} in {self.source}")
            for name in (model_version, model):
                if not name:
                    continue
                try:
                    found = self._snapshot.find_provider_model(name.lower(), None, provider, None)
                    break
                except LookupError:
                    continue
            self._models[key] = found
        if isinstance(found, UnknownPriceError):
            raise found
        return found

    def price(self, usage: pa.Table, priced_at_ms: int) -> pa.Table:
        """``usage`` priced by list prices alone (no custom rules)."""
        return Pricer(self).price(usage, priced_at_ms)


def not_found(provider: str, model: str, timestamp_ms: int) -> str:
    """The ``COST_001`` message for an event at ``timestamp_ms``."""
    moment = from_millis(timestamp_ms)
    if not isinstance(moment, datetime):
        return f"Pricing table not found for {provider}/{model} on {timestamp_ms}"
    return pricing_not_found(provider, model, moment.date())


@dataclass
class Pricer:
    """Custom rules first, then the catalog. ``rules`` is replaced whole when the control
    topic publishes new ones; a take in progress keeps the book it started with."""

    catalog: PriceCatalog
    rules: RuleBook = field(default_factory=RuleBook)

    def price(self, usage: pa.Table, priced_at_ms: int, volume_before: np.ndarray | None = None) -> pa.Table:
        """``usage`` (validated usage columns) with the price columns of ``PRICED_SCHEMA``.

        ``volume_before``: per row, the month's volume of its (organization, provider, model)
        before the event (:class:`streams.volume.Volumes`); tiered rules need it, 0 if not given.
        """
        usage = usage.combine_chunks()
        if volume_before is None:
            volume_before = np.zeros(usage.num_rows, dtype=np.int64)
        return _TablePricer(self.catalog, self.rules, usage, volume_before).run(priced_at_ms)


def _whole_minute(value: time) -> bool:
    offset = value.utcoffset()
    return value.second == 0 and value.microsecond == 0 and (offset is None or offset.seconds % 60 == 0)


def _describe(rate: Decimal | TieredPrices) -> object:
    if isinstance(rate, TieredPrices):
        return {"base": str(rate.base), "tiers": [{"start": t.start, "price": str(t.price)} for t in rate.tiers]}
    return str(rate)


def _rate(price: ModelPrice, key: str, default: Decimal | TieredPrices = Decimal(0)) -> Decimal | TieredPrices:
    value = getattr(price, key)
    if value is None:
        return default
    return value if isinstance(value, TieredPrices) else Decimal(value)


def _numerators(rate: Decimal | TieredPrices, prompt: np.ndarray) -> tuple[np.ndarray | int, int]:
    """The numerator of ``rate`` over a power of ten, per row when tiered, and the power.

    Cliff tiers: the highest tier whose start the prompt exceeds applies to every token.
    """
    if not isinstance(rate, TieredPrices):
        return fixed_point(rate)
    tiers = sorted(rate.tiers, key=lambda tier: tier.start)
    values, scale = common_scale([Decimal(rate.base), *(Decimal(t.price) for t in tiers)])
    starts = np.array([t.start for t in tiers], dtype=np.int64)
    # searchsorted(side="left") counts the starts strictly below each prompt: 0 is the base.
    return np.array(values, dtype=object)[np.searchsorted(starts, prompt, side="left")], scale


_COMPONENTS = ("input", "cached", "cache_write", "output", "reasoning")
_ALL = (*_COMPONENTS, "request")
_SAFE = 2**62


@dataclass
class _Component:
    """One cost component's rate for every row: numerators over ``10**scale`` (Python ints
    until the scale is known), filled group by group."""

    numerators: np.ndarray
    scales: np.ndarray

    @classmethod
    def empty(cls, size: int) -> _Component:
        return cls(np.zeros(size, dtype=object), np.zeros(size, dtype=np.int64))

    def set(self, rows: np.ndarray, numerators: np.ndarray | int, scale: int) -> None:
        self.numerators[rows] = numerators
        self.scales[rows] = scale

    def units(self, tokens: np.ndarray) -> np.ndarray:
        scale = int(self.scales.max()) if len(self.scales) else 0
        shifts = scale - self.scales
        # Powers of ten as Python ints: 10**19 and above wrap silently in int64.
        powers = np.array([10**n for n in range(int(shifts.max(initial=0)) + 1)], dtype=object)
        numerators = self.numerators * powers[shifts]
        if len(numerators) and numerators.max() < 2**62:
            numerators = numerators.astype(np.int64)
        return cost_units(tokens, numerators, scale)


class _Labels:
    """A text column built group by group: codes into a small dictionary (null where unset)."""

    def __init__(self, size: int, default: str | None = None) -> None:
        self.texts: dict[str, int] = {}
        self.codes = np.full(size, -1 if default is None else 0, dtype=np.int32)
        if default is not None:
            self.texts[default] = 0

    def set(self, rows: np.ndarray, text: str) -> None:
        self.codes[rows] = self.texts.setdefault(text, len(self.texts))

    def array(self) -> pa.DictionaryArray:
        missing = self.codes < 0
        indices = pa.array(self.codes, mask=missing if missing.any() else None)
        return pa.DictionaryArray.from_arrays(indices, pa.array(list(self.texts), pa.string()))


def tiered_units(tiers: list[Tier], before: np.ndarray, tokens: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Graduated tiers: per class of token, the exact sum over tiers of (tokens in the tier x
    its rate), rounded once. Classes count in the order cached, cache write, input, reasoning, output from
    each event's ``before`` volume. Object arrays of Python ints: volumes are unbounded."""
    bounds = [tier.threshold for tier in tiers] + [2**80]
    rate_of = {
        "cached": lambda t: t.cached_rate,
        "cache_write": lambda t: t.cache_write_rate,
        "input": lambda t: t.input_price_per_million,
        "reasoning": lambda t: t.reasoning_rate,
        "output": lambda t: t.output_price_per_million,
    }
    start = before.astype(object)
    result = {}
    for name in ("cached", "cache_write", "input", "reasoning", "output"):
        end = start + tokens[name].astype(object)
        numerators, scale = common_scale([rate_of[name](tier) for tier in tiers])
        product = np.zeros(len(start), dtype=object)
        for index, numerator in enumerate(numerators):
            low, high = bounds[index], bounds[index + 1]
            inside = np.minimum(end, high) - np.maximum(start, low)
            product = product + np.where(inside > 0, inside, 0) * numerator
        result[name] = round_units(product, scale + 6)
        start = end
    return result


def request_units(structure: PerRequest, total_tokens: np.ndarray) -> np.ndarray:
    """Per-request: the fee, plus the overage rate on the tokens beyond those included."""
    fee, fee_scale = fixed_point(structure.price_per_request)
    fees = round_units(np.full(len(total_tokens), fee, dtype=object), fee_scale)
    overage_tokens = np.maximum(total_tokens.astype(object) - structure.included_tokens, 0)
    rate, rate_scale = fixed_point(structure.overage_price_per_million)
    overage = round_units(overage_tokens * rate, rate_scale + 6)
    result: np.ndarray = fees + overage
    return result


def _narrow(units: np.ndarray) -> np.ndarray:
    """int64 again when every amount fits (the fast column path)."""
    if units.dtype == object and (not len(units) or max(abs(int(units.max())), abs(int(units.min()))) < _SAFE):
        return units.astype(np.int64)
    return units


@dataclass
class _TablePricer:
    """Prices one table: rates looked up once per group, arithmetic once per column."""

    catalog: PriceCatalog
    rules: RuleBook
    usage: pa.Table
    volume_before: np.ndarray

    def __post_init__(self) -> None:
        size = self.usage.num_rows
        column = self.usage.column
        prompt = column("prompt_tokens").to_numpy()
        cached = column("cached_tokens").to_numpy()
        cache_write = column("cache_write_tokens").to_numpy()
        completion = column("completion_tokens").to_numpy()
        reasoning = column("reasoning_tokens").to_numpy()
        self.prompt = prompt
        self.tokens = {
            "input": prompt - cached - cache_write,
            "cached": cached,
            "cache_write": cache_write,
            "output": completion - reasoning,
            "reasoning": reasoning,
        }
        self.components = {name: _Component.empty(size) for name in _COMPONENTS}
        self.direct: dict[str, np.ndarray] = {}
        self.priced = np.zeros(size, dtype=bool)
        self.sources = _Labels(size)
        self.rates = _Labels(size)
        self.reasons = _Labels(size)
        self.currency = _Labels(size, default="USD")
        self.tier_volume: np.ndarray | None = None

    def run(self, priced_at_ms: int) -> pa.Table:
        size = self.usage.num_rows
        for key, rows in self._groups():
            self._price_group(key, rows)
        units = {name: self.components[name].units(self.tokens[name]) for name in _COMPONENTS}
        units["request"] = np.zeros(size, dtype=np.int64)
        for name, extra in self.direct.items():
            units[name] = _narrow(units[name].astype(object) + extra)
        units = {name: np.where(self.priced, u, 0) for name, u in units.items()}
        if any(u.dtype == object for u in units.values()) or (
            sum(int(np.abs(u).max(initial=0)) for u in units.values()) >= 2**63
        ):
            units = {name: u.astype(object) for name, u in units.items()}  # the sum would wrap in int64
        total = sum((units[name] for name in _ALL[1:]), units["input"])
        status = pa.DictionaryArray.from_arrays(
            pa.array(np.where(self.priced, 0, 1).astype(np.int32)),
            pa.array([PricingStatus.PRICED.value, PricingStatus.UNPRICED.value]),
        )
        tier_volume = (
            pa.nulls(size, pa.uint64())
            if self.tier_volume is None
            else pa.array(self.tier_volume.tolist(), pa.uint64())
        )
        arrays = [
            *self.usage.columns,
            status,
            *(decimal_array(units[name], self.priced) for name in _ALL),
            decimal_array(total, self.priced),
            self.currency.array(),
            self.sources.array(),
            self.rates.array(),
            tier_volume,
            self.reasons.array(),
            pa.array(np.full(size, priced_at_ms, dtype=np.int64)).cast(TIMESTAMP),
        ]
        return pa.Table.from_arrays(arrays, schema=PRICED_SCHEMA)

    def _price_group(self, key: tuple[str, str, str | None, int], rows: np.ndarray) -> None:
        provider, model, model_version, _ = key
        if not self.rules.covers(provider, model, model_version):
            self._catalog(key, rows)
        elif not self.rules.scoped(provider, model, model_version):
            self._rule_or_catalog(key, rows, None, None)
        else:
            for (organization_id, project_id), part in self._by_scope(rows):
                self._rule_or_catalog(key, part, organization_id, project_id)

    def _rule_or_catalog(
        self,
        key: tuple[str, str, str | None, int],
        rows: np.ndarray,
        organization_id: str | None,
        project_id: str | None,
    ) -> None:
        provider, model, model_version, timestamp_ms = key
        rule = self.rules.find(provider, model, model_version, organization_id, project_id, timestamp_ms)
        if rule is None:
            self._catalog(key, rows)
        else:
            self._rule(rule, rows)

    def _catalog(self, key: tuple[str, str, str | None, int], rows: np.ndarray) -> None:
        try:
            rates = self.catalog.rates(*key)
        except UnknownPriceError as exc:
            self.reasons.set(rows, str(exc))
            return
        self.priced[rows] = True
        self.sources.set(rows, rates.source)
        self.rates.set(rows, rates.description)
        for name in _COMPONENTS:
            self.components[name].set(rows, *_numerators(getattr(rates, name), self.prompt[rows]))

    def _rule(self, rule: PricingRule, rows: np.ndarray) -> None:
        self.priced[rows] = True
        self.sources.set(rows, rule.id)
        self.currency.set(rows, rule.currency)
        described = {
            "rule": rule.id,
            "scope": rule.scope,
            **rule.pricing_structure.model_dump(mode="json", exclude_none=True),
        }
        self.rates.set(rows, json.dumps(described, separators=(",", ":")))
        structure = rule.pricing_structure
        if isinstance(structure, PerToken):
            rates = (
                structure.input_price_per_million,
                structure.cached_rate,
                structure.cache_write_rate,
                structure.output_price_per_million,
                structure.reasoning_rate,
            )
            for name, rate in zip(_COMPONENTS, rates, strict=True):
                self.components[name].set(rows, *fixed_point(rate))
        elif isinstance(structure, PerRequest):
            total = self.usage.column("total_tokens").to_numpy()[rows]
            self._add_direct(rows, {"request": request_units(structure, total)})
        elif isinstance(structure, Tiered):
            before = self.volume_before[rows]
            tokens = {name: self.tokens[name][rows] for name in _COMPONENTS}
            self._add_direct(rows, tiered_units(structure.tiers, before, tokens))
            if self.tier_volume is None:
                self.tier_volume = np.full(self.usage.num_rows, None, dtype=object)
            self.tier_volume[rows] = before

    def _add_direct(self, rows: np.ndarray, amounts: dict[str, np.ndarray]) -> None:
        for name, values in amounts.items():
            target = self.direct.setdefault(name, np.zeros(self.usage.num_rows, dtype=object))
            target[rows] = values

    def _by_scope(self, rows: np.ndarray) -> list[tuple[tuple[str | None, str | None], np.ndarray]]:
        """``rows`` split by (organization, project)."""
        parts = []
        texts = []
        for name in ("organization_id", "project_id"):
            encoded = dictionary_array(self.usage.column(name))
            parts.append(codes(encoded.indices)[rows].astype(np.int64) + 1)  # 0: null
            texts.append([None, *encoded.dictionary.to_pylist()])
        combos, inverse = unique_rows(parts)
        return [
            ((texts[0][org], texts[1][project]), rows[inverse == index])
            for index, (org, project) in enumerate(combos.tolist())
        ]

    def _groups(self) -> list[tuple[tuple[str, str, str | None, int], np.ndarray]]:
        """Rows sharing (provider, model, version, price period), with the period's start."""
        if self.usage.num_rows == 0:
            return []
        column = self.usage.column
        period = self.catalog.period_ms
        periods = column("timestamp").cast(pa.int64()).to_numpy() // period
        first = int(periods.min())
        parts = [periods - first]
        dictionaries: list[list[str | None]] = []
        for name in ("provider", "model", "model_version"):
            encoded = dictionary_array(column(name))
            used, inverse = np.unique(codes(encoded.indices), return_inverse=True)
            texts = iter(encoded.dictionary.take(pa.array(used[used >= 0])).to_pylist())
            dictionaries.append([next(texts) if code >= 0 else None for code in used.tolist()])
            parts.append(inverse.reshape(-1))
        combos, inverse = unique_rows(parts)  # one row per distinct (period, provider, model, version)
        order = np.argsort(inverse, kind="stable")
        bounds = np.searchsorted(inverse[order], np.arange(len(combos) + 1))
        groups = []
        for index, (slot, p, m, v) in enumerate(combos.tolist()):
            key = (dictionaries[0][p], dictionaries[1][m], dictionaries[2][v], (first + slot) * period)
            groups.append((key, order[bounds[index] : bounds[index + 1]]))
        return groups
