"""Publishing usage events to Kafka: the API's ingestion path and the services' producer.

Every event is validated before it is sent, keyed by ``organization_id`` (so one
organization's events stay ordered on one partition), Avro-encoded in the Confluent wire
format, and acknowledged by the broker before :meth:`UsageProducer.publish` returns.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from llm_cost_ops.kafka import BrokerUnavailableError, start_producer
from llm_cost_ops.settings import Settings
from schemas.codec import UsageCodec
from schemas.usage import UsageEvent

logger = logging.getLogger(__name__)


MAX_BATCH = 500
"""Most events in one Kafka message (about 100-200 KB of Avro before compression)."""


class PublishError(BrokerUnavailableError):
    """The broker did not acknowledge the events; nothing may be reported as accepted."""


class UsageProducer:
    """Async producer of usage events.

    Args:
        settings: the pipeline settings (brokers, topic, compression, idempotence).
        codec: encodes events in the wire format.
        timeout_s: longest wait for the broker's acknowledgement of one publish.
    """

    def __init__(self, settings: Settings, codec: UsageCodec, timeout_s: float = 10.0) -> None:
        self._settings = settings
        self._codec = codec
        self._topic = settings.kafka.usage_topic
        self._timeout_s = timeout_s
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        try:
            self._producer = await start_producer(self._settings, self._timeout_s)
        except BrokerUnavailableError as exc:
            raise PublishError(exc.message) from exc

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def __aenter__(self) -> UsageProducer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def reachable(self, timeout_s: float = 2.0) -> bool:
        """Whether the broker answers a metadata request now."""
        if self._producer is None:
            return False
        try:
            await asyncio.wait_for(self._producer.client.fetch_all_metadata(), timeout=timeout_s)
        except (KafkaError, TimeoutError):
            return False
        return True

    async def publish(self, events: Sequence[UsageEvent]) -> None:
        """Send events and wait until the broker has acknowledged every one of them.

        Events are grouped by organization into batch messages of at most ``MAX_BATCH``
        events: per-message costs downstream (Faust, Kafka framing) are paid per batch.
        """
        if self._producer is None:
            raise PublishError("producer is not started")
        producer = self._producer
        by_org: dict[str, list[UsageEvent]] = {}
        for event in events:
            by_org.setdefault(event.organization_id, []).append(event)
        try:
            futures = [
                await producer.send(
                    self._topic,
                    value=self._codec.encode_usage_batch(group[start : start + MAX_BATCH]),
                    key=org.encode(),
                )
                for org, group in by_org.items()
                for start in range(0, len(group), MAX_BATCH)
            ]
            await asyncio.wait_for(asyncio.gather(*futures), timeout=self._timeout_s)
        except (KafkaError, TimeoutError) as exc:
            raise PublishError(f"Kafka did not acknowledge {len(events)} event(s): {exc!r}") from exc

    async def publish_raw(self, messages: Sequence[tuple[bytes | None, bytes, list[tuple[str, bytes]]]]) -> None:
        """Send already-encoded messages ``(key, value, headers)`` as they are (a DLQ replay),
        and wait until the broker has acknowledged every one."""
        if self._producer is None:
            raise PublishError("producer is not started")
        producer = self._producer
        try:
            futures = [
                await producer.send(self._topic, value=value, key=key, headers=headers)
                for key, value, headers in messages
            ]
            await asyncio.wait_for(asyncio.gather(*futures), timeout=self._timeout_s)
        except (KafkaError, TimeoutError) as exc:
            raise PublishError(f"Kafka did not acknowledge {len(messages)} message(s): {exc!r}") from exc
