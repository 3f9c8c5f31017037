"""Opaque page cursors: the sort key of a listing's last row, as base64url JSON.

Opaque to clients, not secret: a cursor only says where to resume, and the query it resumes
still applies every filter (the caller's organization among them)."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime, timedelta

from pydantic import ValidationError

from schemas.query import SortKey

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def encode_cursor(key: SortKey) -> str:
    # Milliseconds, like the column: a cursor must name the exact instant of its row.
    millis = (key.timestamp - _EPOCH) // timedelta(milliseconds=1)
    raw = json.dumps([millis, key.organization_id, key.event_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> SortKey:
    """The sort key in ``cursor``, or ``ValueError`` if it is not one this API handed out."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        millis, organization_id, event_id = json.loads(raw)
        if not isinstance(millis, int) or isinstance(millis, bool):
            raise ValueError("timestamp is not an integer")
        stamp = _EPOCH + timedelta(milliseconds=millis)
        return SortKey(timestamp=stamp, organization_id=organization_id, event_id=event_id)
    except (binascii.Error, UnicodeDecodeError, ValueError, TypeError, OverflowError, ValidationError):
        raise ValueError("is not a cursor returned by this API") from None
