"""One provider response to one usage record (pure: no network, no clock).

The token counts are read by genai-prices' own extractors (the catalog that prices the events
ships them, so the two agree on what each provider's fields mean), then renamed onto the
usage record's OpenAI-style conventions: ``cached_tokens`` and ``cache_write_tokens`` are part
of ``prompt_tokens``, ``reasoning_tokens`` part of ``completion_tokens`` (docs/pricing.md).

| genai-prices ``Usage``   | usage record         |
|--------------------------|----------------------|
| ``input_tokens``         | ``prompt_tokens``    |
| ``cache_read_tokens``    | ``cached_tokens``    |
| ``cache_write_tokens``   | ``cache_write_tokens`` |
| ``output_tokens``        | ``completion_tokens`` |
| ``output_reasoning_tokens`` | ``reasoning_tokens`` |

genai-prices' public ``extract_usage`` is not used: it also looks the model up in its catalog
and fails on a model it does not list, and a usage record must not depend on the catalog
(custom prices cover such models). The provider's extractor is called directly instead.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from genai_prices import data_snapshot

from llm_cost_ops.providers.errors import UsageMissingError
from llm_cost_ops.providers.shape import DEFAULT_PROVIDER, Api, as_mapping, camel_keys, detect_api

logger = logging.getLogger(__name__)

# (genai-prices provider id, api flavor) of the extractor that reads each shape.
_EXTRACTORS: dict[Api, tuple[str, str]] = {
    "openai-chat": ("openai", "chat"),
    "openai-responses": ("openai", "responses"),
    "anthropic": ("anthropic", "default"),
    "gemini": ("google", "default"),
    "bedrock-converse": ("aws", "default"),
}

_NO_USAGE_HINT = (
    "the response has no usage block (`usage`, or `usageMetadata` for Gemini); for a streamed "
    "OpenAI chat completion, request it with stream_options={'include_usage': True}"
)


@dataclass(frozen=True)
class TokenCounts:
    """A call's tokens in the usage record's conventions (cache and reasoning counts included
    in prompt and completion)."""

    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0

    def as_fields(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "cached_tokens": self.cached_tokens,
            "cache_write_tokens": self.cache_write_tokens,
            "reasoning_tokens": self.reasoning_tokens,
        }


def read_tokens(api: Api, data: Mapping[str, Any]) -> tuple[TokenCounts, str | None]:
    """The token counts and the model named by a response of shape ``api``.

    Raises:
        UsageMissingError: a required usage field is absent or malformed.
    """
    provider_id, flavor = _EXTRACTORS[api]
    extractor_owner = data_snapshot.get_snapshot().find_provider(None, provider_id, None)
    try:
        model, usage = extractor_owner.extract_usage(data, api_flavor=flavor)
    except ValueError as exc:
        # genai-prices names the path ("Missing value at `usage.prompt_tokens`").
        raise UsageMissingError(f"{api} response: {exc}", missing=_root(api), api=api) from exc

    def count(key: str) -> int:
        value = usage.reported_value(key)
        if value != int(value):
            raise UsageMissingError(f"{api} response: {key} is not a whole number: {value}", _root(api), api)
        return int(value)

    tokens = TokenCounts(
        prompt_tokens=count("input_tokens"),
        completion_tokens=count("output_tokens"),
        cached_tokens=count("cache_read_tokens"),
        cache_write_tokens=count("cache_write_tokens"),
        reasoning_tokens=count("output_reasoning_tokens"),
    )
    return tokens, model


def usage_from_response(response: Any, *, provider: str | None = None, **fields: Any) -> dict[str, Any]:
    """The usage record of one provider response, ready for ``UsageEvent.parse`` or the API.

    Args:
        response: An OpenAI Chat Completions or Responses result, an Anthropic message, a
            Gemini ``GenerateContentResponse``, a Bedrock Converse result or an Anthropic
            InvokeModel body: an SDK object or its dict.
        provider: The billing provider (``openai``, ``azure``, ``anthropic``, ``google``, ``aws``).
            Detected from the shape when omitted; name it for a provider that serves another's
            API (Azure OpenAI, Anthropic on Bedrock or Vertex).
        **fields: Other usage-record fields: ``organization_id``, ``project_id``, ``user_id``,
            ``tags``, ``latency_ms``, ``timestamp``, ``id``; ``model`` overrides the response's (and
            is required for Bedrock, whose responses do not name it); ``metadata`` is merged over
            the response's ``request_id``.

    Raises:
        UsageMissingError: the response has no usage block, a required count, or a model.
    """
    data = as_mapping(response)
    api = detect_api(data)
    if api is None:
        raise UsageMissingError(_NO_USAGE_HINT, missing="usage")
    if api == "gemini":
        data = camel_keys(data)
    tokens, model = read_tokens(api, data)
    model = fields.pop("model", None) or _model_name(api, model)
    if not model:
        raise UsageMissingError(
            f"{api} response names no model; pass model=... (Bedrock responses never do)", missing="model", api=api
        )
    metadata = _response_metadata(api, data, tokens)
    metadata.update(fields.pop("metadata", None) or {})
    record: dict[str, Any] = {
        "provider": provider or DEFAULT_PROVIDER[api],
        "model": model,
        **tokens.as_fields(),
        "metadata": metadata,
    }
    latency = _latency_ms(api, data)
    if latency is not None:
        record["latency_ms"] = latency
    record.update(fields)
    return record


def _root(api: Api) -> str:
    return "usageMetadata" if api == "gemini" else "usage"


def _model_name(api: Api, model: str | None) -> str | None:
    if model and api == "gemini":
        return model.removeprefix("models/")
    return model


def _response_metadata(api: Api, data: Mapping[str, Any], tokens: TokenCounts) -> dict[str, str]:
    metadata: dict[str, str] = {}
    request_id: Any
    if api == "gemini":
        request_id = data.get("responseId")
    elif api == "bedrock-converse":
        request_id = as_mapping(data.get("ResponseMetadata")).get("RequestId")
    else:
        request_id = data.get("id")
    if isinstance(request_id, str) and request_id:
        metadata["request_id"] = request_id
    if api == "anthropic":
        # The record has one cache-write class, priced at the 5-minute cache's rate; a 1-hour
        # write costs more, so keep its count for whoever reprices with a custom rule.
        creation = as_mapping(as_mapping(data.get("usage")).get("cache_creation"))
        one_hour = creation.get("ephemeral_1h_input_tokens")
        if isinstance(one_hour, int) and one_hour > 0 and tokens.cache_write_tokens:
            metadata["cache_write_1h_tokens"] = str(one_hour)
    return metadata


def _latency_ms(api: Api, data: Mapping[str, Any]) -> int | None:
    # Bedrock measures the call itself; the other providers report no latency.
    if api != "bedrock-converse":
        return None
    latency = as_mapping(data.get("metrics")).get("latencyMs")
    return latency if isinstance(latency, int) and latency >= 0 else None
