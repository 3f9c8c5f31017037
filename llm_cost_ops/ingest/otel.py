"""OpenTelemetry GenAI spans -> usage records (the ``otel-genai`` mapping).

Two shapes of message are read:

* OTLP JSON (``ExportTraceServiceRequest``: ``resourceSpans[].scopeSpans[].spans[]``, typed
  attribute lists), what the OpenTelemetry Collector's Kafka exporter writes with
  ``encoding: otlp_json``. One message may hold many spans; spans without any ``gen_ai.``
  attribute (HTTP, database ...) are not LLM calls and are passed over.
* One span as a JSON object with plain attribute maps (``attributes``, ``resource.attributes``,
  ``context.trace_id``/``span_id``), what the Python SDK's ``span.to_json()`` writes.

Attributes follow the GenAI semantic conventions: ``gen_ai.provider.name`` (``gen_ai.system``
before it), ``gen_ai.response.model`` (else ``gen_ai.request.model``),
``gen_ai.usage.input_tokens``/``output_tokens`` (``prompt_tokens``/``completion_tokens``
before), and cache and reasoning counts where the instrumentation records them. The
organization, project and user come from resource attributes, then span attributes, named in
``IngestSettings``. The event id comes from the trace and span ids, so a re-read span counts once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llm_cost_ops.ingest.mapped import Mapped, MappingError, SourceRef, iso_from_nanos, millis_between, stable_id
from llm_cost_ops.ingest.provider_alias import canonical_provider
from llm_cost_ops.settings import IngestSettings

PROVIDER = ("gen_ai.provider.name", "gen_ai.system")
MODEL = ("gen_ai.response.model", "gen_ai.request.model")
INPUT = ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens")
OUTPUT = ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens")
CACHED = ("gen_ai.usage.cache_read.input_tokens", "gen_ai.usage.cache_read_input_tokens", "gen_ai.usage.cached_tokens")
CACHE_WRITE = ("gen_ai.usage.cache_creation.input_tokens", "gen_ai.usage.cache_creation_input_tokens")
REASONING = ("gen_ai.usage.reasoning.output_tokens", "gen_ai.usage.reasoning_tokens")


class OtelGenAiMapping:
    """The ``otel-genai`` mapping (see the module docstring).

    Args:
        settings: the attribute names of organization, project and user, and the default organization.
    """

    def __init__(self, settings: IngestSettings) -> None:
        self._settings = settings

    def __call__(self, message: Any, source: SourceRef) -> list[Mapped]:
        if not isinstance(message, dict):
            return [MappingError("not an OpenTelemetry span: the message is not a JSON object")]
        batches = message.get("resourceSpans", message.get("resource_spans"))
        if batches is None:
            resource = message.get("resource")
            resource_attrs = resource.get("attributes", {}) if isinstance(resource, dict) else {}
            span = self.span(message, _plain(resource_attrs), source, 0)
            return [span if span is not None else MappingError("not a GenAI span: no gen_ai.* attribute")]
        if not isinstance(batches, list):
            return [MappingError("resourceSpans: must be a list")]
        records: list[Mapped] = []
        index = 0
        for batch in batches:
            resource = _get(batch, "resource") or {}
            resource_attrs = _typed(_get(resource, "attributes") or [])
            for scope in _get(batch, "scopeSpans", "scope_spans") or []:
                for span in _get(scope, "spans") or []:
                    record = self.span(span, resource_attrs, source, index)
                    index += 1
                    if record is not None:
                        records.append(record)
        return records

    def span(self, span: Any, resource: dict[str, Any], source: SourceRef, index: int) -> Mapped | None:
        """One span's record; None when it is not a GenAI span."""
        if not isinstance(span, dict):
            return MappingError("a span must be a JSON object")
        raw = span.get("attributes") or {}
        attrs = _typed(raw) if isinstance(raw, list) else _plain(raw)
        if not any(key.startswith("gen_ai.") for key in attrs):
            return None
        context: dict[str, Any] = span["context"] if isinstance(span.get("context"), dict) else {}
        trace_id = _first_str(span, context, ("traceId", "trace_id"))
        span_id = _first_str(span, context, ("spanId", "span_id"))
        start = iso_from_nanos(_first(span, ("startTimeUnixNano", "start_time_unix_nano", "start_time")))
        end = iso_from_nanos(_first(span, ("endTimeUnixNano", "end_time_unix_nano", "end_time")))
        both = {**attrs, **resource}  # resource attributes win: they name the deployment
        record: dict[str, Any] = {
            "id": stable_id("otel", trace_id, span_id) if trace_id and span_id else source.event_id(index),
            "provider": canonical_provider(_pick(attrs, PROVIDER)),
            "model": _pick(attrs, MODEL),
            "prompt_tokens": _pick(attrs, INPUT),
            "completion_tokens": _pick(attrs, OUTPUT),
            "organization_id": _pick(both, self._settings.organization_attributes)
            or self._settings.default_organization,
            "project_id": _pick(both, self._settings.project_attributes),
            "user_id": _pick(both, self._settings.user_attributes),
            "cached_tokens": _pick(attrs, CACHED),
            "cache_write_tokens": _pick(attrs, CACHE_WRITE),
            "reasoning_tokens": _pick(attrs, REASONING),
            "timestamp": start,
            "latency_ms": millis_between(start, end),
            "source": {"type": "otel-genai"},
            "metadata": {
                "trace_id": trace_id,
                "span_id": span_id,
                "operation": _pick(attrs, ("gen_ai.operation.name",)) or span.get("name"),
                "service": resource.get("service.name"),
            },
        }
        record["metadata"] = {k: v for k, v in record["metadata"].items() if v is not None}
        return {k: v for k, v in record.items() if v is not None}


def _get(node: Any, *names: str) -> Any:
    if not isinstance(node, dict):
        return None
    for name in names:
        if name in node:
            return node[name]
    return None


def _first(span: dict[str, Any], names: Sequence[str]) -> Any:
    return next((span[name] for name in names if span.get(name) is not None), None)


def _first_str(span: dict[str, Any], context: dict[str, Any], names: Sequence[str]) -> str | None:
    value = _first(span, names) or _first(context, names)
    if not isinstance(value, str) or not value:
        return None
    return value.removeprefix("0x")


def _pick(attrs: dict[str, Any], names: Sequence[str]) -> Any:
    return next((attrs[name] for name in names if attrs.get(name) not in (None, "")), None)


def _plain(attrs: Any) -> dict[str, Any]:
    return {str(k): v for k, v in attrs.items()} if isinstance(attrs, dict) else {}


def _typed(attrs: Any) -> dict[str, Any]:
    """OTLP JSON ``[{"key": k, "value": {"stringValue": v}}]`` as ``{k: v}``."""
    result: dict[str, Any] = {}
    if not isinstance(attrs, list):
        return _plain(attrs)
    for item in attrs:
        if isinstance(item, dict) and isinstance(item.get("key"), str):
            result[item["key"]] = _any_value(item.get("value"))
    return result


def _any_value(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    for kind in ("stringValue", "boolValue", "doubleValue"):
        if kind in value:
            return value[kind]
    if "intValue" in value:  # a string in OTLP JSON (64-bit integers)
        raw = value["intValue"]
        return int(raw) if isinstance(raw, str) and raw.lstrip("-").isdigit() else raw
    if "arrayValue" in value:
        return [_any_value(v) for v in (value["arrayValue"] or {}).get("values", [])]
    return None
