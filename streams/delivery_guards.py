"""Guards on Faust's consumer so that a worker never commits past a source record it did not
process: ``install_delivery_guards(app)``.

Faust (faust-streaming 0.15) keeps its own reading position per partition beside aiokafka's,
and drops or skips records in several places around rebalances, counting on a later seek to
the committed offsets to fetch them again. Each guard below closes one way that went wrong in
the fault test (docs/delivery.md, "Events lost with two workers" and "Events lost under
load"). "Source partitions" are the partitions of the topics agents consume with
acknowledgements (``usage-events``, ``cost-windows``); table changelogs are positioned by
table recovery and never committed, so they are left to Faust.
"""

from __future__ import annotations

import logging
from bisect import bisect_left
from collections.abc import Callable, Mapping
from typing import Any

import faust
from faust.types import TP

from streams.stall_watch import CommitStart, Probe, StallWatch

logger = logging.getLogger(__name__)


def install_delivery_guards(app: faust.App, probe: Probe, stall_after_s: float = 10.0) -> None:
    """All of the guards below on ``app``'s consumer (before the worker starts), and a
    :class:`StallWatch` every ``stall_after_s / 2`` seconds that frees a partition whose
    commit stays held (``probe`` reads the broker)."""
    starts: dict[TP, int] = {}
    start_of = commit_starts(app, starts)
    refuse_acks_of_skipped_messages(app)
    rewind_uncommitted_partitions(app, starts)
    hold_source_partitions_while_seeking(app)
    deliver_every_source_record(app)
    commit_only_contiguous_offsets(app, start_of)
    watch = StallWatch(app, start_of, probe, after_s=stall_after_s)

    @app.timer(interval=stall_after_s / 2)  # type: ignore[untyped-decorator]
    async def watch_stalls() -> None:
        try:
            await watch.check()
        except Exception as exc:  # a timer that raises stops the worker; the next check retries
            logger.warning("stalled-partition check failed: %s", exc)

    _ = watch_stalls


def commit_starts(app: faust.App, starts: Mapping[TP, int]) -> CommitStart:
    """Where a source partition's next commit must begin: its committed offset or, never
    committed, where ``rewind_uncommitted_partitions`` sought it (``starts``); ``None`` when
    neither is known yet."""
    consumer: Any = app.consumer

    def start_of(tp: TP) -> int | None:
        committed: int | None = consumer._committed_offset[tp]
        return committed if committed is not None else starts.get(tp)

    return start_of


def refuse_acks_of_skipped_messages(app: faust.App) -> None:
    """Never acknowledge a message no agent processed.

    A message fetched before a rebalance and delivered after it (flow control stopped, or an
    older generation) is skipped by Faust's stream *and acknowledged* (faust/streams.py,
    ``_py_aiter``). Such a message never entered a stream (it is not ``tracked``): its
    acknowledgement is refused, and it is fetched again, by this worker or the next owner,
    from the committed offset.
    """
    consumer = app.consumer
    acknowledge = consumer.ack

    def ack(message: Any) -> bool:
        if not getattr(message, "tracked", True):
            return False
        return bool(acknowledge(message))

    consumer.ack = ack  # type: ignore[method-assign]


def rewind_uncommitted_partitions(app: faust.App, starts: dict[TP, int]) -> None:
    """When Faust seeks to the committed offsets, a source partition with no committed offset
    goes back to its beginning, which ``starts`` records as where its commits must begin.

    aiokafka's ``seek_to_committed`` leaves a partition without a committed offset (or with
    0) where it is, possibly past records Faust fetched and dropped while it held the
    partition paused (``Consumer.getmany`` keeps only the active partitions' records). Here
    such partitions are sought to their beginning, where ``consumer_auto_offset_reset =
    "earliest"`` starts them; whatever is read twice collapses downstream (docs/delivery.md).
    """
    consumer: Any = app.consumer  # ConsumerT declares neither seek_to_committed nor earliest_offsets
    seek_to_committed = consumer.seek_to_committed

    async def seek_to_committed_or_beginning() -> Mapping[TP, int | None]:
        committed: Mapping[TP, int | None] = await seek_to_committed()  # None: no commit
        uncommitted = []
        for tp, offset in committed.items():
            if not app.topics.acks_enabled_for(tp.topic):
                continue  # a changelog: table recovery positions it itself
            if offset is None or offset <= 0:
                uncommitted.append(tp)
            else:
                starts.pop(tp, None)
        if uncommitted:
            names = ", ".join(sorted(f"{tp.topic}/{tp.partition}" for tp in uncommitted))
            logger.info("no committed offset: reading %s from the beginning", names)
            earliest = await consumer.earliest_offsets(*uncommitted)
            beginnings = {tp: earliest[tp] for tp in uncommitted}
            await consumer.seek_wait(beginnings)
            starts.update(beginnings)
        return committed

    consumer.seek_to_committed = seek_to_committed_or_beginning


def hold_source_partitions_while_seeking(app: faust.App) -> None:
    """Hand on no source record while the seek to the committed offsets is under way.

    Faust's recovery resumes the stream partitions and only then awaits that seek, so until
    the broker answers, the fetch loop hands on records from wherever each partition was,
    possibly past records dropped earlier in the rebalance; those then come after later ones.
    Here the source partitions leave the active set for the length of the seek (Faust's fetch
    loop drops records of inactive partitions) and return afterwards, unless Faust paused or
    revoked them meanwhile.
    """
    consumer: Any = app.consumer
    perform_seek = consumer.perform_seek

    async def perform_seek_holding_sources() -> None:
        active: set[TP] = consumer._get_active_partitions()
        held = {tp for tp in active if app.topics.acks_enabled_for(tp.topic)}
        active.difference_update(held)
        try:
            await perform_seek()
        finally:
            active = consumer._get_active_partitions()
            active.update((held & consumer.assignment()) - consumer._paused_partitions)

    consumer.perform_seek = perform_seek_holding_sources


class SourceBlindReadOffsets(dict[TP, int | None]):
    """Faust's read offsets (a ``defaultdict`` of ``None``) that always read ``None`` for a
    source partition."""

    def __init__(self, is_source: Callable[[TP], bool]) -> None:
        super().__init__()
        self._is_source = is_source

    def __getitem__(self, tp: TP) -> int | None:
        if self._is_source(tp):
            return None
        return self.get(tp)


def deliver_every_source_record(app: faust.App) -> None:
    """Hand every fetched source record to the streams, in the order fetched.

    Faust's fetch loop compares each record with the partition's *read offset*: a record
    below it is dropped as already read, and a jump above it is recorded as a *gap* that later
    counts as acknowledged (meant for transaction markers). Around a rebalance the read offset
    is not where the records are: the stream partitions are resumed before the seek to the
    committed offsets returns, so records from the old position are handed on, the seek
    lowers the read offset, the rest of the batch fetched before it raises it again past
    records that were never handed on, and those are then either dropped or covered by a gap
    and committed. The fault test lost events this way under load. For source partitions the
    read offset now reads as unknown, so nothing is dropped or gap-filled: a record read twice
    is processed twice, which every stage absorbs (docs/delivery.md).
    """
    consumer: Any = app.consumer
    consumer._read_offset = SourceBlindReadOffsets(lambda tp: app.topics.acks_enabled_for(tp.topic))


def commit_only_contiguous_offsets(app: faust.App, start_of: CommitStart) -> None:
    """Commit a source partition only up to the end of the unbroken run of acknowledged
    offsets that begins exactly where its next commit must begin (``start_of``).

    Faust's own rule lets the run begin one past the committed offset, so the record at the
    committed offset itself could be passed over, and before the first seek of an assignment
    it commits from wherever the acknowledgements begin. A partition whose run does not begin
    where it should waits: its missing records come again after the next seek, or the
    :class:`StallWatch` has them read again.
    """
    consumer: Any = app.consumer
    new_offset = consumer._new_offset

    def contiguous_offset(tp: TP) -> int | None:
        if not app.topics.acks_enabled_for(tp.topic):
            return new_offset(tp)  # type: ignore[no-any-return]
        start = start_of(tp)
        acked: list[int] = consumer._acked[tp]
        if start is None or not acked:
            return None
        acked.sort()
        index: set[int] = consumer._acked_index[tp]
        below = bisect_left(acked, start)  # processed again after an earlier commit
        index.difference_update(acked[:below])
        del acked[:below]
        if not acked or acked[0] != start:
            return None
        run = 1
        while run < len(acked) and acked[run] == acked[run - 1] + 1:
            run += 1
        end = acked[run - 1] + 1
        index.difference_update(acked[:run])
        del acked[:run]
        return end

    consumer._new_offset = contiguous_offset
