"""The stall watch's probe reads the real broker (streams/stall_watch.py)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from faust.types import TP

from llm_cost_ops.broker import EmbeddedBroker
from streams.stall_watch import broker_probe

pytestmark = pytest.mark.integration


async def topic_with(bootstrap: str, records: int) -> str:
    name = f"probe-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, 1, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for n in range(records):
            await producer.send_and_wait(name, b"record %d" % n, partition=0)
    finally:
        await producer.stop()
    return name


def test_the_probe_finds_the_record_at_an_offset_and_nothing_past_the_end(broker: EmbeddedBroker) -> None:
    async def scenario() -> tuple[int | None, int | None, int | None]:
        topic = await topic_with(broker.bootstrap_servers, 5)
        probe = broker_probe(broker.bootstrap_servers, timeout_s=2)
        return await probe(TP(topic, 0), 0), await probe(TP(topic, 0), 3), await probe(TP(topic, 0), 5)

    first, held, past_the_end = asyncio.run(scenario())
    assert (first, held, past_the_end) == (0, 3, None)
