"""Dead letters: a message the pipeline cannot use keeps its original bytes and says why."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel

from llm_cost_ops.errors import InvalidInputError

# Header names on usage-dlq messages; `cost-ops dlq` and replay read these.
REASON = "x-dlq-reason"
KIND = "x-dlq-kind"
SOURCE_TOPIC = "x-dlq-source-topic"
SOURCE_PARTITION = "x-dlq-source-partition"
SOURCE_OFFSET = "x-dlq-source-offset"
FIELD_ERRORS = "x-dlq-field-errors"
BATCH_INDEX = "x-dlq-batch-index"
"""Position of the event in its batch message, when it came out of one."""
REPLAYED_FROM = "x-dlq-replayed-from"
"""On a replayed message: the ``partition:offset`` of the dead letter it came from."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Why a message went to the DLQ. ``kind`` is the error code (DECODE_ERROR, VALIDATION_ERROR)."""

    kind: str
    reason: str
    field_errors: dict[str, str]
    batch_index: int | None = None
    """Position of the event in its batch message, when it came out of one."""

    @classmethod
    def from_error(cls, exc: InvalidInputError, batch_index: int | None = None) -> DeadLetter:
        return cls(kind=exc.code, reason=exc.message, field_errors=exc.field_errors, batch_index=batch_index)

    def headers(
        self, topic: str, partition: int, offset: int, original: list[tuple[str, bytes]] | None = None
    ) -> list[tuple[str, bytes]]:
        """The original headers, then ours (a replay strips ours before re-publishing)."""
        own = [
            (REASON, self.reason.encode()),
            (KIND, self.kind.encode()),
            (SOURCE_TOPIC, topic.encode()),
            (SOURCE_PARTITION, str(partition).encode()),
            (SOURCE_OFFSET, str(offset).encode()),
        ]
        if self.field_errors:
            own.append((FIELD_ERRORS, "; ".join(f"{k}: {v}" for k, v in self.field_errors.items()).encode()))
        if self.batch_index is not None:
            own.append((BATCH_INDEX, str(self.batch_index).encode()))
        # A replayed message that fails again keeps saying which dead letter it was.
        kept = [(k, v) for k, v in (original or []) if not k.startswith("x-dlq-") or k == REPLAYED_FROM]
        return kept + own


class DeadLetterRecord(BaseModel):
    """One message of ``usage-dlq`` as ``GET /api/v1/dlq`` lists it. ``id`` is
    ``partition:offset``, what ``cost-ops dlq replay`` takes."""

    id: str
    partition: int
    offset: int
    timestamp: datetime
    key: str | None
    kind: str
    reason: str
    field_errors: str | None
    source_topic: str | None
    source_partition: int | None
    source_offset: int | None
    batch_index: int | None
    replayed_from: str | None
    size: int
    """Bytes of the original message, kept as they were for the replay."""


class DeadLetterPage(BaseModel):
    data: list[DeadLetterRecord]
    next_cursor: str | None
    """Pass as ``cursor`` for the next page; null when this page reached the end."""
    has_more: bool
