"""LiteLLM spend log rows -> usage records (the ``litellm`` mapping).

A row of LiteLLM's ``LiteLLM_SpendLogs`` (what its proxy logs per request, e.g. through a
custom callback or CDC to Kafka): ``request_id``, ``model``, ``custom_llm_provider``,
``prompt_tokens``, ``completion_tokens``, ``startTime``/``endTime`` (UTC, often without a
zone), ``team_id``, ``user``/``end_user``, ``request_tags`` and ``metadata`` (an object, or a
JSON string of one). The team is the organization (else ``metadata.user_api_key_org_id``,
else ``IngestSettings.default_organization``); the event id comes from ``request_id``.
LiteLLM's own ``spend`` is not taken: the pipeline prices the tokens itself.
"""

from __future__ import annotations

import json
from typing import Any

from llm_cost_ops.ingest.mapped import Mapped, MappingError, SourceRef, millis_between, stable_id, utc_iso
from llm_cost_ops.ingest.provider_alias import canonical_provider
from llm_cost_ops.settings import IngestSettings
from schemas.usage import MAX_METADATA_KEYS, MAX_METADATA_VALUE

# Metadata worth keeping as text (LiteLLM's metadata holds much else: headers, hashed keys).
KEPT_METADATA = ("user_api_key_alias", "user_api_key_team_alias", "model_group", "api_base", "call_type", "cache_hit")


class LiteLlmMapping:
    """The ``litellm`` mapping (see the module docstring).

    Args:
        settings: the default organization.
    """

    def __init__(self, settings: IngestSettings) -> None:
        self._settings = settings

    def __call__(self, row: Any, source: SourceRef) -> list[Mapped]:
        if not isinstance(row, dict):
            return [MappingError("not a LiteLLM spend log row: the message is not a JSON object")]
        meta = _object(row.get("metadata"))
        usage = _object(meta.get("usage_object"))
        provider = canonical_provider(row.get("custom_llm_provider"))
        model = row.get("model")
        if isinstance(model, str) and isinstance(row.get("custom_llm_provider"), str):
            # "openai/gpt-4o" -> "gpt-4o": the provider is a field of its own.
            model = model.removeprefix(f"{row['custom_llm_provider']}/")
        request_id = row.get("request_id")
        start, end = utc_iso(row.get("startTime")), utc_iso(row.get("endTime"))
        organization = row.get("team_id") or meta.get("user_api_key_org_id") or self._settings.default_organization
        record: dict[str, Any] = {
            "id": stable_id("litellm", request_id) if isinstance(request_id, str) and request_id else source.event_id(),
            "provider": provider,
            "model": model,
            "organization_id": organization,
            "user_id": row.get("user") or row.get("end_user"),
            "prompt_tokens": row.get("prompt_tokens"),
            "completion_tokens": row.get("completion_tokens"),
            "cached_tokens": _object(usage.get("prompt_tokens_details")).get("cached_tokens"),
            "reasoning_tokens": _object(usage.get("completion_tokens_details")).get("reasoning_tokens"),
            "timestamp": start,
            "latency_ms": millis_between(start, end),
            "tags": _tags(row.get("request_tags")),
            "metadata": _metadata(row, meta),
            "source": {"type": "litellm"},
        }
        return [{k: v for k, v in record.items() if v not in (None, "")}]


def _object(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return {}
    return value if isinstance(value, dict) else {}


def _tags(value: Any) -> Any:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return [value]
    return value or None


def _metadata(row: dict[str, Any], meta: dict[str, Any]) -> dict[str, str]:
    kept: dict[str, str] = {}
    if isinstance(row.get("request_id"), str):
        kept["request_id"] = row["request_id"]
    for key in KEPT_METADATA:
        value = meta.get(key, row.get(key))
        if isinstance(value, str | int | float | bool) and len(kept) < MAX_METADATA_KEYS:
            kept[key] = str(value)[:MAX_METADATA_VALUE]
    return kept
