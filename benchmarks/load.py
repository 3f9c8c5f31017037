"""Load for the benchmark: realistic events encoded once, re-sent with fresh ids.

Encoding every event at send time would make the load generator, not the pipeline, the
bottleneck on a 2-core machine. Events are encoded once (varied providers, models, tokens)
with ids of a fixed length; each send splices a new id into the template's bytes, so every
message is a distinct event with the exact Avro encoding a producer would write.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
from aiokafka import AIOKafkaProducer

from llm_cost_ops.demo import DemoStream
from schemas.codec import UsageCodec
from schemas.usage import UsageEvent

ID_LENGTH = 36  # < 64, so its Avro length prefix is one byte
HEADER = 5  # magic byte + schema id


@dataclass
class Templates:
    """Encoded events split around their id: ``head + id + tail``."""

    parts: list[tuple[bytes, bytes, bytes]]

    @classmethod
    def build(cls, codec: UsageCodec, count: int, seed: int = 7) -> Templates:
        stream = DemoStream(seed)
        parts = []
        for _ in range(count):
            event = stream.event().model_copy(update={"id": "x" * ID_LENGTH})
            data = codec.encode_usage(event)
            # Layout: 5-byte header, 1-byte zigzag length (2 * 36), the id, the other fields.
            assert data[HEADER] == 2 * ID_LENGTH, "unexpected id encoding"
            key = event.organization_id.encode()
            parts.append((key, data[: HEADER + 1], data[HEADER + 1 + ID_LENGTH :]))
        return cls(parts)


@dataclass
class LoadCounter:
    """Distinct events sent so far, by the load and by the probes."""

    sent: int = 0
    probes: int = 0
    run_tag: str = field(default_factory=lambda: f"b{int(time.time()):x}")

    def next_id(self) -> bytes:
        self.sent += 1
        prefix = f"{self.run_tag}-"
        return f"{prefix}{self.sent:0{ID_LENGTH - len(prefix)}d}".encode()


class LoadGenerator:
    """Publishes templates with fresh ids to ``topic``.

    Args:
        producer: a started aiokafka producer.
        topic: the usage topic.
        templates: encoded events to re-send.
        counter: shared count of what was sent.
    """

    def __init__(self, producer: AIOKafkaProducer, topic: str, templates: Templates, counter: LoadCounter) -> None:
        self._producer = producer
        self._topic = topic
        self._templates = templates.parts
        self._counter = counter
        self._cursor = 0

    async def send(self, count: int) -> None:
        futures = []
        for _ in range(count):
            key, head, tail = self._templates[self._cursor]
            self._cursor = (self._cursor + 1) % len(self._templates)
            futures.append(await self._producer.send(self._topic, head + self._counter.next_id() + tail, key=key))
        await asyncio.gather(*futures)

    async def closed_loop(self, duration_s: float, visible: Callable[[], int], backlog: int) -> None:
        """As fast as the pipeline absorbs: never more than ``backlog`` events ahead of what is
        queryable, so the broker's memory stays bounded and the rate is the pipeline's."""
        deadline = time.monotonic() + duration_s
        while time.monotonic() < deadline:
            if self._counter.sent - visible() >= backlog:
                await asyncio.sleep(0.01)
                continue
            await self.send(1000)

    async def open_loop(self, rate: float, duration_s: float) -> None:
        """A fixed rate, in 50 ms slices."""
        start = time.monotonic()
        due = 0.0
        while (elapsed := time.monotonic() - start) < duration_s:
            target = rate * elapsed
            if target - due >= 1:
                count = int(target - due)
                due += count
                await self.send(count)
            await asyncio.sleep(0.05)


async def probe_loop(
    producer: AIOKafkaProducer,
    topic: str,
    codec: UsageCodec,
    organization: str,
    counter: LoadCounter,
    duration_s: float,
) -> None:
    """20 probe events a second, encoded at send time so ``ingested_at`` is the publish time:
    their freshness is publish -> queryable."""
    stream = DemoStream(11)
    deadline = time.monotonic() + duration_s
    while time.monotonic() < deadline:
        event = stream.event()
        probe = UsageEvent.parse({**event.model_dump(exclude={"ingested_at", "id"}), "organization_id": organization})
        await producer.send_and_wait(topic, codec.encode_usage(probe), key=organization.encode())
        counter.probes += 1
        await asyncio.sleep(0.05)


class RowsWritten:
    """Rows the sink has written, read from the API's Prometheus metrics twice a second."""

    def __init__(self, api_url: str) -> None:
        self._client = httpx.AsyncClient(base_url=api_url, timeout=10)
        self.value = 0
        self.samples: list[tuple[float, int]] = []

    async def poll(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            text = (await self._client.get("/metrics")).text
            for line in text.splitlines():
                if line.startswith('costops_sink_rows_written_total{table="usage_costs"}'):
                    self.value = int(float(line.split()[-1]))
            self.samples.append((time.monotonic(), self.value))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=0.5)

    def rate_between(self, start: float, end: float) -> float:
        """Rows/s written between two monotonic instants (nearest samples)."""
        inside = [(t, v) for t, v in self.samples if start <= t <= end]
        if len(inside) < 2:
            return 0.0
        (t0, v0), (t1, v1) = inside[0], inside[-1]
        return (v1 - v0) / (t1 - t0) if t1 > t0 else 0.0

    async def close(self) -> None:
        await self._client.aclose()
