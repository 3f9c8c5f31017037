"""Where records come from: a file or stdin, read as bytes that are counted for the progress
bar, and the format they are in."""

from __future__ import annotations

import io
from pathlib import Path
from typing import BinaryIO, Literal

Format = Literal["json", "jsonl", "csv"]

_EXTENSIONS: dict[str, Format] = {".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}
PEEK = 4096


class CountingReader(io.RawIOBase):
    """A binary stream that counts the bytes read through it (the progress bar's position)."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.consumed = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]  # typeshed's Buffer
        data = self._raw.read(len(buffer))
        size = len(data)
        buffer[:size] = data
        self.consumed += size
        return size


def extension_format(path: str) -> Format | None:
    """The format a file's name says, if any (``-``, stdin, says none)."""
    return None if path == "-" else _EXTENSIONS.get(Path(path).suffix.lower())


def detect_format(path: str, first: bytes) -> Format:
    """The extension's format, else what the first non-space byte says: ``[`` a JSON array,
    ``{`` JSON lines, anything else CSV (a header row)."""
    named = extension_format(path)
    if named is not None:
        return named
    head = first.lstrip()[:1]
    return "json" if head == b"[" else "jsonl" if head == b"{" else "csv"
