"""The ``price`` agent: ``usage-events`` -> ``priced-usage`` (and ``usage-dlq``)."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar

import faust
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from llm_cost_ops.errors import UnavailableError
from llm_cost_ops.metrics import PipelineMetrics
from schemas.codec import UsageCodec
from schemas.columns import codes, dictionary_array, millis
from schemas.priced import CONTENT_TYPE, PricingStatus, encode_priced
from streams.budget_step import BudgetDeps, budget_take
from streams.idle_tick import IdleTicker, tick_ms
from streams.price_step import price_messages
from streams.pricing import Pricer
from streams.table_writes import during
from streams.topics import PipelineTopics
from streams.volume import VolumeKey, key_text
from streams.window_step import WindowDeps, window_take

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class PriceAgentDeps:
    codec: UsageCodec
    pricer: Pricer
    providers: frozenset[str]
    metrics: PipelineMetrics
    batch_size: int
    batch_seconds: float
    volumes: Any
    """The ``tier-volume`` Faust table: per (organization, provider, model, month), the volume
    and the (partition, offset) of the last message counted in it."""
    rules_ready: asyncio.Event
    """Set once the control topic has been read: nothing is priced before the custom rules are known."""
    windows: WindowDeps | None = None
    """Event-time windows of the priced events (None: no windows)."""
    budgets: BudgetDeps | None = None
    """Budget spend and thresholds (None: no budgets)."""
    ticker: IdleTicker | None = None
    """Told which partitions had messages, for the idle ticks (None: no ticks)."""


class TableVolumes:
    """The volume table as :class:`streams.volume.VolumeStore`.

    Faust writes a table key's changelog to the partition of the event being processed; a
    take spans partitions, so each key is written as if during the message that last added
    to it (one organization's events share a partition, so its keys live with them and move
    with them on a rebalance).
    """

    def __init__(self, table: Any, events: Sequence[Any]) -> None:
        self._table = table
        self._events = events

    def get(self, key: VolumeKey) -> int:
        return int(self._stored(key)[0])

    def counted(self, key: VolumeKey, message: int) -> bool:
        _, partition, offset = self._stored(key)
        source = self._events[message].message
        return bool(source.partition == partition and source.offset <= offset)

    def set(self, key: VolumeKey, total: int, message: int) -> None:
        event = self._events[message]
        # With the position of the message that last added: a replay of it, or of any
        # earlier message of the partition, is already counted.
        with during(event):
            self._table[key_text(key)] = [total, event.message.partition, event.message.offset]

    def _stored(self, key: VolumeKey) -> tuple[int, int, int]:
        value = self._table.get(key_text(key))
        if not value:
            return 0, -1, -1
        total, partition, offset = value
        return int(total), int(partition), int(offset)


def register_price_agent(app: faust.App, topics: PipelineTopics, deps: PriceAgentDeps) -> Any:
    """Attach the agent to ``app``. Each batch is sent and acknowledged by the broker before the
    next one is taken, and Faust flushes its producer before it commits offsets, so a crash
    replays a batch (deterministic prices, deduplicated downstream) but never loses one."""

    @app.agent(topics.usage, name="price")
    async def price(stream: Any) -> AsyncIterator[None]:
        async for events in stream.take_events(deps.batch_size, within=deps.batch_seconds):
            try:
                await _price_batch(events, topics, deps)
            except Exception:
                # Faust acks a taken batch when its generator closes, whatever happened; an
                # exception leaving this loop would mark unpriced events as done. End the
                # process instead: nothing is acked, and the restarted worker replays the batch.
                logger.critical("pricing failed; exiting so the batch is replayed", exc_info=True)
                os._exit(70)
            yield None

    return price


async def _price_batch(take: Sequence[Any], topics: PipelineTopics, deps: PriceAgentDeps) -> None:
    if not deps.rules_ready.is_set():
        logger.info("waiting for the pricing rules on the control topic")
        await deps.rules_ready.wait()
    if deps.ticker is not None:
        deps.ticker.saw({event.message.partition for event in take})
    # Idle ticks (streams/idle_tick.py) are for the windows only: never priced.
    ticks = [tick_ms(event.message) for event in take]
    events = [event for event, tick in zip(take, ticks, strict=True) if tick is None]
    now_ms = millis(datetime.now(UTC))
    messages = [event.message for event in events]
    if messages:
        deps.metrics.messages_consumed.labels("worker", messages[0].topic).inc(len(messages))
    values = [m.value for m in messages]
    volumes = TableVolumes(deps.volumes, events)
    outcomes = (
        await _until_available(
            partial(price_messages, values, deps.codec, deps.pricer, deps.providers, now_ms, volumes)
        )
        if values
        else []
    )
    pending = []
    priced_tables = []
    for message, outcome in zip(messages, outcomes, strict=True):
        for letter, value in outcome.dead:
            deps.metrics.events_dead_lettered.labels(letter.kind).inc()
            logger.warning(
                "dead letter: %s",
                letter.reason,
                extra={"topic": message.topic, "partition": message.partition, "offset": message.offset},
            )
            headers = letter.headers(message.topic, message.partition, message.offset, _headers(message.headers))
            pending.append(await topics.dlq.send(key=message.key, value=value, headers=headers))
        if outcome.priced is None:
            continue
        priced_tables.append(outcome.priced)
        # One output message per input message, same key: a batch stays a batch downstream.
        pending.append(
            await topics.priced.send(
                key=message.key, value=encode_priced(outcome.priced), headers=[("content-type", CONTENT_TYPE)]
            )
        )
    if priced_tables:
        _count(pa.concat_tables(priced_tables), deps.metrics)
    # The broker has every output of the batch before the next batch is taken.
    await asyncio.gather(*pending)
    priced = [outcome.priced for outcome in outcomes]
    if deps.windows is not None:
        outputs = iter(priced)  # in the order of the events that are not ticks
        per_event = [next(outputs) if tick is None else None for tick in ticks]
        await window_take(take, per_event, ticks, deps.windows)
    if deps.budgets is not None:
        await budget_take(events, priced, deps.budgets)


def _count(priced: pa.Table, metrics: PipelineMetrics) -> None:
    """Priced and unpriced events, dollars per provider (a float is fine for a counter), and
    the distribution of the events' costs."""
    done = priced.column("unpriced_reason").null_count  # every unpriced event says why
    if done:
        metrics.events_priced.labels(PricingStatus.PRICED.value).inc(done)
    if done < priced.num_rows:
        metrics.events_priced.labels(PricingStatus.UNPRICED.value).inc(priced.num_rows - done)
    # Dollars only: a cost priced in another currency is not a dollar amount.
    in_usd = pc.equal(priced.column("currency").cast(pa.string()), "USD")
    dollars = pc.fill_null(pc.if_else(in_usd, priced.column("total_cost").cast(pa.float64()), 0.0), 0.0).to_numpy()
    providers = dictionary_array(priced.column("provider"))
    sums = np.bincount(codes(providers.indices), weights=dollars, minlength=len(providers.dictionary))
    for provider, amount in zip(providers.dictionary.to_pylist(), sums.tolist(), strict=True):
        if amount:
            metrics.cost_usd.labels(provider).inc(amount)
    _observe_costs(priced, providers, metrics)


def _observe_costs(priced: pa.Table, providers: pa.DictionaryArray, metrics: PipelineMetrics) -> None:
    """``costops_cost_amount`` per (provider, currency): one array observation per pair in
    the take, not a call per event. Unpriced events (no cost) are not observed."""
    amounts = priced.column("total_cost").cast(pa.float64()).to_numpy(zero_copy_only=False)  # null: NaN
    currencies = dictionary_array(priced.column("currency"))
    provider_codes, currency_codes = codes(providers.indices), codes(currencies.indices)
    observed = ~np.isnan(amounts) & (provider_codes >= 0) & (currency_codes >= 0)
    if not observed.any():
        return
    width = len(currencies.dictionary)
    pairs = provider_codes[observed] * width + currency_codes[observed]
    amounts = amounts[observed]
    provider_names, currency_names = providers.dictionary.to_pylist(), currencies.dictionary.to_pylist()
    for pair in np.unique(pairs).tolist():
        labels = (provider_names[pair // width], currency_names[pair % width])
        metrics.cost_amount.observe_many(labels, amounts[pairs == pair])


async def _until_available(step: Callable[[], T], max_delay_s: float = 30.0) -> T:
    """Run ``step``, waiting out an unavailable dependency (the Schema Registry) with backoff.

    The partition stalls meanwhile instead of dead-lettering good events: an outage is not
    a property of the message.
    """
    delay = 0.5
    while True:
        try:
            return step()
        except UnavailableError as exc:
            logger.error("pricing paused, retrying in %.1fs: %s", delay, exc.message)
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_delay_s)


def _headers(raw: Any) -> list[tuple[str, bytes]]:
    if not raw:
        return []
    items = raw.items() if isinstance(raw, dict) else raw
    return [(str(k), bytes(v) if v is not None else b"") for k, v in items]
