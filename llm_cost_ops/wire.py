"""Builds the codec the settings call for: Schema Registry when configured, else built-in ids."""

from __future__ import annotations

import httpx

from llm_cost_ops.settings import Settings
from schemas.codec import UsageCodec
from schemas.registry import BuiltinSchemaTable, RegistrySchemaTable, SchemaTable
from schemas.serde import AvroSerde


def build_codec(settings: Settings, http: httpx.Client | None = None) -> UsageCodec:
    """Args:
    settings: read for ``SCHEMA_REGISTRY_URL`` and the topic names (subjects are ``<topic>-value``).
    http: client for the registry, owned by the caller; when omitted, one with a 10 s timeout
        is made that lives as long as the process (the worker's case).
    """
    table: SchemaTable
    url = settings.kafka.schema_registry_url
    table = RegistrySchemaTable(url, http or httpx.Client(timeout=10.0)) if url else BuiltinSchemaTable()
    return UsageCodec(AvroSerde(table), f"{settings.kafka.usage_topic}-value")
