"""The worker's seek to the committed offsets leaves no source partition past records Faust dropped."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

from faust.types import TP

from streams.app import _rewind_uncommitted_partitions


class FakeConsumer:
    """The three consumer calls the rewind uses; the earliest offset of every partition is 3."""

    def __init__(self, committed: Mapping[TP, int | None]) -> None:
        self.committed = committed
        self.seeks: list[dict[TP, int]] = []

    async def seek_to_committed(self) -> Mapping[TP, int | None]:
        return self.committed

    async def earliest_offsets(self, *partitions: TP) -> Mapping[TP, int]:
        return {tp: 3 for tp in partitions}

    async def seek_wait(self, partitions: Mapping[TP, int]) -> None:
        self.seeks.append(dict(partitions))


def app_with(consumer: FakeConsumer) -> Any:
    return SimpleNamespace(consumer=consumer, topics=SimpleNamespace(acks_enabled_for=lambda topic: topic == "usage"))


def test_source_partitions_without_a_commit_go_back_to_their_beginning() -> None:
    never, zero, committed = TP("usage", 0), TP("usage", 1), TP("usage", 2)
    changelog = TP("worker-tier-volume-changelog", 0)  # positioned by table recovery, never committed
    offsets = {never: None, zero: 0, committed: 42, changelog: None}
    consumer = FakeConsumer(offsets)
    _rewind_uncommitted_partitions(app_with(consumer))

    assert asyncio.run(consumer.seek_to_committed()) == offsets  # what Faust's perform_seek reads
    assert consumer.seeks == [{never: 3, zero: 3}]


def test_no_seek_when_every_source_partition_has_a_commit() -> None:
    consumer = FakeConsumer({TP("usage", 0): 7, TP("worker-tier-volume-changelog", 0): None})
    _rewind_uncommitted_partitions(app_with(consumer))

    asyncio.run(consumer.seek_to_committed())
    assert consumer.seeks == []
