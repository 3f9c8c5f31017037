"""Encoding what callers pass into what the API reads: query parameters and JSON bodies.

Filters take ``date``/``datetime`` or ISO strings, sequences for ``tags``/``group_by`` (sent
comma-separated, as the API reads them), and ``metadata={"team": "x"}`` (sent as
``metadata.team=x``). ``None`` means "not given" and is left out.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

QueryParams = tuple[tuple[str, str], ...]


def scalar(value: object) -> str:
    """One query value as the API reads it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)


def query(filters: Mapping[str, Any]) -> QueryParams:
    """Query parameters of ``filters``; ``metadata`` expands to ``metadata.KEY`` parameters."""
    params: list[tuple[str, str]] = []
    for name, value in filters.items():
        if value is None:
            continue
        if name == "metadata" and isinstance(value, Mapping):
            params.extend((f"metadata.{key}", scalar(item)) for key, item in value.items())
        elif isinstance(value, Sequence) and not isinstance(value, str | bytes):
            if value:
                params.append((name, ",".join(scalar(item) for item in value)))
        else:
            params.append((name, scalar(value)))
    return tuple(params)


def jsonable(value: Any) -> Any:
    """``value`` with Decimals as decimal strings (never floats) and dates as ISO 8601."""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    return value


def with_id(record: Mapping[str, Any]) -> dict[str, Any]:
    """The usage record with an ``id`` (a new UUID when it has none): the pipeline deduplicates
    by id, so a retried ``POST`` never counts a record twice."""
    body = jsonable(record)
    if not isinstance(body, dict):
        raise TypeError(f"a usage record is a mapping of fields, not {type(record).__name__}")
    if body.get("id") is None:
        body["id"] = str(uuid.uuid4())
    return body
