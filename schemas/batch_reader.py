"""A vectorized reader for columnar Avro batches (``usage_batch.avsc`` and its kind).

fastavro decodes an array item by item (~150 ns for a small long, ~400 ns for a string);
in a batch of columns that is most of the worker's time. Here the bytes after the last
string column (in ``usage_batch`` everything but the organization, the strings and the
event ids) are a run of zigzag varints only, so they are decoded in one numpy pass and the
columns are sliced out of the result.

The reader follows the *writer's* schema, field by field. It reads records whose fields are
``string``, ``int``/``long``, or arrays of ``string``, ``int``/``long`` or arrays of
``int``/``long``, with every string field before the numeric ones; :func:`supports` says
whether a schema qualifies, and the codec falls back to fastavro for any schema that does
not. Arrays may come in several blocks, with or without byte sizes, as the Avro
specification allows. ``tests/unit/schemas/test_batch_reader.py`` holds it equal to fastavro.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from schemas.errors import DecodeError

_INTS = frozenset({"int", "long"})
Column = np.ndarray | list[str] | str | int | tuple[np.ndarray, np.ndarray]
"""A column: numbers (int64), strings, a scalar, or (offsets, flat values) for nested lists."""


def _kind(schema: Any) -> str | None:
    """``"string"``, ``"int"``, ``"strings"``, ``"ints"``, ``"int_lists"`` or None (unsupported)."""
    if isinstance(schema, dict) and schema.get("type") in ("string", "int", "long") and len(schema) <= 2:
        schema = schema["type"]  # {"type": "long", "logicalType": ...} after _plain: {"type": "long"}
    if schema == "string":
        return "string"
    if isinstance(schema, str) and schema in _INTS:
        return "int"
    if isinstance(schema, dict) and schema.get("type") == "array":
        items = _kind(schema["items"])
        return {"string": "strings", "int": "ints", "ints": "int_lists"}.get(items or "")
    return None


def supports(schema: Any) -> bool:
    """Whether ``schema`` (parsed) is a record this reader can decode."""
    if not isinstance(schema, dict) or schema.get("type") != "record":
        return False
    kinds = [_kind(f["type"]) for f in schema["fields"]]
    if None in kinds:
        return False
    textual = [k in ("string", "strings") for k in kinds]
    # Every string field first: the rest of the record is then varints only.
    return textual == sorted(textual, reverse=True)


class _Bytes:
    """A cursor over the message for the string fields (read one by one)."""

    def __init__(self, data: bytes, position: int) -> None:
        self.data = data
        self.position = position

    def long(self) -> int:
        shift = result = 0
        data = self.data
        while True:
            if self.position >= len(data):
                raise DecodeError("batch ends inside a number")
            byte = data[self.position]
            self.position += 1
            result |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return (result >> 1) ^ -(result & 1)
            shift += 7
            if shift > 63:
                raise DecodeError("batch holds a number longer than 10 bytes")

    def string(self) -> str:
        size = self.long()
        end = self.position + size
        if size < 0 or end > len(self.data):
            raise DecodeError("batch holds a string running past its end")
        try:
            value = self.data[self.position : end].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DecodeError(f"batch holds a string that is not UTF-8: {exc}") from exc
        self.position = end
        return value

    def strings(self) -> list[str]:
        values: list[str] = []
        data = self.data
        while (count := self.long()) != 0:
            if count < 0:
                count = -count
                self.long()  # the block's size in bytes
            for _ in range(count):
                if self.position < len(data) and data[self.position] < 0x80 and not data[self.position] & 1:
                    # The common case, inline: a one-byte length (a string under 64 bytes).
                    size = data[self.position] >> 1
                    start = self.position + 1
                    if start + size > len(data):
                        raise DecodeError("batch holds a string running past its end")
                    try:
                        values.append(data[start : start + size].decode("utf-8"))
                    except UnicodeDecodeError as exc:
                        raise DecodeError(f"batch holds a string that is not UTF-8: {exc}") from exc
                    self.position = start + size
                else:
                    values.append(self.string())
        return values


def decode_varints(data: np.ndarray) -> np.ndarray:
    """Every zigzag varint in ``data`` (uint8), as int64; the data must end on a varint's end."""
    ends = np.flatnonzero(data < 0x80)
    if len(ends) == 0 or ends[-1] != len(data) - 1:
        raise DecodeError("batch ends inside a number")
    starts = np.empty_like(ends)
    starts[0] = 0
    starts[1:] = ends[:-1] + 1
    lengths = ends - starts + 1
    if int(lengths.max()) > 10:
        raise DecodeError("batch holds a number longer than 10 bytes")
    if int(lengths.max()) == 10 and (data[ends[lengths == 10]] > 1).any():
        raise DecodeError("batch holds a number wider than 64 bits")
    place = np.arange(len(data)) - np.repeat(starts, lengths)
    parts = (data.astype(np.uint64) & np.uint64(0x7F)) << (place.astype(np.uint64) * np.uint64(7))
    raw = np.add.reduceat(parts, starts)
    return (raw >> np.uint64(1)).astype(np.int64) ^ -(raw & np.uint64(1)).astype(np.int64)


class _Numbers:
    """A cursor over the decoded varints for the numeric fields."""

    def __init__(self, values: np.ndarray) -> None:
        self.values = values
        self.listed = values.tolist()  # Python ints for the per-block walk
        self.position = 0

    def long(self) -> int:
        if self.position >= len(self.listed):
            raise DecodeError("batch ends before its last field")
        value: int = self.listed[self.position]
        self.position += 1
        return value

    def _blocks(self) -> list[tuple[int, int]]:
        """(start, count) of each block of an array, the cursor left after the array."""
        blocks = []
        while (count := self.long()) != 0:
            if count < 0:
                count = -count
                self.long()
            blocks.append((self.position, count))
            self.position += count
            if self.position > len(self.listed):
                raise DecodeError("batch ends inside an array")
        return blocks

    def ints(self) -> np.ndarray:
        blocks = self._blocks()
        if len(blocks) == 1:
            start, count = blocks[0]
            return self.values[start : start + count]
        return np.concatenate([self.values[s : s + c] for s, c in blocks] or [np.zeros(0, dtype=np.int64)])

    def int_lists(self) -> tuple[np.ndarray, np.ndarray]:
        """Offsets (one more than rows) and the flat items of an array of int arrays."""
        listed, position = self.listed, self.position
        lengths: list[int] = []
        starts: list[int] = []
        counts: list[int] = []
        try:
            while (rows := listed[position]) != 0:
                position += 1
                if rows < 0:
                    rows, position = -rows, position + 1
                for _ in range(rows):
                    length = 0
                    while (count := listed[position]) != 0:
                        position += 1
                        if count < 0:
                            count, position = -count, position + 1
                        starts.append(position)
                        counts.append(count)
                        position += count
                        length += count
                    position += 1  # the row's terminating 0
                    lengths.append(length)
            position += 1  # the column's terminating 0
        except IndexError:
            raise DecodeError("batch ends inside an array") from None
        if position > len(listed):
            raise DecodeError("batch ends inside an array")
        self.position = position
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        if not counts:
            return offsets, np.zeros(0, dtype=np.int64)
        sizes = np.array(counts, dtype=np.int64)
        piece_offsets = np.cumsum(sizes) - sizes
        index = np.arange(int(sizes.sum())) + np.repeat(np.array(starts, dtype=np.int64) - piece_offsets, sizes)
        return offsets, self.values[index]


def read_batch(data: bytes, position: int, schema: Any) -> dict[str, Column]:
    """Decode the record at ``data[position:]`` (the whole rest of the message) by ``schema``,
    a parsed record schema :func:`supports`."""
    text = _Bytes(data, position)
    fields = [(f["name"], _kind(f["type"])) for f in schema["fields"]]
    record: dict[str, Column] = {}
    numeric_from = len(fields)
    for index, (name, kind) in enumerate(fields):
        if kind == "string":
            record[name] = text.string()
        elif kind == "strings":
            record[name] = text.strings()
        else:
            numeric_from = index
            break
    rest = np.frombuffer(data, dtype=np.uint8, offset=text.position)
    numbers = _Numbers(decode_varints(rest) if len(rest) else np.zeros(0, dtype=np.int64))
    for name, kind in fields[numeric_from:]:
        if kind == "int":
            record[name] = numbers.long()
        elif kind == "ints":
            record[name] = numbers.ints()
        else:
            record[name] = numbers.int_lists()
    if numbers.position != len(numbers.listed):
        raise DecodeError(f"{len(numbers.listed) - numbers.position} numbers left after the last field")
    return record
