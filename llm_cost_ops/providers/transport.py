"""Automatic tracking for a service: an httpx transport that reads usage off LLM responses.

Why a transport and not the FAQ's ASGI middleware: a middleware sees the service's own
inbound requests, not the outbound calls to OpenAI or Anthropic whose usage is billed. The
official SDKs (openai, anthropic, google-genai) all send through httpx and accept a client
(``OpenAI(http_client=httpx.Client(transport=TrackingTransport(tracker)))``), so wrapping
the transport tracks every call of a service with one line at client construction, with the
call's true latency, and without touching the code that makes the calls.

What it tracks: successful (2xx) responses from the known provider hosts below, both JSON
bodies and Server-Sent-Event streams (usage is read as the stream passes through and sent
when it is closed). It does not track Bedrock's binary event streams
(``application/vnd.amazon.eventstream``; boto3 does not use httpx anyway), nor any other host.
Bedrock responses do not name the model, so it is read from the URL (``/model/{id}/converse``).
The caller always gets the provider's response; tracking failures are logged and counted.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

import httpx

from llm_cost_ops.providers.stream import StreamAccumulator
from llm_cost_ops.providers.track import Tracker

_logger = logging.getLogger(__name__)

_HOSTS: dict[str, str] = {
    "api.openai.com": "openai",
    "api.anthropic.com": "anthropic",
    "generativelanguage.googleapis.com": "google",
}


def provider_for_host(host: str) -> str | None:
    """The billing provider of an API host, or None for a host that is not tracked."""
    host = host.lower()
    if host in _HOSTS:
        return _HOSTS[host]
    if host.endswith(".openai.azure.com"):
        return "azure"
    if host.startswith("bedrock-runtime.") and host.endswith(".amazonaws.com"):
        return "aws"
    if host.endswith("aiplatform.googleapis.com"):
        return "google"
    return None


def _bedrock_model(path: str) -> str | None:
    # /model/{modelId}/converse, /model/{modelId}/invoke: the id is URL-encoded (ARNs, ':').
    parts = path.split("/")
    if len(parts) >= 3 and parts[1] == "model":
        return unquote(parts[2])
    return None


class _SSEParser:
    """Feeds the JSON ``data:`` lines of a Server-Sent-Event byte stream to an accumulator."""

    def __init__(self, accumulator: StreamAccumulator, logger: logging.Logger) -> None:
        self._accumulator = accumulator
        self._logger = logger
        self._buffer = b""

    def feed(self, chunk: bytes) -> None:
        self._buffer += chunk
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            if not line.startswith(b"data:"):
                continue
            payload = line[5:].strip()
            if not payload or payload == b"[DONE]":
                continue
            try:
                self._accumulator.add(json.loads(payload))
            except Exception:
                self._logger.warning("stream event not read", exc_info=True, extra={"operation": "track"})


class _Call:
    """What a tracked request knows before its response is read."""

    def __init__(self, request: httpx.Request, provider: str) -> None:
        self.provider = provider
        self.started = time.monotonic()
        self.at = datetime.now(UTC)
        self.model = _bedrock_model(request.url.path) if provider == "aws" else None

    def fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "provider": self.provider,
            "latency_ms": round((time.monotonic() - self.started) * 1000),
            "timestamp": self.at,
        }
        if self.model:
            fields["model"] = self.model
        return fields


def _kind(response: httpx.Response) -> str | None:
    if not 200 <= response.status_code < 300:
        return None
    content_type = response.headers.get("content-type", "")
    if "text/event-stream" in content_type:
        return "sse"
    if "json" in content_type:
        return "json"
    return None


class _Tap:
    """What a tracked stream keeps while the body passes through: the parsed usage so far,
    and whether the record has been sent (a stream is closed at least once, maybe twice)."""

    def __init__(self, call: _Call, logger: logging.Logger) -> None:
        self.call = call
        self.accumulator = StreamAccumulator()
        self.parser = _SSEParser(self.accumulator, logger)
        self._closed = False

    def first_close(self) -> bool:
        """True the first time only: the record is sent once."""
        first, self._closed = not self._closed, True
        return first


class _TrackedStream(httpx.SyncByteStream):
    def __init__(self, inner: httpx.SyncByteStream, tracker: Tracker, call: _Call, logger: logging.Logger) -> None:
        self._inner = inner
        self._tracker = tracker
        self._tap = _Tap(call, logger)

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._inner:
            self._tap.parser.feed(chunk)
            yield chunk

    def close(self) -> None:
        self._inner.close()
        if self._tap.first_close():
            self._tracker.track_accumulated(self._tap.accumulator, **self._tap.call.fields())


class _AsyncTrackedStream(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.AsyncByteStream, tracker: Tracker, call: _Call, logger: logging.Logger) -> None:
        self._inner = inner
        self._tracker = tracker
        self._tap = _Tap(call, logger)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            self._tap.parser.feed(chunk)
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()
        if self._tap.first_close():
            await self._tracker.atrack_accumulated(self._tap.accumulator, **self._tap.call.fields())


class TrackingTransport(httpx.BaseTransport):
    """Wraps an httpx transport and tracks the usage of responses from LLM provider hosts.

    Args:
        tracker: Builds and sends the records (its sender must be synchronous).
        transport: The transport that sends requests; a new ``httpx.HTTPTransport()`` by default.
        logger: Where unreadable stream events are logged; this module's logger by default.
    """

    def __init__(
        self, tracker: Tracker, transport: httpx.BaseTransport | None = None, logger: logging.Logger | None = None
    ) -> None:
        self._tracker = tracker
        self._transport = transport or httpx.HTTPTransport()
        self._logger = logger or _logger

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        provider = provider_for_host(request.url.host)
        call = _Call(request, provider) if provider else None
        response = self._transport.handle_request(request)
        kind = _kind(response) if call else None
        if call is None or kind is None:
            return response
        if kind == "json":
            # Reads the body here: the client's own read then returns the same bytes.
            response.read()
            self._tracker.track(_json(response), **call.fields())
            return response
        assert isinstance(response.stream, httpx.SyncByteStream)
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=_TrackedStream(response.stream, self._tracker, call, self._logger),
            extensions=response.extensions,
            request=request,
        )

    def close(self) -> None:
        self._transport.close()


class AsyncTrackingTransport(httpx.AsyncBaseTransport):
    """:class:`TrackingTransport` for ``httpx.AsyncClient`` (``AsyncOpenAI``, ``AsyncAnthropic``);
    an async sender is awaited."""

    def __init__(
        self,
        tracker: Tracker,
        transport: httpx.AsyncBaseTransport | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self._tracker = tracker
        self._transport = transport or httpx.AsyncHTTPTransport()
        self._logger = logger or _logger

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        provider = provider_for_host(request.url.host)
        call = _Call(request, provider) if provider else None
        response = await self._transport.handle_async_request(request)
        kind = _kind(response) if call else None
        if call is None or kind is None:
            return response
        if kind == "json":
            await response.aread()
            await self._tracker.atrack(_json(response), **call.fields())
            return response
        assert isinstance(response.stream, httpx.AsyncByteStream)
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=_AsyncTrackedStream(response.stream, self._tracker, call, self._logger),
            extensions=response.extensions,
            request=request,
        )

    async def aclose(self) -> None:
        await self._transport.aclose()


def _json(response: httpx.Response) -> Any:
    # A body that is not JSON becomes a "no usage" failure in the tracker, not an exception here.
    try:
        return json.loads(response.content)
    except ValueError:
        return None
