"""The worker never commits a source partition past a record it did not process
(streams/delivery_guards.py), whatever Faust's fetch loop dropped or skipped."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

from faust.types import TP

from streams.delivery_guards import (
    SourceBlindReadOffsets,
    commit_only_contiguous_offsets,
    commit_starts,
    hold_source_partitions_while_seeking,
    rewind_uncommitted_partitions,
)

USAGE = TP("usage", 0)
CHANGELOG = TP("worker-tier-volume-changelog", 0)  # positioned by table recovery, never committed


class FakeConsumer:
    """The consumer calls and state the guards use; the earliest offset of every partition is 3."""

    def __init__(self, committed: Mapping[TP, int | None] | None = None) -> None:
        self.committed = committed or {}
        self.seeks: list[dict[TP, int]] = []
        self._committed_offset: defaultdict[TP, int | None] = defaultdict(lambda: None)
        self._acked: defaultdict[TP, list[int]] = defaultdict(list)
        self._acked_index: defaultdict[TP, set[int]] = defaultdict(set)
        self.faust_rule: list[TP] = []

    async def seek_to_committed(self) -> Mapping[TP, int | None]:
        return self.committed

    async def earliest_offsets(self, *partitions: TP) -> Mapping[TP, int]:
        return {tp: 3 for tp in partitions}

    async def seek_wait(self, partitions: Mapping[TP, int]) -> None:
        self.seeks.append(dict(partitions))

    def _new_offset(self, tp: TP) -> int | None:
        self.faust_rule.append(tp)
        return 99

    def acknowledge(self, tp: TP, *offsets: int) -> None:
        for offset in offsets:
            self._acked[tp].append(offset)
            self._acked_index[tp].add(offset)


def app_with(consumer: Any) -> Any:
    return SimpleNamespace(consumer=consumer, topics=SimpleNamespace(acks_enabled_for=lambda topic: topic == "usage"))


def test_source_partitions_without_a_commit_go_back_to_their_beginning() -> None:
    never, zero, committed = TP("usage", 0), TP("usage", 1), TP("usage", 2)
    offsets = {never: None, zero: 0, committed: 42, CHANGELOG: None}
    consumer = FakeConsumer(offsets)
    starts: dict[TP, int] = {committed: 0}
    rewind_uncommitted_partitions(app_with(consumer), starts)

    assert asyncio.run(consumer.seek_to_committed()) == offsets  # what Faust's perform_seek reads
    assert consumer.seeks == [{never: 3, zero: 3}]
    assert starts == {never: 3, zero: 3}  # a committed partition starts at its commit


def test_no_seek_when_every_source_partition_has_a_commit() -> None:
    consumer = FakeConsumer({USAGE: 7, CHANGELOG: None})
    rewind_uncommitted_partitions(app_with(consumer), {})

    asyncio.run(consumer.seek_to_committed())
    assert consumer.seeks == []


def test_source_partitions_read_offsets_are_always_unknown() -> None:
    offsets = SourceBlindReadOffsets(lambda tp: tp.topic == "usage")
    offsets[USAGE] = 40
    offsets[CHANGELOG] = 12

    assert offsets[USAGE] is None  # no record below it is dropped, no jump above it is a gap
    assert offsets[CHANGELOG] == 12
    assert offsets[TP("worker-tier-volume-changelog", 1)] is None  # Faust's defaultdict(None)
    assert offsets.pop(USAGE) == 40  # what a revocation does


def guarded(consumer: FakeConsumer, starts: dict[TP, int] | None = None) -> Any:
    app = app_with(consumer)
    commit_only_contiguous_offsets(app, commit_starts(app, {} if starts is None else starts))
    return consumer._new_offset


def test_commits_the_run_that_begins_at_the_committed_offset() -> None:
    consumer = FakeConsumer()
    consumer._committed_offset[USAGE] = 10
    consumer.acknowledge(USAGE, 12, 10, 11, 13, 20, 21)
    new_offset = guarded(consumer)

    assert new_offset(USAGE) == 14
    assert consumer._acked[USAGE] == [20, 21]  # kept for when 14-19 are processed
    assert consumer._acked_index[USAGE] == {20, 21}


def test_waits_while_the_committed_record_itself_is_missing() -> None:
    """Faust's rule accepts a run beginning one past the committed offset; this one does not."""
    consumer = FakeConsumer()
    consumer._committed_offset[USAGE] = 10
    consumer.acknowledge(USAGE, 11, 12, 13)
    new_offset = guarded(consumer)

    assert new_offset(USAGE) is None
    consumer.acknowledge(USAGE, 10)  # fetched again after the next seek
    assert new_offset(USAGE) == 14


def test_offsets_processed_again_below_the_commit_are_forgotten() -> None:
    consumer = FakeConsumer()
    consumer._committed_offset[USAGE] = 10
    consumer.acknowledge(USAGE, 7, 8, 10)
    new_offset = guarded(consumer)

    assert new_offset(USAGE) == 11
    assert consumer._acked[USAGE] == [] and consumer._acked_index[USAGE] == set()


def test_a_never_committed_partition_commits_from_where_it_was_rewound() -> None:
    consumer = FakeConsumer()
    consumer.acknowledge(USAGE, 5, 6)  # handed on from a stale position before the seek
    starts: dict[TP, int] = {}
    new_offset = guarded(consumer, starts)

    assert new_offset(USAGE) is None  # no known start yet: no commit
    starts[USAGE] = 3
    assert new_offset(USAGE) is None  # 3 and 4 not processed yet
    consumer.acknowledge(USAGE, 3, 4)
    assert new_offset(USAGE) == 7


def test_changelogs_keep_fausts_rule() -> None:
    consumer = FakeConsumer()
    new_offset = guarded(consumer)

    assert new_offset(CHANGELOG) == 99
    assert consumer.faust_rule == [CHANGELOG]


class SeekingConsumer:
    """Faust's active and paused partitions, and a seek during which the test acts."""

    def __init__(self, during_seek: Any = None) -> None:
        self.active = {USAGE, TP("usage", 1), CHANGELOG}
        self._paused_partitions: set[TP] = set()
        self.assigned = {USAGE, TP("usage", 1), CHANGELOG}
        self.active_during_seek: set[TP] = set()
        self.during_seek = during_seek

    def _get_active_partitions(self) -> set[TP]:
        return self.active

    def assignment(self) -> set[TP]:
        return self.assigned

    async def perform_seek(self) -> None:
        self.active_during_seek = set(self.active)
        if self.during_seek:
            self.during_seek(self)


def test_no_source_record_is_handed_on_while_seeking() -> None:
    consumer = SeekingConsumer()
    hold_source_partitions_while_seeking(app_with(consumer))
    asyncio.run(consumer.perform_seek())

    assert consumer.active_during_seek == {CHANGELOG}
    assert consumer.active == {USAGE, TP("usage", 1), CHANGELOG}


def test_partitions_paused_or_revoked_during_the_seek_stay_out() -> None:
    def rebalance(consumer: SeekingConsumer) -> None:
        consumer._paused_partitions.add(USAGE)
        consumer.assigned = {USAGE, CHANGELOG}

    consumer = SeekingConsumer(rebalance)
    hold_source_partitions_while_seeking(app_with(consumer))
    asyncio.run(consumer.perform_seek())

    assert consumer.active == {CHANGELOG}
