"""Each request's trace id: from ``traceparent`` (W3C) or ``X-Request-ID``, else a new one.

It is returned in ``X-Request-ID`` and set in :data:`llm_cost_ops.trace.TRACE_ID` for the
request's duration, so every log record emitted while handling the request carries it. The
error body keeps the seeds' shape: the header is how a caller quotes the id.
"""

from __future__ import annotations

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llm_cost_ops.trace import TRACE_ID, trace_id_from

__all__ = ["REQUEST_ID_HEADER", "TraceMiddleware"]

REQUEST_ID_HEADER = "X-Request-ID"


class TraceMiddleware:
    """Pure ASGI (no task of its own, unlike ``BaseHTTPMiddleware``), added outermost so the
    answers of the other middleware (413, CORS) carry the id too."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        trace_id = trace_id_from(headers.get("traceparent"), headers.get(REQUEST_ID_HEADER))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = trace_id
            await send(message)

        token = TRACE_ID.set(trace_id)
        # Reset only on the way out of a handled request: an unhandled exception goes on to
        # Starlette's outermost handler (api.errors.unexpected_error_handler), which logs it and
        # answers with this id; the request's task ends right after, taking the value with it.
        await self.app(scope, receive, send_with_id)
        TRACE_ID.reset(token)
