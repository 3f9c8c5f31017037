"""CSV rows -> usage records: a header row names the fields, one record per row.

Columns are the usage fields (``model`` or ``model.name``, ``model.version``,
``source.type`` ...). ``tags`` is ``a|b`` or a JSON list; metadata comes from ``metadata.KEY``
columns or a ``metadata`` JSON object column. Integer fields are parsed as integers, an
empty cell means the field is absent, and an unknown column is kept so that validation
names it.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from typing import IO, Any

INT_FIELDS = frozenset(
    {
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
        "cached_tokens",
        "cache_write_tokens",
        "reasoning_tokens",
        "latency_ms",
        "model.context_window",
    }
)
_NESTED = ("model.", "source.")


class CsvRowError(ValueError):
    """A cell that cannot become a field value; ``field`` names it."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field


def read_csv(stream: IO[str]) -> Iterator[tuple[int, dict[str, Any] | CsvRowError]]:
    """``(line, record)`` per data row (``line``: where the row starts; a quoted cell may span
    lines); a row whose cells cannot be converted comes as a :class:`CsvRowError`."""
    reader = csv.reader(stream)
    header = next(reader, None)
    if header is None:
        return
    names = [name.strip() for name in header]
    start = reader.line_num + 1
    for row in reader:
        line, start = start, reader.line_num + 1
        if not any(cell.strip() for cell in row):
            continue
        if len(row) > len(names):
            yield line, CsvRowError("row", f"has {len(row)} cells but the header has {len(names)} columns")
            continue
        try:
            yield line, row_record(names, row)
        except CsvRowError as exc:
            yield line, exc


def row_record(names: list[str], row: list[str]) -> dict[str, Any]:
    """One row as a usage record (see the module docstring)."""
    record: dict[str, Any] = {}
    for name, cell in zip(names, row, strict=False):
        value = cell.strip()
        if not value:
            continue
        if name == "tags":
            record["tags"] = _tags(value)
        elif name == "metadata":
            record.setdefault("metadata", {}).update(_object(name, value))
        elif name.startswith("metadata."):
            record.setdefault("metadata", {})[name.removeprefix("metadata.")] = value
        elif name.startswith(_NESTED):
            parent, _, child = name.partition(".")
            nested = record.setdefault(parent, {})
            if isinstance(nested, str):  # a ``model`` column came first: it is the name
                nested = record[parent] = {"name": nested}
            nested[child] = _int(name, value) if name in INT_FIELDS else value
        elif name == "model" and isinstance(record.get("model"), dict):
            record["model"]["name"] = value
        else:
            record[name] = _int(name, value) if name in INT_FIELDS else value
    return record


def _int(name: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise CsvRowError(name, f"must be an integer (got {value[:40]!r})") from None


def _tags(value: str) -> list[Any]:
    if value.startswith("["):
        parsed = json.loads(value) if _is_json(value) else None
        if not isinstance(parsed, list):
            raise CsvRowError("tags", "must be a JSON list or a|b")
        return parsed
    return [tag.strip() for tag in value.split("|") if tag.strip()]


def _object(name: str, value: str) -> dict[str, Any]:
    parsed = json.loads(value) if _is_json(value) else None
    if not isinstance(parsed, dict):
        raise CsvRowError(name, "must be a JSON object")
    return parsed


def _is_json(value: str) -> bool:
    try:
        json.loads(value)
    except json.JSONDecodeError:
        return False
    return True
