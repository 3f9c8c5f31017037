"""Usage events <-> ``usage-events`` messages (Avro, Confluent wire format).

A message holds one event (``usage_event``, what any Avro producer can write) or a batch
of one organization's events (``usage_batch``, columns). Either decodes to the same thing:
a table of usage columns (:mod:`schemas.columns`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from schemas.columns import batch_record, event_record, is_batch, table_from_batch, table_from_records
from schemas.errors import DecodeError
from schemas.registry import USAGE_BATCH, USAGE_EVENT
from schemas.serde import AvroSerde
from schemas.usage import UsageEvent


class UsageCodec:
    """Bytes <-> usage events.

    Args:
        serde: the wire-format serde.
        usage_subject: Schema Registry subject of the usage topic (``<topic>-value``).
    """

    def __init__(self, serde: AvroSerde, usage_subject: str) -> None:
        self.serde = serde
        self.usage_subject = usage_subject

    def encode_usage(self, event: UsageEvent) -> bytes:
        return self.serde.encode(USAGE_EVENT, self.usage_subject, event_record(event))

    def encode_usage_record(self, record: dict[str, Any]) -> bytes:
        """One single-event record on its own (a dead letter taken out of a batch)."""
        return self.serde.encode(USAGE_EVENT, self.usage_subject, record)

    def encode_usage_batch(self, events: Sequence[UsageEvent]) -> bytes:
        """A batch message of validated events of one organization."""
        return self.serde.encode(USAGE_BATCH, self.usage_subject, batch_record(events))

    def batch_header(self) -> bytes:
        """The wire header of a batch message (for writers that splice encoded columns)."""
        return self.serde.header(USAGE_BATCH, self.usage_subject)

    def decode_usage(self, data: bytes | None) -> pa.Table:
        """The events of a message as usage columns; :class:`DecodeError` says what is wrong."""
        record = self.serde.decode(data)
        try:
            if is_batch(record):
                return table_from_batch(record)
            return table_from_records([record])
        except (KeyError, TypeError, ValueError, AttributeError, IndexError, pa.ArrowException) as exc:
            # A registry schema that decodes but is not a usage event (or batch) of ours.
            raise DecodeError(f"the record is not a usage event or batch: {exc!r}") from exc
