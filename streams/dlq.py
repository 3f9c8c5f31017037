"""Reading ``usage-dlq`` and replaying it into ``usage-events``: ``GET /api/v1/dlq``,
``POST /api/v1/dlq/replay``, ``cost-ops dlq list|replay``.

The DLQ stays on Kafka: listing reads it outside any consumer group, up to the end offsets
of when the read began, and pages by a cursor of per-partition positions (stable while new
dead letters arrive). Processing is at-least-once, so a worker that crashes may dead-letter
a message twice; a dead letter is its source position, and listing and replay keep one of
each. A replay re-publishes the original key and bytes to ``usage-events`` with the original
headers (without the DLQ's own) plus ``x-dlq-replayed-from``. Replaying is safe to repeat:
an event counts once by id downstream, and one that is still invalid simply dead-letters
again.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from llm_cost_ops.kafka import BrokerUnavailableError, bootstrap_servers
from llm_cost_ops.settings import Settings
from schemas import dlq
from schemas.dlq import DeadLetterPage, DeadLetterRecord

MAX_PAGE = 1000
READ_TIMEOUT_S = 15.0
"""Longest wait for the next messages below the end offsets before the read gives up."""
Record = Any
"""An aiokafka ``ConsumerRecord`` (aiokafka ships no type information)."""


def parse_cursor(cursor: str | None) -> dict[int, int]:
    """``"0:12,3:4"`` -> next offset per partition; ``ValueError`` when malformed."""
    if not cursor:
        return {}
    positions = {}
    for part in cursor.split(","):
        partition, offset = part.split(":")
        positions[int(partition)] = int(offset)
    return positions


def parse_ids(ids: Iterable[str]) -> set[tuple[int, int]]:
    """``partition:offset`` ids; ``ValueError`` when one is malformed."""
    found = set()
    for text in ids:
        partition, offset = text.split(":")
        found.add((int(partition), int(offset)))
    return found


class DeadLetters:
    """The DLQ topic of the pipeline, read and replayed on demand."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.topic = settings.kafka.dlq_topic

    async def page(self, cursor: str | None, limit: int, kind: str | None = None) -> DeadLetterPage:
        positions = parse_cursor(cursor)
        records: list[DeadLetterRecord] = []
        ends: dict[int, int] = {}
        async for message, end, first in self._scan():
            ends[message.partition] = end
            if message.offset < positions.get(message.partition, 0):
                continue  # on an earlier page (read only to know what was seen)
            positions[message.partition] = message.offset + 1
            if not first or (kind is not None and _header(message.headers, dlq.KIND) != kind):
                continue
            records.append(_record(message))
            if len(records) >= limit:
                break
        more = any(positions.get(p, 0) < end for p, end in ends.items())
        cursor_text = ",".join(f"{p}:{o}" for p, o in sorted(positions.items())) if more else None
        return DeadLetterPage(data=records, next_cursor=cursor_text, has_more=more)

    async def originals(
        self, ids: set[tuple[int, int]] | None, kind: str | None = None
    ) -> list[tuple[str, bytes | None, bytes, list[tuple[str, bytes]]]]:
        """``(id, key, value, headers to publish)`` of the chosen dead letters (``ids``), or of
        all of them (of ``kind``) when ``ids`` is None."""
        chosen = []
        async for message, _, first in self._scan():
            if not first:
                continue
            where = (message.partition, message.offset)
            if ids is not None and where not in ids:
                continue
            if kind is not None and _header(message.headers, dlq.KIND) != kind:
                continue
            if message.value is None:
                continue
            headers = [(k, bytes(v)) for k, v in message.headers or () if not k.startswith("x-dlq-")]
            headers.append((dlq.REPLAYED_FROM, f"{message.partition}:{message.offset}".encode()))
            chosen.append((f"{message.partition}:{message.offset}", message.key, message.value, headers))
        return chosen

    async def _scan(self) -> AsyncIterator[tuple[Record, int, bool]]:
        """Every message up to the end offsets at the time of the call, with that end and
        whether it is the first of its dead letter (:func:`_identity`)."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap_servers(self._settings), enable_auto_commit=False, group_id=None
        )
        try:
            await consumer.start()
            if self.topic not in await consumer.topics():  # also loads the topic's partitions
                return
            tps = [TopicPartition(self.topic, p) for p in sorted(consumer.partitions_for_topic(self.topic) or ())]
            consumer.assign(tps)
            ends = await consumer.end_offsets(tps)
            firsts = await consumer.beginning_offsets(tps)
            seen: set[tuple[str | None, ...]] = set()
            for tp in tps:
                offset = firsts[tp]
                consumer.seek(tp, offset)
                deadline = time.monotonic() + READ_TIMEOUT_S
                while offset < ends[tp]:
                    batch = await consumer.getmany(tp, timeout_ms=500, max_records=500)
                    messages = batch.get(tp, [])
                    if not messages:  # a fetch may come back empty before the end: wait, bounded
                        if time.monotonic() > deadline:
                            raise BrokerUnavailableError(f"reading the DLQ timed out at {tp.partition}:{offset}")
                        continue
                    for message in messages:
                        if message.offset >= ends[tp]:
                            break
                        identity = _identity(message)
                        yield message, ends[tp], identity not in seen
                        seen.add(identity)
                    offset = messages[-1].offset + 1
                    deadline = time.monotonic() + READ_TIMEOUT_S
        except KafkaError as exc:
            raise BrokerUnavailableError(f"cannot read the DLQ from Kafka: {exc}") from exc
        finally:
            await consumer.stop()


def _header(headers: Sequence[tuple[str, bytes]] | None, name: str) -> str | None:
    for key, value in headers or ():
        if key == name:
            return bytes(value).decode(errors="replace")
    return None


def _identity(message: Record) -> tuple[str | None, ...]:
    """What a dead letter is: its source position (and place in its batch). A worker that
    crashes before committing dead-letters the same message again after its restart; the
    copy says the same, so listing and replay keep the first only."""
    headers = message.headers
    source = _header(headers, dlq.SOURCE_TOPIC)
    if source is None:
        return ("dlq", str(message.partition), str(message.offset))  # not ours: its own identity
    names = (dlq.SOURCE_TOPIC, dlq.SOURCE_PARTITION, dlq.SOURCE_OFFSET, dlq.BATCH_INDEX, dlq.REPLAYED_FROM)
    return tuple(_header(headers, name) for name in names)


def _int(text: str | None) -> int | None:
    return int(text) if text is not None and text.lstrip("-").isdigit() else None


def _record(message: Record) -> DeadLetterRecord:
    headers = message.headers
    return DeadLetterRecord(
        id=f"{message.partition}:{message.offset}",
        partition=message.partition,
        offset=message.offset,
        timestamp=datetime.fromtimestamp(message.timestamp / 1000, UTC),
        key=message.key.decode(errors="replace") if message.key is not None else None,
        kind=_header(headers, dlq.KIND) or "UNKNOWN",
        reason=_header(headers, dlq.REASON) or "",
        field_errors=_header(headers, dlq.FIELD_ERRORS),
        source_topic=_header(headers, dlq.SOURCE_TOPIC),
        source_partition=_int(_header(headers, dlq.SOURCE_PARTITION)),
        source_offset=_int(_header(headers, dlq.SOURCE_OFFSET)),
        batch_index=_int(_header(headers, dlq.BATCH_INDEX)),
        replayed_from=_header(headers, dlq.REPLAYED_FROM),
        size=len(message.value or b""),
    )
