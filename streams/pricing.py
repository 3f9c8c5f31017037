"""Pricing: a table of usage events in, the same events with their exact costs out. No Faust.

List prices come from the ``genai-prices`` catalog (exact version pinned in pyproject),
resolved at each event's own timestamp, so a price change never re-prices old traffic.

Cost rule, per million tokens, every amount exact:

* ``input_cost     = (prompt_tokens - cached_tokens) * input rate``
* ``cached_cost    = cached_tokens * cache-read rate`` (the input rate where the catalog has none)
* ``output_cost    = (completion_tokens - reasoning_tokens) * output rate``
* ``reasoning_cost = reasoning_tokens * output rate`` (the catalog bills reasoning as output)

Where the catalog prices a model in context-length tiers, the tier is chosen by the event's
prompt tokens and applies to all its tokens, as the providers (and genai-prices) bill it.
Each component is rounded half to even to 10 places; the total is their sum, so components
add up exactly. A model the catalog does not know is *unpriced*, never priced at zero.

A batch is priced by groups: events of one model whose timestamps fall in one price period
share their rates, so the catalog is asked once per group and the arithmetic runs on columns
(:mod:`streams.money`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, time
from decimal import Decimal
from importlib.metadata import version

import numpy as np
import pyarrow as pa
from genai_prices import data_snapshot
from genai_prices.types import ModelInfo, ModelPrice, Provider, TieredPrices, TimeOfDateConstraint

from schemas.columns import TEXT, TIMESTAMP, codes, dictionary_array, from_millis
from schemas.priced import PRICED_SCHEMA, PricingStatus
from streams.money import common_scale, cost_units, decimal_array, fixed_point

_MINUTE_MS = 60_000


class UnknownPriceError(LookupError):
    """No price for this provider and model at this time; the event stays unpriced."""


@dataclass(frozen=True, slots=True)
class Rates:
    """The prices in force for a group of events: per million tokens, flat or tiered."""

    input: Decimal | TieredPrices
    cached: Decimal | TieredPrices
    output: Decimal | TieredPrices
    source: str


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
        found_provider, info = self._resolve(provider, model, model_version)
        moment = from_millis(timestamp_ms)
        if not isinstance(moment, datetime):
            raise UnknownPriceError(f"no price at timestamp {timestamp_ms}")
        price = info.get_prices(moment)
        if price.input_mtok is None and price.output_mtok is None:
            raise UnknownPriceError(f"{found_provider.id}/{info.id} has no token prices in {self.source}")
        input_rate = _rate(price, "input_mtok")
        return Rates(
            input=input_rate,
            cached=_rate(price, "cache_read_mtok", default=input_rate),
            output=_rate(price, "output_mtok"),
            source=f"{self.source} {found_provider.id}/{info.id}",
        )

    def _resolve(self, provider: str, model: str, model_version: str | None) -> tuple[Provider, ModelInfo]:
        # A pinned version ("gpt-4-turbo-2024-04-09") is the more precise reference; fall
        # back to the model name when the catalog does not list the version.
        key = (provider, model, model_version)
        found = self._models.get(key)
        if found is None:
            found = UnknownPriceError(f"no list price for {provider}/{model} in {self.source}")
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
        """``usage`` (validated usage columns) with the price columns of ``PRICED_SCHEMA``."""
        return _TablePricer(self, usage.combine_chunks()).run(priced_at_ms)


def _whole_minute(value: time) -> bool:
    offset = value.utcoffset()
    return value.second == 0 and value.microsecond == 0 and (offset is None or offset.seconds % 60 == 0)


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


_COMPONENTS = ("input", "cached", "output", "reasoning")


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
        numerators = self.numerators * (10 ** (scale - self.scales)).astype(object)
        if len(numerators) and numerators.max() < 2**62:
            numerators = numerators.astype(np.int64)
        return cost_units(tokens, numerators, scale)


@dataclass
class _TablePricer:
    """Prices one table: rates looked up once per group, arithmetic once per column."""

    catalog: PriceCatalog
    usage: pa.Table

    def run(self, priced_at_ms: int) -> pa.Table:
        size = self.usage.num_rows
        column = self.usage.column
        prompt = column("prompt_tokens").to_numpy()
        cached = column("cached_tokens").to_numpy()
        completion = column("completion_tokens").to_numpy()
        reasoning = column("reasoning_tokens").to_numpy()
        tokens = {"input": prompt - cached, "cached": cached, "output": completion - reasoning, "reasoning": reasoning}
        components = {name: _Component.empty(size) for name in _COMPONENTS}
        priced = np.zeros(size, dtype=bool)
        sources: np.ndarray = np.full(size, None, dtype=object)
        reasons: np.ndarray = np.full(size, None, dtype=object)
        for (provider, model, model_version, timestamp_ms), rows in self._groups():
            try:
                rates = self.catalog.rates(provider, model, model_version, timestamp_ms)
            except UnknownPriceError as exc:
                reasons[rows] = str(exc)
                continue
            priced[rows] = True
            sources[rows] = rates.source
            for name, rate in zip(_COMPONENTS, (rates.input, rates.cached, rates.output, rates.output), strict=True):
                components[name].set(rows, *_numerators(rate, prompt[rows]))
        units = {name: components[name].units(tokens[name]) for name in _COMPONENTS}
        units = {name: np.where(priced, u, 0) for name, u in units.items()}
        if any(u.dtype == object for u in units.values()):
            units = {name: u.astype(object) for name, u in units.items()}
        if (
            all(u.dtype != object for u in units.values())
            and sum(int(np.abs(u).max(initial=0)) for u in units.values()) >= 2**63
        ):
            units = {name: u.astype(object) for name, u in units.items()}  # the sum would wrap in int64
        total = units["input"] + units["cached"] + units["output"] + units["reasoning"]
        status = pa.DictionaryArray.from_arrays(
            pa.array(np.where(priced, 0, 1).astype(np.int32)),
            pa.array([PricingStatus.PRICED.value, PricingStatus.UNPRICED.value]),
        )
        arrays = [
            *self.usage.columns,
            status,
            *(decimal_array(units[name], priced) for name in _COMPONENTS),
            decimal_array(total, priced),
            pa.DictionaryArray.from_arrays(pa.array(np.zeros(size, dtype=np.int32)), pa.array(["USD"])),
            pa.array(sources.tolist(), TEXT),
            pa.array(reasons.tolist(), TEXT),
            pa.array(np.full(size, priced_at_ms, dtype=np.int64)).cast(TIMESTAMP),
        ]
        return pa.Table.from_arrays(arrays, schema=PRICED_SCHEMA)

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
        # One row per distinct (period, provider, model, version): positions, never packed into
        # one number, so no size of dictionary or span of time can overflow a key.
        sizes = [int(part.max()) + 1 for part in parts]
        if math.prod(sizes) < 2**62:  # positions packed into one int64: a 1-D unique is fast
            packed = np.zeros(len(parts[0]), dtype=np.int64)
            for part, size in zip(parts, sizes, strict=True):
                packed = packed * size + part
            unique, inverse = np.unique(packed, return_inverse=True)
            columns = []
            for size in reversed(sizes):
                unique, column = np.divmod(unique, size)
                columns.append(column)
            combos = np.stack(columns[::-1], axis=1)
        else:
            combos, inverse = np.unique(np.stack(parts, axis=1), axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
        order = np.argsort(inverse, kind="stable")
        bounds = np.searchsorted(inverse[order], np.arange(len(combos) + 1))
        groups = []
        for index, (slot, p, m, v) in enumerate(combos.tolist()):
            key = (dictionaries[0][p], dictionaries[1][m], dictionaries[2][v], (first + slot) * period)
            groups.append((key, order[bounds[index] : bounds[index + 1]]))
        return groups
