"""Recognising a provider response by its shape, and reading SDK objects as plain data.

The SDKs are not dependencies: their objects are read duck-typed, through ``model_dump()``
(pydantic models: openai, anthropic, google-genai), ``to_dict()``, or public attributes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

Api = Literal["openai-chat", "openai-responses", "anthropic", "gemini", "bedrock-converse"]

#: The billing provider of each API shape when the caller names none. Azure OpenAI,
#: Anthropic on Bedrock or Vertex share a shape with another provider: pass ``provider``.
DEFAULT_PROVIDER: dict[Api, str] = {
    "openai-chat": "openai",
    "openai-responses": "openai",
    "anthropic": "anthropic",
    "gemini": "google",
    "bedrock-converse": "aws",
}

_SNAKE = re.compile(r"_([a-z])")


def as_data(obj: Any) -> Any:
    """``obj`` as plain dicts, lists and scalars (SDK objects included)."""
    if isinstance(obj, Mapping):
        return {str(key): as_data(value) for key, value in obj.items()}
    if isinstance(obj, list | tuple):
        return [as_data(item) for item in obj]
    if obj is None or isinstance(obj, str | int | float | bool):
        return obj
    for method in ("model_dump", "to_dict"):
        dump = getattr(obj, method, None)
        if callable(dump):
            return as_data(dump())
    if hasattr(obj, "__dict__"):
        return {key: as_data(value) for key, value in vars(obj).items() if not key.startswith("_")}
    return obj


def as_mapping(obj: Any) -> dict[str, Any]:
    """``obj`` as a dict; an empty one when it is not a record-like object."""
    data = as_data(obj)
    return data if isinstance(data, dict) else {}


def camel_keys(data: Any) -> Any:
    """Gemini's REST shape (``usageMetadata.promptTokenCount``) from the google-genai SDK's
    snake_case dump (``usage_metadata.prompt_token_count``); camelCase keys stay as they are."""
    if isinstance(data, dict):
        return {_SNAKE.sub(lambda m: m.group(1).upper(), key): camel_keys(value) for key, value in data.items()}
    if isinstance(data, list):
        return [camel_keys(item) for item in data]
    return data


def detect_api(data: Mapping[str, Any]) -> Api | None:
    """The API shape of a non-streaming response, or None when it has no usage block.

    Anthropic's and the OpenAI Responses API's usage share ``input_tokens``/``output_tokens``;
    only OpenAI's carries ``total_tokens`` and the ``*_details`` objects.
    """
    if isinstance(data.get("usageMetadata"), Mapping) or isinstance(data.get("usage_metadata"), Mapping):
        return "gemini"
    usage = data.get("usage")
    if not isinstance(usage, Mapping):
        return None
    if "inputTokens" in usage or "outputTokens" in usage:
        return "bedrock-converse"
    if "prompt_tokens" in usage or "completion_tokens" in usage:
        return "openai-chat"
    if "input_tokens" in usage or "output_tokens" in usage:
        openai_marks = ("total_tokens", "input_tokens_details", "output_tokens_details")
        if data.get("object") == "response" or any(mark in usage for mark in openai_marks):
            return "openai-responses"
        return "anthropic"
    return None
