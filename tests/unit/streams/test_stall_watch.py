"""A source partition whose commit stays held is read again, or let past offsets that hold no
record (streams/stall_watch.py)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from types import SimpleNamespace
from typing import Any

from faust.types import TP

from streams.delivery_guards import commit_starts
from streams.stall_watch import StallWatch

USAGE = TP("usage", 0)
CHANGELOG = TP("worker-tier-volume-changelog", 0)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeConsumer:
    def __init__(self, committed: int | None) -> None:
        self._committed_offset: defaultdict[TP, int | None] = defaultdict(lambda: None, {USAGE: committed})
        self._acked: defaultdict[TP, list[int]] = defaultdict(list)
        self._acked_index: defaultdict[TP, set[int]] = defaultdict(set)
        self.seeks: list[dict[TP, int]] = []

    def assignment(self) -> set[TP]:
        return {USAGE, CHANGELOG}

    async def seek_wait(self, partitions: dict[TP, int]) -> None:
        self.seeks.append(partitions)

    def acknowledge(self, *offsets: int) -> None:
        self._acked[USAGE].extend(offsets)
        self._acked_index[USAGE].update(offsets)


class Probe:
    def __init__(self, first: int | None) -> None:
        self.first, self.asked = first, []

    async def __call__(self, tp: TP, offset: int) -> int | None:
        self.asked.append((tp, offset))
        return self.first


def watch(consumer: FakeConsumer, probe: Probe, clock: Clock) -> tuple[Any, StallWatch]:
    app = SimpleNamespace(
        consumer=consumer, rebalancing=False, topics=SimpleNamespace(acks_enabled_for=lambda topic: topic == "usage")
    )
    return app, StallWatch(app, commit_starts(app, {}), probe, after_s=10, clock=clock)


def test_a_partition_held_at_a_missing_record_is_read_again_from_it() -> None:
    consumer, probe, clock = FakeConsumer(committed=10), Probe(first=10), Clock()
    consumer.acknowledge(11, 12, 13)  # 10 was never processed
    _, stalls = watch(consumer, probe, clock)

    asyncio.run(stalls.check())
    clock.now += 9
    asyncio.run(stalls.check())
    assert probe.asked == [] and consumer.seeks == []  # not held long enough yet

    clock.now += 1
    asyncio.run(stalls.check())
    assert probe.asked == [(USAGE, 10)]
    assert consumer.seeks == [{USAGE: 10}]


def test_offsets_that_hold_no_record_count_as_done() -> None:
    consumer, probe, clock = FakeConsumer(committed=10), Probe(first=12), Clock()  # 10, 11: transaction markers
    consumer.acknowledge(12, 13)
    _, stalls = watch(consumer, probe, clock)

    asyncio.run(stalls.check())
    clock.now += 10
    asyncio.run(stalls.check())
    assert consumer.seeks == []
    assert sorted(consumer._acked[USAGE]) == [10, 11, 12, 13]


def test_a_partition_that_moves_on_is_not_held() -> None:
    consumer, probe, clock = FakeConsumer(committed=10), Probe(first=10), Clock()
    consumer.acknowledge(11)
    _, stalls = watch(consumer, probe, clock)

    asyncio.run(stalls.check())
    consumer._committed_offset[USAGE] = 12  # 10 came and the run was committed
    consumer._acked[USAGE] = [13]
    clock.now += 10
    asyncio.run(stalls.check())  # held again, but at 12 and only since now
    assert probe.asked == []


def test_nothing_while_the_run_begins_where_it_should_or_during_a_rebalance() -> None:
    consumer, probe, clock = FakeConsumer(committed=None), Probe(first=3), Clock()
    consumer.acknowledge(5, 6)
    app, stalls = watch(consumer, probe, clock)

    asyncio.run(stalls.check())  # never committed and not sought yet: no known start
    clock.now += 20
    asyncio.run(stalls.check())
    assert probe.asked == []

    stalls = StallWatch(app, commit_starts(app, {USAGE: 3}), probe, after_s=10, clock=clock)
    asyncio.run(stalls.check())
    app.rebalancing = True
    clock.now += 20
    asyncio.run(stalls.check())
    app.rebalancing = False
    asyncio.run(stalls.check())  # the rebalance restarted the count
    assert probe.asked == []
