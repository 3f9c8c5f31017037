"""The raw baselines, on the same machine, in the same run, on the same messages."""

from __future__ import annotations

import time

from aiokafka import AIOKafkaConsumer

from benchmarks.load import ID_LENGTH, Templates
from schemas.codec import UsageCodec


def decode_rate(codec: UsageCodec, templates: Templates, count: int = 20_000) -> float:
    """fastavro decodes of usage-event messages per second (wire header included)."""
    messages = [head + b"i" * ID_LENGTH + tail for _, head, tail in templates.parts]
    started = time.perf_counter()
    for n in range(count):
        codec.serde.decode(messages[n % len(messages)])
    return count / (time.perf_counter() - started)


async def consume_rate(bootstrap: str, topic: str, limit: int, timeout_s: float = 30.0) -> tuple[float, int]:
    """aiokafka's consume rate (messages/s) of ``topic`` from the beginning, batched getmany,
    up to ``limit`` messages; returns the rate and how many were read."""
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
        read = 0
        started = None
        deadline = time.monotonic() + timeout_s
        while read < limit and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            got = sum(len(messages) for messages in batch.values())
            if got and started is None:
                started = time.perf_counter()  # the group join and first fetch are not timed
                continue
            if not got and started is not None:
                break
            read += got
        elapsed = time.perf_counter() - started if started is not None else 0.0
        return (read / elapsed if elapsed else 0.0), read
    finally:
        await consumer.stop()
