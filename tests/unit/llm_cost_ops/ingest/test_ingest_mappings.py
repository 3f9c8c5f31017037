"""The mappings of ``cost-ops ingest-topic`` (llm_cost_ops/ingest/): OpenTelemetry GenAI spans,
LiteLLM spend log rows and TOML mapping files -> records that validate as usage events."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from llm_cost_ops.errors import InvalidInputError
from llm_cost_ops.ingest.mapped import MappingError, SourceRef
from llm_cost_ops.ingest.mapping import load_mapping
from llm_cost_ops.settings import IngestSettings
from schemas.usage import UsageEvent

SOURCE = SourceRef("spans", 2, 41)


def attr(key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"key": key, "value": {"boolValue": value}}
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}
    return {"key": key, "value": {"stringValue": value}}


# What the OpenTelemetry Collector's Kafka exporter (encoding: otlp_json) writes for a service
# instrumented with opentelemetry-instrumentation-openai-v2: a chat span and an HTTP span.
OTLP_EXPORT: dict[str, Any] = {
    "resourceSpans": [
        {
            "resource": {
                "attributes": [
                    attr("service.name", "support-bot"),
                    attr("tenant.id", "org-acme"),
                    attr("telemetry.sdk.language", "python"),
                ]
            },
            "scopeSpans": [
                {
                    "scope": {"name": "opentelemetry.instrumentation.openai_v2", "version": "2.1b0"},
                    "spans": [
                        {
                            "traceId": "5b8efff798038103d269b633813fc60c",
                            "spanId": "eee19b7ec3c1b174",
                            "name": "chat gpt-4o-mini",
                            "kind": 3,
                            "startTimeUnixNano": "1736935200000000000",
                            "endTimeUnixNano": "1736935201250000000",
                            "attributes": [
                                attr("gen_ai.operation.name", "chat"),
                                attr("gen_ai.system", "openai"),
                                attr("gen_ai.request.model", "gpt-4o-mini"),
                                attr("gen_ai.response.model", "gpt-4o-mini-2024-07-18"),
                                attr("gen_ai.response.id", "chatcmpl-AqXyZ"),
                                attr("gen_ai.usage.input_tokens", 1200),
                                attr("gen_ai.usage.output_tokens", 300),
                                attr("gen_ai.usage.cache_read.input_tokens", 1024),
                                attr("user.id", "u-7"),
                            ],
                            "status": {},
                        },
                        {
                            "traceId": "5b8efff798038103d269b633813fc60c",
                            "spanId": "aaa19b7ec3c1b175",
                            "name": "POST /v1/chat/completions",
                            "startTimeUnixNano": "1736935200000000000",
                            "endTimeUnixNano": "1736935201000000000",
                            "attributes": [attr("http.request.method", "POST")],
                        },
                    ],
                }
            ],
        }
    ]
}

# Python SDK ``ReadableSpan.to_json()`` of an Anthropic call on Bedrock (newer conventions).
SDK_SPAN: dict[str, Any] = {
    "name": "chat anthropic.claude-3-5-sonnet",
    "context": {"trace_id": "0x0af7651916cd43dd8448eb211c80319c", "span_id": "0xb7ad6b7169203331", "trace_state": "[]"},
    "kind": "SpanKind.CLIENT",
    "parent_id": None,
    "start_time": "2025-01-15T10:00:00.000000Z",
    "end_time": "2025-01-15T10:00:02.500000Z",
    "status": {"status_code": "UNSET"},
    "attributes": {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "aws.bedrock",
        "gen_ai.request.model": "anthropic.claude-3-5-sonnet-20241022-v2:0",
        "gen_ai.usage.input_tokens": 2000,
        "gen_ai.usage.output_tokens": 500,
        "gen_ai.usage.cache_creation.input_tokens": 300,
        "gen_ai.usage.reasoning.output_tokens": 120,
        "costops.project_id": "proj-9",
    },
    "events": [],
    "links": [],
    "resource": {"attributes": {"service.name": "planner", "costops.organization_id": "org-beta"}, "schema_url": ""},
}

# One row of LiteLLM's LiteLLM_SpendLogs, as its proxy writes it.
LITELLM_ROW: dict[str, Any] = {
    "request_id": "chatcmpl-9f1c2d3e-4b5a-6789-abcd-ef0123456789",
    "call_type": "acompletion",
    "api_key": "88dc28d0f030c55ed4ab77ed8faf098196cb1c05df778539800c9f1243fe6b4b",
    "spend": 0.000715,
    "total_tokens": 430,
    "prompt_tokens": 400,
    "completion_tokens": 30,
    "startTime": "2025-01-15T10:00:00.123000",
    "endTime": "2025-01-15T10:00:01.456000",
    "completionStartTime": "2025-01-15T10:00:00.900000",
    "model": "gpt-4o",
    "model_id": "c1b4e0c6a",
    "model_group": "gpt-4o",
    "custom_llm_provider": "openai",
    "api_base": "https://api.openai.com/v1",
    "user": "alice@example.com",
    "metadata": '{"user_api_key_alias": "prod-key", "user_api_key_team_alias": "search",'
    ' "usage_object": {"prompt_tokens_details": {"cached_tokens": 128}, "completion_tokens_details": null},'
    ' "headers": {"x-forwarded-for": "10.0.0.1"}}',
    "cache_hit": "False",
    "cache_key": "",
    "request_tags": '["prod", "search"]',
    "team_id": "team-search",
    "end_user": "",
    "requester_ip_address": "",
}


def events(mapped: list[Any]) -> list[UsageEvent]:
    assert not any(isinstance(item, MappingError) for item in mapped), mapped
    return [UsageEvent.parse(item) for item in mapped]


def test_otlp_export_maps_genai_spans_and_passes_over_others() -> None:
    [event] = events(load_mapping("otel-genai", IngestSettings())(OTLP_EXPORT, SOURCE))
    assert (event.provider, event.model.name) == ("openai", "gpt-4o-mini-2024-07-18")
    assert (event.prompt_tokens, event.completion_tokens, event.cached_tokens) == (1200, 300, 1024)
    assert (event.organization_id, event.project_id, event.user_id) == ("org-acme", "support-bot", "u-7")
    assert event.timestamp.isoformat() == "2025-01-15T10:00:00+00:00"
    assert event.latency_ms == 1250
    assert event.metadata == {
        "trace_id": "5b8efff798038103d269b633813fc60c",
        "span_id": "eee19b7ec3c1b174",
        "operation": "chat",
        "service": "support-bot",
    }
    assert event.source is not None and event.source.type == "otel-genai"
    # The id is the span's: the same span read again (another offset) is the same event.
    [again] = events(load_mapping("otel-genai", IngestSettings())(OTLP_EXPORT, SourceRef("spans", 0, 7)))
    assert again.id == event.id


def test_sdk_span_with_newer_conventions() -> None:
    [event] = events(load_mapping("otel-genai", IngestSettings())(SDK_SPAN, SOURCE))
    assert (event.provider, event.model.name) == ("aws", "anthropic.claude-3-5-sonnet-20241022-v2:0")
    assert (event.cache_write_tokens, event.reasoning_tokens) == (300, 120)
    assert (event.organization_id, event.project_id) == ("org-beta", "proj-9")
    assert event.latency_ms == 2500
    assert event.metadata["trace_id"] == "0af7651916cd43dd8448eb211c80319c"


def test_otel_organization_keys_and_default_are_configurable() -> None:
    span = {**SDK_SPAN, "resource": {"attributes": {"k8s.namespace.name": "team-x"}}}
    mapped = load_mapping("otel-genai", IngestSettings())(span, SOURCE)
    with pytest.raises(InvalidInputError) as refused:
        UsageEvent.parse(mapped[0])
    assert refused.value.field_errors == {"organization_id": "is required"}
    [event] = events(
        load_mapping("otel-genai", IngestSettings(organization_attributes=("k8s.namespace.name",)))(span, SOURCE)
    )
    assert event.organization_id == "team-x"
    [event] = events(load_mapping("otel-genai", IngestSettings(default_organization="fallback"))(span, SOURCE))
    assert event.organization_id == "fallback"


def test_otel_span_without_genai_attributes_is_a_mapping_error() -> None:
    mapping = load_mapping("otel-genai", IngestSettings())
    [error] = mapping({"name": "GET /", "attributes": {"http.method": "GET"}}, SOURCE)
    assert isinstance(error, MappingError) and "not a GenAI span" in error.message
    assert mapping({"resourceSpans": []}, SOURCE) == []  # nothing in it: the ingester dead-letters it
    [error] = mapping([1, 2], SOURCE)
    assert isinstance(error, MappingError)


def test_litellm_spend_log_row() -> None:
    [event] = events(load_mapping("litellm", IngestSettings())(LITELLM_ROW, SOURCE))
    assert (event.provider, event.model.name, event.organization_id) == ("openai", "gpt-4o", "team-search")
    assert (event.prompt_tokens, event.completion_tokens, event.total_tokens, event.cached_tokens) == (
        400,
        30,
        430,
        128,
    )
    assert event.user_id == "alice@example.com"
    assert event.timestamp.isoformat() == "2025-01-15T10:00:00.123000+00:00"
    assert event.latency_ms == 1333
    assert event.tags == ["prod", "search"]
    assert event.metadata["request_id"] == LITELLM_ROW["request_id"]
    assert event.metadata["user_api_key_team_alias"] == "search" and "headers" not in event.metadata


def test_litellm_provider_aliases_and_prefixed_models() -> None:
    row = {**LITELLM_ROW, "custom_llm_provider": "vertex_ai", "model": "vertex_ai/gemini-1.5-pro", "metadata": {}}
    [event] = events(load_mapping("litellm", IngestSettings())(row, SOURCE))
    assert (event.provider, event.model.name) == ("google", "gemini-1.5-pro")
    no_team = {**row, "team_id": None}
    [mapped] = load_mapping("litellm", IngestSettings())(no_team, SOURCE)
    assert isinstance(mapped, dict) and "organization_id" not in mapped


def test_custom_toml_mapping(tmp_path: Path) -> None:
    path = tmp_path / "billing.toml"
    path.write_text(
        """
id_from = ["trace", 'attrs."span.id"']
[fields]
provider = "llm.vendor"
organization_id = 'resource["tenant.id"]'
prompt_tokens = "usage.counts[0]"
completion_tokens = "usage.counts[1]"
timestamp = "$.ts"
"metadata.route" = "http.route"
[fields.model]
name = "llm.model"
version = "llm.version"
[defaults]
organization_id = "org-default"
[constants]
source = { type = "billing" }
tags = ["imported"]
"""
    )
    mapping = load_mapping(str(path), IngestSettings())
    message = {
        "trace": "t1",
        "attrs": {"span.id": "s1"},
        "llm": {"vendor": "Mistral_AI", "model": "mistral-large", "version": "2411"},
        "resource": {"tenant.id": "org-z"},
        "usage": {"counts": [50, 10]},
        "ts": "2025-01-15T10:00:00Z",
        "http": {"route": "/chat"},
    }
    [event] = events(mapping(message, SOURCE))
    assert (event.provider, event.model.name, event.model.version) == ("mistral", "mistral-large", "2411")
    assert (event.organization_id, event.prompt_tokens, event.completion_tokens) == ("org-z", 50, 10)
    assert event.metadata == {"route": "/chat"} and event.tags == ["imported"]
    assert event.source is not None and event.source.type == "billing"
    [same] = events(mapping(message, SourceRef("other", 0, 0)))
    assert same.id == event.id

    [defaulted] = mapping({**message, "resource": {}}, SOURCE)
    assert isinstance(defaulted, dict) and defaulted["organization_id"] == "org-default"
    [no_id] = mapping({"llm": {}}, SOURCE)
    assert isinstance(no_id, MappingError)


def test_custom_mapping_errors_name_each_entry(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[fields]\nprovidr = "a"\nmodel = "a..b["\n[constants]\n"model.size" = 3\n[extra]\n')
    with pytest.raises(InvalidInputError) as refused:
        load_mapping(str(path), IngestSettings())
    assert set(refused.value.field_errors) == {"fields.providr", "fields.model", "constants.model.size", "extra"}
    with pytest.raises(InvalidInputError, match="unknown mapping"):
        load_mapping("otel", IngestSettings())
    with pytest.raises(InvalidInputError, match="unknown mapping"):
        load_mapping(str(tmp_path / "missing.toml"), IngestSettings())
