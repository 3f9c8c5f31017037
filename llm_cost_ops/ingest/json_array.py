"""A JSON array read one element at a time, in constant memory (no whole-file parse).

The text is read in chunks; each element is decoded with ``json.JSONDecoder.raw_decode`` as
soon as it is complete in the buffer, and the buffer drops what was consumed. An element
that is not valid JSON ends the read: past a syntax error the array's structure is unknown,
so the reader says where it broke rather than guess where the next element starts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

CHUNK = 64 * 1024
MAX_ELEMENT = 16 * 1024 * 1024
"""Largest element accepted (characters); a larger one is reported, not buffered."""
_SPACE = re.compile(r"[ \t\n\r]*")


@dataclass(frozen=True, slots=True)
class ArrayElement:
    """One element: its 1-based ``index``, the ``line`` it starts on, and the value (or, for
    ``error``, why the array could not be read further)."""

    index: int
    line: int
    value: Any = None
    error: str | None = None


class _Buffer:
    """Text read so far and not yet consumed, with the line number at ``pos``."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self.text = ""
        self.pos = 0
        self.line = 1
        self.eof = False

    def more(self) -> bool:
        """Read another chunk; False at the end of the stream."""
        if self.eof:
            return False
        chunk = self._stream.read(CHUNK)
        if not chunk:
            self.eof = True
            return False
        if self.pos > CHUNK:  # drop what was consumed, so memory stays about one chunk
            self.text = self.text[self.pos :]
            self.pos = 0
        self.text += chunk
        return True

    def advance(self, to: int) -> None:
        self.line += self.text.count("\n", self.pos, to)
        self.pos = to

    def skip_space(self) -> str:
        """The next non-space character ("" at the end), consuming the space before it."""
        while True:
            end = _SPACE.match(self.text, self.pos)
            assert end is not None  # the pattern matches the empty string
            self.advance(end.end())
            if self.pos < len(self.text):
                return self.text[self.pos]
            if not self.more():
                return ""


def read_array(stream: IO[str]) -> Iterator[ArrayElement]:
    """The elements of the JSON array ``stream`` holds, in order."""
    decoder = json.JSONDecoder()
    buf = _Buffer(stream)
    if buf.skip_space() != "[":
        yield ArrayElement(0, buf.line, error="not a JSON array: it must start with [")
        return
    buf.advance(buf.pos + 1)
    index = 0
    if buf.skip_space() == "]":
        return
    while True:
        index += 1
        line = buf.line
        if buf.skip_space() == "":
            yield ArrayElement(index, line, error="not a valid JSON array: the file ends inside the array")
            return
        line = buf.line
        try:
            value, end = _decode(decoder, buf)
        except ValueError as exc:
            yield ArrayElement(index, line, error=str(exc))
            return
        buf.advance(end)
        yield ArrayElement(index, line, value)
        after = buf.skip_space()
        if after == "]":
            return
        if after != ",":
            found = repr(after) if after else "the end of the file"
            yield ArrayElement(index + 1, buf.line, error=f"not a valid JSON array: expected , or ] but found {found}")
            return
        buf.advance(buf.pos + 1)


def _decode(decoder: json.JSONDecoder, buf: _Buffer) -> tuple[Any, int]:
    """The value starting at ``buf.pos`` and where it ends, reading more while it is cut off."""
    while True:
        try:
            value, end = decoder.raw_decode(buf.text, buf.pos)
        except json.JSONDecodeError as exc:
            # Cut off by the chunk's end (not a real error yet): read on, up to MAX_ELEMENT.
            # An error within a few characters of the end (``tru``, ``-``) may be the cut too.
            truncated = exc.pos >= len(buf.text) - 64 or exc.msg.startswith("Unterminated string")
            if truncated and len(buf.text) - buf.pos <= MAX_ELEMENT and buf.more():
                continue
            if len(buf.text) - buf.pos > MAX_ELEMENT:
                raise ValueError(f"record larger than {MAX_ELEMENT // (1024 * 1024)} MiB") from None
            line = buf.line + buf.text.count("\n", buf.pos, exc.pos)
            raise ValueError(f"not valid JSON: {exc.msg} (line {line})") from None
        # A number at the very end of the buffer may continue in the next chunk ("12" | "34").
        if end == len(buf.text) and not buf.eof and buf.more():
            continue
        return value, end
