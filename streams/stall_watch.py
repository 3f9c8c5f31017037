"""``StallWatch``: a source partition whose commit is held at a record the worker never
processed is read again from there, or, when no record exists at that offset, let past it.

The worker commits a source partition only through an unbroken run of processed offsets
(``streams.delivery_guards.commit_only_contiguous_offsets``). Two things can break the run
for good: a record Faust dropped with no seek after it to fetch it again, and an offset that
holds no record at all (a transaction marker written by a transactional producer on real
Kafka, or a record removed by retention). Either way the partition would stop committing
while it goes on processing. The watch tells the two apart by reading the broker: it fetches
the partition from the held offset with a consumer of its own. If the held record is there,
the worker reads the partition again from it (what was processed since is processed again,
which every stage absorbs); if the first record is further on, the offsets between hold
nothing and count as done.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.types import TP

logger = logging.getLogger(__name__)

Probe = Callable[[TP, int], Awaitable[int | None]]
"""The offset of the first record at or after an offset of a partition (``None``: none)."""
CommitStart = Callable[[TP], int | None]
"""Where a partition's next commit must begin (``None``: not known yet)."""


def broker_probe(bootstrap_servers: str, timeout_s: float = 5.0) -> Probe:
    """A :data:`Probe` that asks the brokers with a short-lived consumer outside any group."""

    async def first_offset(tp: TP, offset: int) -> int | None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap_servers,
            enable_auto_commit=False,
            auto_offset_reset="earliest",  # below the log start: what the worker would read next
        )
        await consumer.start()
        try:
            partition = TopicPartition(tp.topic, tp.partition)
            consumer.assign([partition])
            consumer.seek(partition, offset)
            fetched = await consumer.getmany(partition, timeout_ms=int(timeout_s * 1000), max_records=1)
            records = fetched.get(partition, [])
            return records[0].offset if records else None
        finally:
            await consumer.stop()

    return first_offset


class StallWatch:
    """Checks the worker's source partitions; ``check`` runs on a timer.

    Args:
        app: the Faust app (its consumer's acknowledged and committed offsets).
        start_of: where each partition's next commit must begin (``delivery_guards.commit_starts``).
        probe: where the first record at or after an offset is.
        after_s: how long a partition must stay held before the watch acts.
        clock: seconds, monotonic.
    """

    def __init__(
        self,
        app: Any,
        start_of: CommitStart,
        probe: Probe,
        after_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._app, self._start_of, self._probe = app, start_of, probe
        self._after_s, self._clock = after_s, clock
        self._held: dict[TP, tuple[int, float]] = {}
        """Partition -> (the offset it is held at, when that was first seen)."""

    async def check(self) -> None:
        app = self._app
        if app.rebalancing:
            self._held.clear()
            return
        consumer = app.consumer
        now = self._clock()
        held_now: dict[TP, tuple[int, float]] = {}
        for tp in consumer.assignment():
            if not app.topics.acks_enabled_for(tp.topic):
                continue
            start = self._start_of(tp)
            acked: list[int] = consumer._acked[tp]
            if start is None or not acked or min(acked) <= start:
                continue
            before = self._held.get(tp)
            held_now[tp] = before if before is not None and before[0] == start else (start, now)
        self._held = held_now
        for tp, (start, first_seen) in list(held_now.items()):
            if now - first_seen >= self._after_s:
                del self._held[tp]
                await self._release(consumer, tp, start)

    async def _release(self, consumer: Any, tp: TP, start: int) -> None:
        found = await self._probe(tp, start)
        name = f"{tp.topic}/{tp.partition}"
        if found is None:
            logger.warning("%s: commit held at offset %d, and the broker returned no record there", name, start)
        elif found > start:
            logger.warning("%s: offsets %d-%d hold no record; committing past them", name, start, found - 1)
            missing = [offset for offset in range(start, found) if offset not in consumer._acked_index[tp]]
            consumer._acked[tp].extend(missing)
            consumer._acked_index[tp].update(missing)
        else:
            logger.warning("%s: the record at offset %d was never processed; reading again from it", name, start)
            await consumer.seek_wait({tp: start})
