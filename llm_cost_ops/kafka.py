"""Kafka connection settings and topic creation, shared by the API, the worker and the sink."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from llm_cost_ops.errors import UnavailableError
from llm_cost_ops.settings import Settings

logger = logging.getLogger(__name__)


class BrokerUnavailableError(UnavailableError):
    code = "BROKER_UNAVAILABLE"


def bootstrap_servers(settings: Settings) -> str:
    """The configured brokers; a clear error where none is configured."""
    servers = settings.kafka.bootstrap_servers
    if not servers:
        raise BrokerUnavailableError(
            "KAFKA_BOOTSTRAP_SERVERS is not set: run `cost-ops up` for the embedded pipeline, "
            "or point it at your Kafka cluster"
        )
    return servers


def producer_config(settings: Settings) -> dict[str, Any]:
    """aiokafka producer options: acks from every in-sync replica, compressed, idempotent on
    real Kafka (the embedded Tansu broker rejects InitProducerId, so it is off there)."""
    idempotent = settings.kafka.idempotent_producer
    compression = settings.kafka.compression
    return {
        "bootstrap_servers": bootstrap_servers(settings),
        "acks": "all",
        "enable_idempotence": True if idempotent is None else idempotent,
        "compression_type": None if compression == "none" else compression,
        "linger_ms": 5,
    }


async def start_producer(settings: Settings, timeout_s: float = 10.0) -> AIOKafkaProducer:
    """A started producer with :func:`producer_config`; :class:`BrokerUnavailableError` when
    the brokers cannot be reached (nothing is left open)."""
    producer = AIOKafkaProducer(**producer_config(settings), request_timeout_ms=int(timeout_s * 1000))
    try:
        await producer.start()
    except KafkaError as exc:
        await producer.stop()
        raise BrokerUnavailableError(f"cannot connect to Kafka: {exc}") from exc
    return producer


def pipeline_topics(settings: Settings) -> list[str]:
    k = settings.kafka
    return [k.usage_topic, k.priced_topic, k.dlq_topic, k.control_topic, k.windows_topic, k.alerts_topic]


def _new_topic(settings: Settings, name: str) -> NewTopic:
    k = settings.kafka
    if name == k.control_topic:
        # One partition, compacted: every worker reads all of it, and the latest snapshot of
        # each kind of control data is what survives.
        return NewTopic(name, 1, k.replication_factor, topic_configs={"cleanup.policy": "compact"})
    return NewTopic(name, k.partitions, k.replication_factor)


async def ensure_topics(settings: Settings) -> None:
    """Create the pipeline's topics where they are missing (same partition count for the data
    topics; the control topic has one)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers(settings))
    try:
        await admin.start()
        existing = set(await admin.list_topics())
        missing = [t for t in pipeline_topics(settings) if t not in existing]
        if missing:
            await admin.create_topics([_new_topic(settings, t) for t in missing])
            logger.info("created topics", extra={"operation": "ensure_topics", "topics": missing})
    except TopicAlreadyExistsError:
        pass  # another process created them first
    except KafkaError as exc:
        raise BrokerUnavailableError(f"Kafka at {bootstrap_servers(settings)} is unreachable: {exc}") from exc
    finally:
        await admin.close()


async def follow_reconnecting(
    follow: Callable[[], Awaitable[None]], what: str, stop: asyncio.Event | None = None
) -> None:
    """Run ``follow`` (a reader of a topic) until ``stop`` is set, or until cancelled without
    one; after a Kafka error, again, waiting 0.5 s, then twice as long each time up to 30 s."""
    delay = 0.5
    while stop is None or not stop.is_set():
        try:
            await follow()
        except KafkaError as exc:
            logger.error("%s unreachable, retrying in %.1fs: %s", what, delay, exc)
            await sleep_until(stop, delay)
            delay = min(delay * 2, 30.0)


async def sleep_until(stop: asyncio.Event | None, seconds: float) -> None:
    """Sleep ``seconds``, or less if ``stop`` is set meanwhile."""
    if stop is None:
        await asyncio.sleep(seconds)
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
