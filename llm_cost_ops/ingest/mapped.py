"""What a mapping makes of one source message: usage records (plain dicts, validated later)
or errors saying why a part of the message is not one."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from llm_cost_ops.errors import InvalidInputError

_NAMESPACE = uuid.UUID("6f1d2c3e-7a4b-5c6d-8e9f-0a1b2c3d4e5f")


class MappingError(InvalidInputError):
    """A source message (or a part of it) that no usage record can be made of."""

    code = "MAPPING_ERROR"


@dataclass(frozen=True, slots=True)
class SourceRef:
    """Where a message was read: the fallback identity of the events made from it."""

    topic: str
    partition: int
    offset: int

    def event_id(self, index: int = 0) -> str:
        """A stable id for the ``index``-th event of this message: re-reading the message after
        a restart makes the same id, which the pipeline counts once."""
        return stable_id("kafka", self.topic, str(self.partition), str(self.offset), str(index))


Mapped = dict[str, Any] | MappingError
MessageMapping = Callable[[Any, SourceRef], list[Mapped]]
"""Decoded JSON message -> its usage records (none: nothing in it is usage)."""


def stable_id(*parts: str) -> str:
    """A UUID derived from ``parts`` alone (UUIDv5), the same on every read."""
    return str(uuid.uuid5(_NAMESPACE, "\x1f".join(parts)))


def iso_from_nanos(value: Any) -> Any:
    """Unix nanoseconds (an int, or a string of one as OTLP JSON writes it) as an ISO 8601 UTC
    timestamp; anything else is passed on for validation to judge."""
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return datetime.fromtimestamp(value / 1e9, UTC).isoformat()
    return value


def millis_between(start: Any, end: Any) -> int | None:
    """Milliseconds from ``start`` to ``end`` (ISO 8601, naive meaning UTC); None when either
    is missing or unreadable, or the span is negative."""
    try:
        first, last = _aware(start), _aware(end)
    except (TypeError, ValueError):
        return None
    span = round((last - first).total_seconds() * 1000)
    return span if span >= 0 else None


def _aware(value: Any) -> datetime:
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def utc_iso(value: Any) -> Any:
    """An ISO timestamp without a zone (LiteLLM writes UTC that way) with ``+00:00``; anything
    else as it is."""
    if not isinstance(value, str):
        return value
    try:
        return _aware(value).isoformat()
    except ValueError:
        return value
