"""One ``Located`` per record of a file, whatever its format, read in constant memory."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

from llm_cost_ops.ingest.csv_rows import read_csv
from llm_cost_ops.ingest.json_array import read_array
from llm_cost_ops.ingest.source import Format


@dataclass(frozen=True, slots=True)
class Located:
    """A record and where it is (``line 3``, ``record 2 (line 7)``), or why it is unreadable."""

    where: str
    record: Any = None
    error: str | None = None


def read_records(binary: IO[bytes], fmt: Format) -> Iterator[Located]:
    """The records of ``binary`` in ``fmt``. ``json`` is an array, or JSON lines when the first
    non-space character is not ``[`` (what ``cost-ops ingest`` always accepted)."""
    # newline="": the csv module handles line ends itself (quoted cells may hold newlines).
    text = io.TextIOWrapper(binary, encoding="utf-8-sig", newline="" if fmt == "csv" else None)
    if fmt == "csv":
        yield from _csv(text)
    elif fmt == "json" and _first_char(text) == "[":
        yield from _array(text)
    else:
        yield from _lines(text)


def _first_char(text: io.TextIOWrapper) -> str:
    """The first non-space character, without consuming it (the stream may not seek: stdin)."""
    buffer = text.buffer
    peek = buffer.peek(4096) if isinstance(buffer, io.BufferedReader) else b""
    return peek.decode("utf-8", errors="replace").lstrip("\ufeff \t\r\n")[:1]


def _lines(text: IO[str]) -> Iterator[Located]:
    for number, line in enumerate(text, start=1):
        if not line.strip():
            continue
        try:
            yield Located(f"line {number}", json.loads(line))
        except json.JSONDecodeError as exc:
            yield Located(f"line {number}", error=f"not valid JSON: {exc.msg} at column {exc.colno}")


def _array(text: IO[str]) -> Iterator[Located]:
    for element in read_array(text):
        where = f"record {element.index} (line {element.line})" if element.index else f"line {element.line}"
        yield Located(where, element.value, element.error)


def _csv(text: IO[str]) -> Iterator[Located]:
    for line, row in read_csv(text):
        if isinstance(row, Exception):
            yield Located(f"line {line}", error=str(row))
        else:
            yield Located(f"line {line}", row)
