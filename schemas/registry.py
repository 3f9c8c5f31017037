"""Where schema ids come from: a built-in table, or a Confluent Schema Registry."""

from __future__ import annotations

import json
import threading
from functools import cache
from importlib import resources
from typing import Any, Protocol

import fastavro
import httpx

from schemas.errors import DecodeError, SchemaRegistryError, SchemaRegistryUnavailableError

USAGE_EVENT = "usage_event"
USAGE_BATCH = "usage_batch"

# Ids of the built-in table. They are part of the wire format: never renumber, only append.
# Retired: 2 and 4 (priced records, now Arrow: streams/priced.py), 3 (the row-wise batch,
# replaced by the columnar ``usage_batch`` under a new id).
BUILTIN_IDS: dict[str, int] = {USAGE_EVENT: 6, USAGE_BATCH: 7}
DECODE_ONLY_IDS: dict[int, str] = {1: "usage_event_v1", 5: "usage_batch_v1"}
"""Earlier versions (before ``cache_write_tokens``): still read, never written."""


@cache
def schema_text(name: str) -> str:
    """The schema's JSON text, as shipped in ``schemas/avro/<name>.avsc``."""
    return (resources.files("schemas") / "avro" / f"{name}.avsc").read_text(encoding="utf-8")


def parsed_schema(text: str) -> Any:
    """The schema as the pipeline reads and writes it: logical types dropped.

    A logical type changes no byte on the wire; dropping it only spares a ``datetime`` per
    timestamp on decode (timestamps stay epoch milliseconds, as the columns hold them).
    """
    return fastavro.parse_schema(_plain(json.loads(text)))


def _plain(node: Any) -> Any:
    if isinstance(node, dict):
        # Only timestamp-millis: the columns hold milliseconds. Any other logical type (a
        # registry writer's timestamp-micros) is still converted by fastavro.
        drop = node.get("logicalType") == "timestamp-millis"
        return {k: _plain(v) for k, v in node.items() if not (drop and k == "logicalType")}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node


class SchemaTable(Protocol):
    def id_for(self, name: str, subject: str) -> int: ...
    def schema_for(self, schema_id: int) -> Any: ...


class BuiltinSchemaTable:
    """Fixed ids for the schemas this package ships; no network."""

    def __init__(self) -> None:
        self._by_id = {sid: parsed_schema(schema_text(n)) for n, sid in BUILTIN_IDS.items()}
        self._by_id.update({sid: parsed_schema(schema_text(n)) for sid, n in DECODE_ONLY_IDS.items()})

    def id_for(self, name: str, subject: str) -> int:
        return BUILTIN_IDS[name]

    def schema_for(self, schema_id: int) -> Any:
        try:
            return self._by_id[schema_id]
        except KeyError:
            raise DecodeError(f"unknown schema id {schema_id}") from None


class RegistrySchemaTable:
    """Confluent Schema Registry client: registers under ``<subject>`` and caches both ways.

    Args:
        url: registry base URL (``SCHEMA_REGISTRY_URL``).
        client: an ``httpx.Client``; the caller owns its lifetime.
    """

    def __init__(self, url: str, client: httpx.Client) -> None:
        self._url = url.rstrip("/")
        self._client = client
        self._ids: dict[tuple[str, str], int] = {}
        self._schemas: dict[int, Any] = {}
        self._lock = threading.Lock()

    def id_for(self, name: str, subject: str) -> int:
        key = (name, subject)
        if (sid := self._ids.get(key)) is not None:
            return sid
        text = schema_text(name)
        body = self._call("POST", f"/subjects/{subject}/versions", json={"schema": text})
        sid = int(body["id"])
        with self._lock:
            self._ids[key] = sid
            self._schemas[sid] = parsed_schema(text)
        return sid

    def schema_for(self, schema_id: int) -> Any:
        if (schema := self._schemas.get(schema_id)) is not None:
            return schema
        body = self._call("GET", f"/schemas/ids/{schema_id}", missing=f"unknown schema id {schema_id}")
        try:
            schema = parsed_schema(body["schema"])
        except (KeyError, TypeError, ValueError, fastavro.schema.SchemaParseException) as exc:
            # The message names a schema we cannot read (e.g. a JSON or Protobuf schema).
            raise DecodeError(f"schema id {schema_id} is not an Avro schema this pipeline can read: {exc}") from exc
        with self._lock:
            self._schemas[schema_id] = schema
        return schema

    def _call(self, method: str, path: str, json: Any = None, missing: str | None = None) -> Any:
        """One registry request. ``missing``: the DecodeError message for a 404 (the data names
        a schema that does not exist); unreachable or 5xx is retryable, other 4xx our fault."""
        try:
            response = self._client.request(
                method,
                self._url + path,
                json=json,
                headers={"Content-Type": "application/vnd.schemaregistry.v1+json"},
            )
        except httpx.HTTPError as exc:
            raise SchemaRegistryUnavailableError(f"schema registry {self._url} unreachable: {exc}") from exc
        if response.status_code < 400:
            return response.json()
        try:
            detail = response.json().get("message", response.text)
        except ValueError:
            detail = response.text
        message = f"schema registry {method} {path}: {response.status_code} {detail}"
        if response.status_code == 404 and missing is not None:
            raise DecodeError(f"{missing} ({message})")
        if response.status_code >= 500:
            raise SchemaRegistryUnavailableError(message)
        raise SchemaRegistryError(message)
