"""Sending the usage of LLM calls from the service that makes them.

A :class:`Tracker` turns a provider response (or stream) into a usage record and hands it to a
*sender*: any object with ``send(record)`` or a callable taking the record, such as
``lambda record: client.usage.create(**record)`` for the SDK client, or a function that
publishes to Kafka. Tracking never breaks the caller's LLM call: a response without usage, a
record the mapping rejects, or a sender that fails is logged and counted in
:attr:`Tracker.failed`, and the caller gets its response unchanged.

Latency is measured around the call by :meth:`Tracker.call` (a context manager),
:meth:`Tracker.wrap` / :func:`tracked` (a decorator) and :meth:`Tracker.stream`; a bare
:func:`track` after the fact cannot know it (Bedrock's own ``metrics.latencyMs`` aside).
"""

from __future__ import annotations

import functools
import inspect
import logging
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Iterator
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, ParamSpec, Protocol, TypeVar, cast, runtime_checkable

from llm_cost_ops.providers.extract import usage_from_response
from llm_cost_ops.providers.stream import StreamAccumulator

_logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")
Record = dict[str, Any]


@runtime_checkable
class SupportsSend(Protocol):
    """A sender object: the SDK client's usage resource, a producer wrapper, a list-like sink."""

    def send(self, record: Record, /) -> object: ...


#: Where records go: an object with ``send(record)`` or a callable taking the record. An async
#: sender (returning an awaitable) is awaited by the async paths only.
Sender = SupportsSend | Callable[[Record], object]


def _now() -> datetime:
    return datetime.now(UTC)


class Tracker:
    """Builds usage records from responses and sends them, never raising into the caller.

    Args:
        sender: Receives each record (see :data:`Sender`).
        organization_id: The organization every record is billed to.
        provider: The billing provider when the shape does not tell (``azure``; ``aws`` or
            ``google`` for Anthropic models served there); detected from the shape otherwise.
        logger: Where failures are logged; this module's logger by default.
        **defaults: Fields added to every record (``project_id``, ``user_id``, ``tags``, ``metadata``, ``model``).

    Attributes:
        sent: Records handed to the sender.
        failed: Calls whose usage could not be built or sent.
    """

    def __init__(
        self,
        sender: Sender,
        *,
        organization_id: str,
        provider: str | None = None,
        logger: logging.Logger | None = None,
        **defaults: Any,
    ) -> None:
        self._send = sender.send if isinstance(sender, SupportsSend) else sender
        self._fields: dict[str, Any] = {"organization_id": organization_id, **defaults}
        self._provider = provider
        self._logger = logger or _logger
        self.sent = 0
        self.failed = 0

    def record(self, response: Any, *, provider: str | None = None, **fields: Any) -> Record:
        """The usage record of ``response`` with this tracker's fields; raises on a bad response."""
        return usage_from_response(response, provider=provider or self._provider, **self._merge(fields))

    def track(self, response: Any, *, provider: str | None = None, **fields: Any) -> Record | None:
        """Send the usage of ``response``; returns the record sent, or None when tracking failed."""
        try:
            record = self.record(response, provider=provider, **fields)
        except Exception:
            return self._failed(response)
        return self._deliver(record)

    async def atrack(self, response: Any, *, provider: str | None = None, **fields: Any) -> Record | None:
        """:meth:`track` for async callers; an async sender is awaited."""
        try:
            record = self.record(response, provider=provider, **fields)
        except Exception:
            return self._failed(response)
        return await self._adeliver(record)

    def track_accumulated(
        self, accumulator: StreamAccumulator, *, provider: str | None = None, **fields: Any
    ) -> Record | None:
        """Send the usage a :class:`StreamAccumulator` collected; None when tracking failed."""
        record = self._stream_record(accumulator, provider, fields)
        return None if record is None else self._deliver(record)

    async def atrack_accumulated(
        self, accumulator: StreamAccumulator, *, provider: str | None = None, **fields: Any
    ) -> Record | None:
        """:meth:`track_accumulated` for async callers; an async sender is awaited."""
        record = self._stream_record(accumulator, provider, fields)
        return None if record is None else await self._adeliver(record)

    def call(self, **fields: Any) -> TrackedCall:
        """A context manager timing one call: set ``.response`` inside the block.

        Example:
            >>> with tracker.call(user_id="u-1") as call:
            ...     call.response = client.chat.completions.create(model="gpt-4o", messages=msgs)
        """
        return TrackedCall(self, fields)

    def stream(self, chunks: Iterable[R], **fields: Any) -> Iterator[R]:
        """Pass a stream through unchanged; send its usage once it is exhausted."""
        return self._pass_through(chunks, time.monotonic(), _now(), fields)

    def astream(self, chunks: AsyncIterable[R], **fields: Any) -> AsyncIterator[R]:
        """:meth:`stream` for an async stream; an async sender is awaited."""
        return self._apass_through(chunks, time.monotonic(), _now(), fields)

    def wrap(self, function: Callable[P, R]) -> Callable[P, R]:
        """Decorate a function (sync or async) that returns a non-streamed provider response."""
        if inspect.iscoroutinefunction(function):
            async_function = cast(Callable[P, Awaitable[Any]], function)

            @functools.wraps(function)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                started, at = time.monotonic(), _now()
                response = await async_function(*args, **kwargs)
                await self.atrack(response, **_timing(started, at))
                return response

            return cast(Callable[P, R], async_wrapper)

        @functools.wraps(function)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            started, at = time.monotonic(), _now()
            response = function(*args, **kwargs)
            self.track(response, **_timing(started, at))
            return response

        return wrapper

    def _merge(self, fields: dict[str, Any]) -> dict[str, Any]:
        merged = {**self._fields, **fields}
        metadata = {**(self._fields.get("metadata") or {}), **(fields.get("metadata") or {})}
        if metadata:
            merged["metadata"] = metadata
        merged.setdefault("timestamp", _now())
        if isinstance(merged["timestamp"], datetime):
            merged["timestamp"] = merged["timestamp"].isoformat()
        return merged

    def _deliver(self, record: Record) -> Record | None:
        try:
            result = self._send(record)
            if inspect.isawaitable(result):
                if inspect.iscoroutine(result):
                    result.close()  # never awaited: close it so it does not warn when collected
                raise TypeError("the sender is async: use atrack, an async function, or astream")
        except Exception:
            return self._failed(record)
        self.sent += 1
        return record

    async def _adeliver(self, record: Record) -> Record | None:
        try:
            result = self._send(record)
            if inspect.isawaitable(result):
                await result
        except Exception:
            return self._failed(record)
        self.sent += 1
        return record

    def _failed(self, response: Any) -> Record | None:
        self.failed += 1
        self._logger.warning(
            "usage not tracked",
            exc_info=True,
            extra={"operation": "track", "response_type": type(response).__name__, "failed": self.failed},
        )
        return None

    def _stream_record(
        self, accumulator: StreamAccumulator, provider: str | None, fields: dict[str, Any]
    ) -> Record | None:
        try:
            return accumulator.record(provider=provider or self._provider, **self._merge(fields))
        except Exception:
            return self._failed(accumulator)

    def _pass_through(self, chunks: Iterable[R], started: float, at: datetime, fields: dict[str, Any]) -> Iterator[R]:
        accumulator = StreamAccumulator()
        for chunk in chunks:
            _add(accumulator, chunk, self._logger)
            yield chunk
        self.track_accumulated(accumulator, **{**_timing(started, at), **fields})

    async def _apass_through(
        self, chunks: AsyncIterable[R], started: float, at: datetime, fields: dict[str, Any]
    ) -> AsyncIterator[R]:
        accumulator = StreamAccumulator()
        async for chunk in chunks:
            _add(accumulator, chunk, self._logger)
            yield chunk
        await self.atrack_accumulated(accumulator, **{**_timing(started, at), **fields})


class TrackedCall:
    """One timed call (see :meth:`Tracker.call`). An exception in the block is not tracked: a
    failed call has no usage to bill."""

    def __init__(self, tracker: Tracker, fields: dict[str, Any]) -> None:
        self._tracker = tracker
        self._fields = fields
        self.response: Any = None
        self.record: Record | None = None
        self._started = 0.0
        self._at = _now()

    def __enter__(self) -> TrackedCall:
        self._started, self._at = time.monotonic(), _now()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if kind is None and self.response is not None:
            self.record = self._tracker.track(self.response, **_timing(self._started, self._at), **self._fields)

    async def __aenter__(self) -> TrackedCall:
        return self.__enter__()

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if kind is None and self.response is not None:
            timing = _timing(self._started, self._at)
            self.record = await self._tracker.atrack(self.response, **timing, **self._fields)


def track(response: Any, *, sender: Sender, organization_id: str, **fields: Any) -> Record | None:
    """Send the usage of one response, in one line; never raises (failures are logged).

    Args:
        response: A provider response (see :func:`usage_from_response`).
        sender: Receives the record (see :data:`Sender`).
        organization_id: The organization billed.
        **fields: ``provider`` and any other usage-record field (``project_id``, ``latency_ms``, ...).

    Returns:
        The record sent, or None when tracking failed.
    """
    provider = fields.pop("provider", None)
    return Tracker(sender, organization_id=organization_id, provider=provider).track(response, **fields)


def tracked(
    *, sender: Sender, organization_id: str, provider: str | None = None, **fields: Any
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """A decorator tracking each response a (sync or async) function returns, with its latency.

    Example:
        >>> @tracked(sender=lambda r: client.usage.create(**r), organization_id="acme", project_id="chat")
        ... def ask(prompt: str) -> ChatCompletion: ...
    """
    return Tracker(sender, organization_id=organization_id, provider=provider, **fields).wrap


def _timing(started: float, at: datetime) -> dict[str, Any]:
    return {"latency_ms": round((time.monotonic() - started) * 1000), "timestamp": at}


def _add(accumulator: StreamAccumulator, chunk: Any, logger: logging.Logger) -> None:
    try:
        accumulator.add(chunk)
    except Exception:
        logger.warning("stream chunk not read", exc_info=True, extra={"operation": "track"})
