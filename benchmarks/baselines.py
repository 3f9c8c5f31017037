"""The raw baselines, on the same machine, in the same run, on the same messages."""

from __future__ import annotations

import time

from aiokafka import AIOKafkaConsumer

from benchmarks.load import HEADER, ID_LENGTH, Templates, frame_batch
from schemas.codec import UsageCodec


def decode_rate(codec: UsageCodec, templates: Templates, count: int = 20_000, batch: int = 500) -> float:
    """Events per second fastavro decodes from batch messages like the load's."""
    bodies = [head[HEADER:] + b"i" * ID_LENGTH + tail for _, head, tail in templates.parts]
    messages = [
        frame_batch(templates.batch_header, bodies[i : i + batch]) for i in range(0, len(bodies) - batch + 1, batch)
    ]
    decoded = 0
    started = time.perf_counter()
    while decoded < count:
        decoded += len(codec.decode_records(messages[(decoded // batch) % len(messages)]))
    return decoded / (time.perf_counter() - started)


def batch_size(value: bytes) -> int:
    """Events in a batch message: the array's first block count, right after the header."""
    shift, n, i = 0, 0, HEADER
    while True:
        byte = value[i]
        n |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return (n >> 1) ^ -(n & 1)
        shift += 7
        i += 1


async def consume_rate(bootstrap: str, topic: str, limit: int, timeout_s: float = 30.0) -> tuple[float, float, int]:
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
                events += sum(batch_size(r.value) for r in records if r.value)
            last = time.perf_counter()
        elapsed = max(last - started, 1e-9)
        return messages / elapsed, events / elapsed, messages
    finally:
        await consumer.stop()
