"""Load for the benchmark: realistic events encoded once, re-sent with fresh ids.

Encoding every event at send time would make the load generator, not the pipeline, the
bottleneck on a 2-core machine. Events are encoded once (varied providers, models, tokens)
with ids of a fixed length; each send splices new ids into the templates' bytes and frames
them as one batch message per organization (Avro: a one-block array of the same record
bodies), byte for byte what ``UsageProducer`` writes.
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


def zigzag_varint(value: int) -> bytes:
    """Avro's encoding of a long."""
    n = (value << 1) ^ (value >> 63)
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def frame_batch(header: bytes, bodies: list[bytes]) -> bytes:
    """A batch message from record bodies: header, one array block (count, records), end."""
    return header + zigzag_varint(len(bodies)) + b"".join(bodies) + b"\x00"


@dataclass
class Templates:
    """Encoded events split around their id: ``head + id + tail`` (``head`` is the wire header
    plus the id's length byte; a record body is ``head[5:] + id + tail``)."""

    parts: list[tuple[bytes, bytes, bytes]]
    batch_header: bytes = b""

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
        return cls(parts, codec.serde.header("usage_batch", codec.usage_subject))

    def by_key(self) -> dict[bytes, list[tuple[bytes, bytes]]]:
        grouped: dict[bytes, list[tuple[bytes, bytes]]] = {}
        for key, head, tail in self.parts:
            grouped.setdefault(key, []).append((head[HEADER:], tail))
        return grouped


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

    def __init__(
        self, producer: AIOKafkaProducer, topic: str, templates: Templates, counter: LoadCounter, batch: int = 500
    ) -> None:
        self._producer = producer
        self._topic = topic
        self._header = templates.batch_header
        self._by_key = list(templates.by_key().items())
        self._counter = counter
        self._batch = batch
        self._turn = 0

    async def send(self, count: int) -> None:
        """``count`` distinct events, as batch messages of one organization each."""
        futures = []
        while count > 0:
            key, bodies = self._by_key[self._turn % len(self._by_key)]
            self._turn += 1
            size = min(count, self._batch)
            records = [
                head + self._counter.next_id() + tail for head, tail in (bodies[i % len(bodies)] for i in range(size))
            ]
            value = frame_batch(self._header, records)
            futures.append(await self._producer.send(self._topic, value, key=key))
            count -= size
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
