"""The Confluent wire format: magic byte 0, a 4-byte big-endian schema id, an Avro body."""

from __future__ import annotations

import io
import struct
from typing import Any

import fastavro

from schemas.batch_reader import read_batch, supports
from schemas.errors import DecodeError
from schemas.registry import SchemaTable

MAGIC = 0
_HEADER = struct.Struct(">bI")


class AvroSerde:
    """Encodes and decodes records of the schemas in ``table``.

    Args:
        table: where schema ids come from (built-in table or Schema Registry).
    """

    def __init__(self, table: SchemaTable) -> None:
        self._table = table
        self._columnar: dict[int, bool] = {}

    def header(self, name: str, subject: str) -> bytes:
        """The 5-byte wire header of schema ``name`` (for writers that splice Avro bodies)."""
        return _HEADER.pack(MAGIC, self._table.id_for(name, subject))

    def encode(self, name: str, subject: str, record: dict[str, Any]) -> bytes:
        schema_id = self._table.id_for(name, subject)
        buffer = io.BytesIO()
        buffer.write(_HEADER.pack(MAGIC, schema_id))
        fastavro.schemaless_writer(buffer, self._table.schema_for(schema_id), record)
        return buffer.getvalue()

    def decode(self, data: bytes | None) -> dict[str, Any]:
        """Decode one message; :class:`DecodeError` says exactly what is wrong with it.

        A columnar record's arrays of numbers come back as numpy arrays, and its arrays of
        number arrays as ``(offsets, flat values)``; everything else as fastavro gives it.
        """
        if not data:
            raise DecodeError("empty message")
        if len(data) < _HEADER.size:
            raise DecodeError(f"message of {len(data)} bytes is shorter than the 5-byte header")
        magic, schema_id = _HEADER.unpack_from(data)
        if magic != MAGIC:
            raise DecodeError(f"magic byte is {magic}, expected {MAGIC} (not Confluent wire format)")
        schema = self._table.schema_for(schema_id)
        columnar = self._columnar.get(schema_id)
        if columnar is None:
            columnar = self._columnar[schema_id] = supports(schema)
        if columnar:
            # Columns of numbers: decoded in bulk, not item by item (schemas.batch_reader).
            return read_batch(data, _HEADER.size, schema)
        buffer = io.BytesIO(data)
        buffer.seek(_HEADER.size)
        try:
            record = fastavro.schemaless_reader(buffer, schema, None)
        except (EOFError, ValueError, UnicodeDecodeError, IndexError, TypeError) as exc:
            raise DecodeError(f"Avro body does not match schema id {schema_id}: {exc!r}") from exc
        if buffer.tell() != len(data):
            raise DecodeError(f"{len(data) - buffer.tell()} trailing bytes after the Avro record")
        if not isinstance(record, dict):
            raise DecodeError(f"schema id {schema_id} does not describe a record")
        return record
