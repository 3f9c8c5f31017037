"""Usage of a streamed response: feed every chunk or event, read one record at the end.

Each provider reports a stream's usage differently; the accumulator keeps just enough to
rebuild the non-streaming response's usage block, so streamed and non-streamed calls go
through the same mapping (:func:`~llm_cost_ops.providers.extract.usage_from_response`):

- OpenAI Chat Completions: only the last chunk carries ``usage``, and only when the request
  set ``stream_options={"include_usage": True}``; earlier chunks have ``usage: null``.
- OpenAI Responses: the ``response.completed`` (or ``.incomplete``/``.failed``) event holds
  the whole response.
- Anthropic (and its InvokeModelWithResponseStream bodies on Bedrock): ``message_start``
  carries the input and cache counts, each ``message_delta`` the cumulative ``output_tokens``
  (and, from newer API versions, cumulative input counts too): later values replace earlier ones.
- Gemini: every chunk's ``usageMetadata`` is cumulative; the last one is the call's.
- Bedrock ConverseStream: the ``metadata`` event holds ``usage`` and ``metrics``.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Iterable
from typing import Any

from llm_cost_ops.providers.errors import UsageMissingError
from llm_cost_ops.providers.extract import usage_from_response
from llm_cost_ops.providers.shape import as_mapping

_RESPONSES_DONE = ("response.completed", "response.incomplete", "response.failed")


class StreamAccumulator:
    """Collects the usage of one streamed response, chunk by chunk.

    Example:
        >>> acc = StreamAccumulator()
        >>> for chunk in stream:
        ...     acc.add(chunk)
        >>> record = acc.record(organization_id="acme")
    """

    def __init__(self) -> None:
        # The response rebuilt from the stream: the shape usage_from_response reads.
        self._response: dict[str, Any] = {}
        self.chunks = 0

    def add(self, chunk: Any) -> None:
        """Take one chunk or event (an SDK object or its dict)."""
        self.chunks += 1
        data = as_mapping(chunk)
        kind = data.get("type")
        if kind == "message_start":
            message = as_mapping(data.get("message"))
            self._response = {**message, "usage": dict(as_mapping(message.get("usage")))}
        elif kind == "message_delta":
            usage = self._response.setdefault("usage", {})
            usage.update({key: value for key, value in as_mapping(data.get("usage")).items() if value is not None})
        elif kind in _RESPONSES_DONE:
            self._response = as_mapping(data.get("response"))
        elif "metadata" in data and isinstance(data["metadata"], dict) and "usage" in data["metadata"]:
            # Bedrock ConverseStream's metadata event; the model comes from the caller.
            self._response = {"usage": data["metadata"]["usage"], "metrics": data["metadata"].get("metrics", {})}
        elif data.get("usageMetadata") or data.get("usage_metadata"):
            self._response = data
        elif isinstance(data.get("usage"), dict):
            # OpenAI's final chat chunk (its earlier chunks carry ``usage: null``).
            self._response = {**self._response, **data}
        elif "model" in data and "model" not in self._response:
            # Keep the model and id of early chunks, in case the usage chunk lacks them.
            self._response.update({key: data[key] for key in ("id", "model") if key in data})

    @property
    def complete(self) -> bool:
        """Whether a usage block has been seen."""
        return "usage" in self._response or "usageMetadata" in self._response or "usage_metadata" in self._response

    def record(self, *, provider: str | None = None, **fields: Any) -> dict[str, Any]:
        """The stream's usage record; see :func:`usage_from_response` for ``provider`` and ``fields``.

        Raises:
            UsageMissingError: no chunk carried usage (for OpenAI chat, the request must set
                ``stream_options={"include_usage": True}``), or the stream ended early.
        """
        if not self.complete:
            raise UsageMissingError(
                f"none of the stream's {self.chunks} chunks carried usage; for OpenAI chat completions, "
                "request it with stream_options={'include_usage': True}",
                missing="usage",
            )
        return usage_from_response(self._response, provider=provider, **fields)


def usage_from_stream(chunks: Iterable[Any], *, provider: str | None = None, **fields: Any) -> dict[str, Any]:
    """The usage record of a whole stream (consumes ``chunks``); see :class:`StreamAccumulator`."""
    accumulator = StreamAccumulator()
    for chunk in chunks:
        accumulator.add(chunk)
    return accumulator.record(provider=provider, **fields)


async def usage_from_async_stream(
    chunks: AsyncIterable[Any], *, provider: str | None = None, **fields: Any
) -> dict[str, Any]:
    """:func:`usage_from_stream` for an async stream."""
    accumulator = StreamAccumulator()
    async for chunk in chunks:
        accumulator.add(chunk)
    return accumulator.record(provider=provider, **fields)
