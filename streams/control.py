"""The ``control`` topic: how pricing changes reach every worker within seconds, no restart.

The API owns the rules and the budgets (the relational control store) and publishes a
*snapshot* of all of each, keyed ``pricing-rules`` and ``budgets``, after every change and
once a minute. The topic is compacted
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
from typing import TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from pydantic import ValidationError

from llm_cost_ops.kafka import bootstrap_servers, follow_reconnecting, start_producer
from llm_cost_ops.settings import Settings
from schemas.budget import Budget
from schemas.pricing_rule import PricingRule
from streams.budgets import BudgetBook
from streams.rules import RuleBook

logger = logging.getLogger(__name__)

PRICING_KEY = b"pricing-rules"
BUDGETS_KEY = b"budgets"
REPUBLISH_SECONDS = 60.0

B = TypeVar("B", RuleBook, BudgetBook)

RuleSnapshot = Callable[[], tuple[list[PricingRule], int]]
BudgetSnapshot = Callable[[], tuple[list[Budget], int]]


def encode_snapshot(rules: list[PricingRule], version: int) -> bytes:
    body = {"kind": "pricing-rules", "version": version, "rules": [r.model_dump(mode="json") for r in rules]}
    return json.dumps(body, separators=(",", ":")).encode()


def encode_budgets(budgets: list[Budget], version: int) -> bytes:
    body = {"kind": "budgets", "version": version, "budgets": [b.model_dump(mode="json") for b in budgets]}
    return json.dumps(body, separators=(",", ":")).encode()


def decode_budgets(value: bytes) -> BudgetBook:
    """A budgets snapshot; ``ValueError`` when the message is not one."""
    try:
        body = json.loads(value)
        return BudgetBook([Budget.model_validate(b) for b in body["budgets"]], int(body["version"]))
    except (ValueError, KeyError, TypeError, ValidationError) as exc:
        raise ValueError(f"not a budgets snapshot: {exc}") from exc


def decode_snapshot(value: bytes) -> RuleBook:
    """A snapshot's rules; ``ValueError`` when the message is not one."""
    try:
        body = json.loads(value)
        rules = [PricingRule.model_validate(r) for r in body["rules"]]
        return RuleBook.of(rules, int(body["version"]))
    except (ValueError, KeyError, TypeError, ValidationError) as exc:
        raise ValueError(f"not a pricing snapshot: {exc}") from exc


class ControlFeed:
    """Reads the control topic into a worker: ``on_rules`` gets each newer rule book, and
    ``on_budgets`` each newer set of budgets."""

    def __init__(
        self,
        settings: Settings,
        on_rules: Callable[[RuleBook], None],
        on_budgets: Callable[[BudgetBook], None] | None = None,
        pricing: bool = True,
    ) -> None:
        """``pricing``: this reader prices events (a worker), so it warns when no rules exist yet."""
        self._settings = settings
        self._pricing = pricing
        self._on_rules = on_rules
        self._on_budgets = on_budgets
        self.version = -1
        self.budgets_version = -1
        self.ready = asyncio.Event()
        """Set once the topic has been read to the end it had when the feed started."""

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        if not value:
            return
        if key == PRICING_KEY:
            rules = self._decoded(decode_snapshot, value, self.version)
            if rules is not None:
                self.version = rules.version
                self._on_rules(rules)
                logger.info("pricing rules applied", extra={"version": rules.version, "rules": len(rules.rules)})
        elif key == BUDGETS_KEY and self._on_budgets is not None:
            budgets = self._decoded(decode_budgets, value, self.budgets_version)
            if budgets is not None:
                self.budgets_version = budgets.version
                self._on_budgets(budgets)
                logger.info("budgets applied", extra={"version": budgets.version, "budgets": len(budgets.budgets)})

    @staticmethod
    def _decoded(decode: Callable[[bytes], B], value: bytes, applied: int) -> B | None:
        """The snapshot if it is newer than the version applied; None if it is not, or is not
        a snapshot (two API replicas may publish out of order)."""
        try:
            snapshot = decode(value)
        except ValueError as exc:
            logger.error("ignored a control message: %s", exc)
            return None
        return snapshot if snapshot.version > applied else None

    async def run(self) -> None:
        """Follow the topic until cancelled, reconnecting with backoff when the broker is away."""
        await follow_reconnecting(self._follow, "control topic")

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
            if end == 0 and not self.ready.is_set() and self._pricing:
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
    """Publishes the store's rules and budgets to the control topic (API side).

    ``snapshot`` returns ``(rules, version)`` from the control store, ``budgets`` returns
    ``(budgets, version)``; they run in a thread and must read the version first: data at least
    as new as its version, so an older snapshot delivered late never carries a newer version
    than the data it holds.
    """

    def __init__(self, settings: Settings, snapshot: RuleSnapshot, budgets: BudgetSnapshot | None = None) -> None:
        self._settings = settings
        self._snapshot = snapshot
        self._budgets = budgets
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
            await self._send(PRICING_KEY, encode_snapshot(rules, version))
            if self._budgets is not None:
                budgets, budgets_version = await asyncio.to_thread(self._budgets)
                await self._send(BUDGETS_KEY, encode_budgets(budgets, budgets_version))
            return version

    async def _send(self, key: bytes, value: bytes) -> None:
        assert self._producer is not None
        await self._producer.send_and_wait(
            self._settings.kafka.control_topic, value, key=key, headers=[("content-type", b"application/json")]
        )

    async def changed(self) -> None:
        """After a write: publish now; a failure is logged and the periodic run publishes it.
        Never raises: the change is stored, and the request must say so."""
        try:
            await self.publish()
        except Exception as exc:  # Kafka or the store: either way the periodic run catches up
            logger.error("control change not yet published (will retry): %s", exc)

    async def run(self, stop: asyncio.Event) -> None:
        """Publish at start and then every minute, so a missed or stale snapshot heals itself."""
        while not stop.is_set():
            try:
                await self.publish()
            except Exception as exc:  # a store or broker blip must not end the healing loop
                logger.error("publishing pricing rules and budgets failed (will retry): %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=REPUBLISH_SECONDS)
