"""The ``control`` topic: how pricing changes reach every worker within seconds, no restart.

The API owns the rules (the relational control store) and publishes a *snapshot* of all of
them, keyed ``pricing-rules``, after every change and once a minute. The topic is compacted
with one partition, so the latest snapshot is all a starting worker reads. A snapshot carries
the store's audit version; a worker never goes back to an older one (two API replicas may
publish out of order). Each worker reads the whole topic itself, outside its consumer group,
and prices nothing before it has caught up with the topic's end.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from llm_cost_ops.kafka import bootstrap_servers, start_producer
from llm_cost_ops.settings import Settings
from schemas.pricing_rule import PricingRule
from streams.rules import RuleBook

logger = logging.getLogger(__name__)

PRICING_KEY = b"pricing-rules"
REPUBLISH_SECONDS = 60.0


def encode_snapshot(rules: list[PricingRule], version: int) -> bytes:
    body = {"kind": "pricing-rules", "version": version, "rules": [r.model_dump(mode="json") for r in rules]}
    return json.dumps(body, separators=(",", ":")).encode()


def decode_snapshot(value: bytes) -> RuleBook:
    """A snapshot's rules; ``ValueError`` when the message is not one."""
    try:
        body = json.loads(value)
        rules = [PricingRule.model_validate(r) for r in body["rules"]]
        return RuleBook.of(rules, int(body["version"]))
    except (ValueError, KeyError, TypeError, ValidationError) as exc:
        raise ValueError(f"not a pricing snapshot: {exc}") from exc


class ControlFeed:
    """Reads the control topic into a worker: ``on_rules`` gets each newer rule book."""

    def __init__(self, settings: Settings, on_rules: Callable[[RuleBook], None]) -> None:
        self._settings = settings
        self._on_rules = on_rules
        self.version = -1
        self.ready = asyncio.Event()
        """Set once the topic has been read to the end it had when the feed started."""

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        if key != PRICING_KEY or not value:
            return
        try:
            book = decode_snapshot(value)
        except ValueError as exc:
            logger.error("ignored a control message: %s", exc)
            return
        if book.version <= self.version:
            return  # the rules of this version are applied already, or newer ones are
        self.version = book.version
        self._on_rules(book)
        logger.info("pricing rules applied", extra={"version": book.version, "rules": len(book.rules)})

    async def run(self) -> None:
        """Follow the topic until cancelled, reconnecting with backoff when the broker is away."""
        delay = 0.5
        while True:
            try:
                await self._follow()
            except KafkaError as exc:
                logger.error("control topic unreachable, retrying in %.1fs: %s", delay, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def _follow(self) -> None:
        topic = TopicPartition(self._settings.kafka.control_topic, 0)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap_servers(self._settings), enable_auto_commit=False, group_id=None
        )
        await consumer.start()
        try:
            consumer.assign([topic])
            await consumer.seek_to_beginning(topic)
            end = (await consumer.end_offsets([topic]))[topic]
            if end == 0 and not self.ready.is_set():
                logger.warning("no pricing rules published yet: list prices only until the API publishes")
            while True:
                if not self.ready.is_set() and await consumer.position(topic) >= end:
                    self.ready.set()
                batch = await consumer.getmany(topic, timeout_ms=500)
                for message in batch.get(topic, []):
                    self.apply(message.key, message.value)
        finally:
            await consumer.stop()


class ControlPublisher:
    """Publishes the store's rules to the control topic (API side).

    ``snapshot`` returns ``(rules, version)`` from the control store; it runs in a thread and
    must read the version first: rules at least as new as their version, so an older
    snapshot delivered late never carries a newer version than the rules it holds.
    """

    def __init__(self, settings: Settings, snapshot: Callable[[], tuple[list[PricingRule], int]]) -> None:
        self._settings = settings
        self._snapshot = snapshot
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        self._producer = await start_producer(self._settings)

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()

    async def publish(self) -> int:
        """Send the current snapshot and wait for the broker's acknowledgement; its version."""
        assert self._producer is not None, "start() first"
        async with self._lock:
            rules, version = await asyncio.to_thread(self._snapshot)
            await self._producer.send_and_wait(
                self._settings.kafka.control_topic,
                encode_snapshot(rules, version),
                key=PRICING_KEY,
                headers=[("content-type", b"application/json")],
            )
            return version

    async def changed(self) -> None:
        """After a write: publish now; a failure is logged and the periodic run publishes it.
        Never raises: the change is stored, and the request must say so."""
        try:
            await self.publish()
        except Exception as exc:  # Kafka or the store: either way the periodic run catches up
            logger.error("pricing change not yet published (will retry): %s", exc)

    async def run(self, stop: asyncio.Event) -> None:
        """Publish at start and then every minute, so a missed or stale snapshot heals itself."""
        while not stop.is_set():
            try:
                await self.publish()
            except Exception as exc:  # a store or broker blip must not end the healing loop
                logger.error("publishing pricing rules failed (will retry): %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=REPUBLISH_SECONDS)
