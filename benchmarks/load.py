"""Load for the benchmark: realistic events encoded once, re-sent with fresh ids.

Encoding every event at send time would make the load generator, not the pipeline, the
bottleneck on a 2-core machine. Batches are encoded once (varied providers, models, tokens)
with ids of a fixed length; each send splices a fresh ``event_id`` column into the encoded
batch, byte for byte what ``UsageProducer`` writes.
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
VARIANTS = 3  # different template events per organization, taken in turn


def zigzag_varint(value: int) -> bytes:
    """Avro's encoding of a long."""
    n = (value << 1) ^ (value >> 63)
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def avro_string(value: bytes) -> bytes:
    return zigzag_varint(len(value)) + value


def id_column(ids: list[bytes]) -> bytes:
    """The ``event_id`` array of a batch: one block (count, length-prefixed ids), then the end."""
    return zigzag_varint(len(ids)) + b"".join(avro_string(i) for i in ids) + b"\x00"


@dataclass
class Templates:
    """Encoded batch messages split around their ids: ``prefix + id column + rest``.

    ``prefix`` is the wire header, the organization and the strings; ``rest`` every column
    after ``event_id``. Built once per (organization, size, variant), byte for byte what
    ``UsageProducer`` writes for those events.
    """

    codec: UsageCodec
    events: dict[str, list[UsageEvent]]
    _cache: dict[tuple[str, int, int], tuple[bytes, bytes]] = field(default_factory=dict)

    @classmethod
    def build(cls, codec: UsageCodec, count: int, seed: int = 7, tenants: int = 4) -> Templates:
        """``tenants`` organizations per demo organization (12 in all): enough keys to spread
        over the topic's partitions, so several workers can share the load."""
        stream = DemoStream(seed)
        events: dict[str, list[UsageEvent]] = {}
        for n in range(count):
            event = stream.event()
            update = {"id": "x" * ID_LENGTH, "organization_id": f"{event.organization_id}-{n % tenants}"}
            event = event.model_copy(update=update)
            events.setdefault(event.organization_id, []).append(event)
        return cls(codec, events)

    @property
    def organizations(self) -> list[str]:
        return sorted(self.events)

    def parts(self, organization: str, size: int, variant: int) -> tuple[bytes, bytes]:
        key = (organization, size, variant % VARIANTS)
        found = self._cache.get(key)
        if found is None:
            pool = self.events[organization]
            start = key[2] * len(pool) // VARIANTS
            chosen = [pool[(start + i) % len(pool)] for i in range(size)]
            message = self.codec.encode_usage_batch(chosen)
            ids = id_column([b"x" * ID_LENGTH] * size)
            at = message.index(ids)  # after the header, the organization and the strings
            found = (message[:at], message[at + len(ids) :])
            self._cache[key] = found
        return found

    def message(self, organization: str, ids: list[bytes], variant: int) -> bytes:
        prefix, rest = self.parts(organization, len(ids), variant)
        return prefix + id_column(ids) + rest


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
        self._templates = templates
        self._organizations = templates.organizations
        self._counter = counter
        self._batch = batch
        self._turn = 0

    async def send(self, count: int) -> None:
        """``count`` distinct events, as batch messages of one organization each."""
        futures = []
        while count > 0:
            organization = self._organizations[self._turn % len(self._organizations)]
            variant = self._turn // len(self._organizations)
            self._turn += 1
            size = min(count, self._batch)
            ids = [self._counter.next_id() for _ in range(size)]
            value = self._templates.message(organization, ids, variant)
            futures.append(await self._producer.send(self._topic, value, key=organization.encode()))
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
