"""The raw baselines, on the same machine, in the same run, on the same messages."""

from __future__ import annotations

import io
import time
from typing import Any

import fastavro
from aiokafka import AIOKafkaConsumer

from benchmarks.load import HEADER, ID_LENGTH, VARIANTS, Templates
from schemas.codec import UsageCodec
from schemas.registry import USAGE_BATCH, parsed_schema, schema_text


def decode_rates(codec: UsageCodec, templates: Templates, count: int = 20_000, batch: int = 500) -> tuple[float, float]:
    """Events per second decoded from batch messages like the load's: by fastavro alone (the
    generic decoder), and by the pipeline's batch reader (what the worker runs)."""
    messages = [
        templates.message(org, [b"i" * ID_LENGTH] * batch, variant)
        for org in templates.organizations
        for variant in range(VARIANTS)
    ]
    schema = parsed_schema(schema_text(USAGE_BATCH))

    def fastavro_decode(message: bytes) -> int:
        buffer = io.BytesIO(message)
        buffer.seek(HEADER)
        record: dict[str, Any] = fastavro.schemaless_reader(buffer, schema, None)  # type: ignore[assignment]
        return len(record["event_id"])

    def reader_decode(message: bytes) -> int:
        return len(codec.serde.decode(message)["event_id"])

    rates = []
    for decode in (fastavro_decode, reader_decode):
        decoded = 0
        started = time.perf_counter()
        while decoded < count:
            decoded += decode(messages[(decoded // batch) % len(messages)])
        rates.append(decoded / (time.perf_counter() - started))
    return rates[0], rates[1]


def _varint(value: bytes, i: int) -> tuple[int, int]:
    """A zigzag long at ``i``, and the position after it."""
    shift, n = 0, 0
    while True:
        byte = value[i]
        n |= (byte & 0x7F) << shift
        i += 1
        if not byte & 0x80:
            return (n >> 1) ^ -(n & 1), i
        shift += 7


def batch_size(value: bytes, batch_header: bytes) -> int:
    """Events in a message: 1 for a single event; for a batch, after the organization and the
    ``strings`` array (one block, as fastavro writes it), the ``event_id`` count."""
    if not value.startswith(batch_header):
        return 1
    length, i = _varint(value, HEADER)
    count, i = _varint(value, i + length)
    for _ in range(count):
        length, i = _varint(value, i)
        i += length
    if count:
        _, i = _varint(value, i)  # the block terminator
    events, _ = _varint(value, i)
    return events


async def consume_rate(
    bootstrap: str, topic: str, batch_header: bytes, limit: int, timeout_s: float = 30.0
) -> tuple[float, float, int]:
    """aiokafka's consume rate of ``topic`` from the beginning (batched getmany, up to
    ``limit`` messages): messages/s, the events/s those messages carry, messages read.

    The group join is not timed: once partitions are assigned, the consumer seeks back to
    the beginning and the clock starts.
    """
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"bench-baseline-{time.time_ns()}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    await consumer.start()
    try:
        deadline = time.monotonic() + timeout_s
        while not consumer.assignment() and time.monotonic() < deadline:
            await consumer.getmany(timeout_ms=100, max_records=1)
        await consumer.seek_to_beginning()
        messages = events = 0
        started = last = time.perf_counter()
        while messages < limit and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500, max_records=10_000)
            if not batch:
                break  # the end of the topic; that empty wait is not consuming time
            for records in batch.values():
                messages += len(records)
                events += sum(batch_size(r.value, batch_header) for r in records if r.value)
            last = time.perf_counter()
        elapsed = max(last - started, 1e-9)
        return messages / elapsed, events / elapsed, messages
    finally:
        await consumer.stop()
