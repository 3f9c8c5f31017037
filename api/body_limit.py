"""Refuse request bodies over the size limit (413), whether or not they declare a length."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import error_body
from llm_cost_ops.errors import PayloadTooLargeError


class BodyLimitMiddleware:
    """ASGI middleware: 413 with the error format for a ``Content-Length`` over ``max_bytes``;
    a streamed body raises :class:`PayloadTooLargeError` (413 through the error handlers) as
    soon as it passes the limit."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send)
            return
        seen = 0

        async def counted_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise PayloadTooLargeError(f"the request body is larger than {self.max_bytes} bytes")
            return message

        await self.app(scope, counted_receive, send)

    async def _refuse(self, send: Send) -> None:
        error = PayloadTooLargeError(f"the request body is larger than {self.max_bytes} bytes")
        body = json.dumps(error_body(error.code, error.message)).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})
