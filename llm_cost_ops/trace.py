"""The trace id of the request being handled, for the log records emitted while handling it.

A :class:`~contextvars.ContextVar` is request-scoped state, not global state: each request runs
in its own task, which sees the value its middleware set and no other request's. The API sets it
(:mod:`api.trace`); :class:`llm_cost_ops.log_format.ContextFilter` copies it onto every record.
"""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar

__all__ = ["TRACE_ID", "current_trace_id", "trace_id_from"]

TRACE_ID: ContextVar[str | None] = ContextVar("costops_trace_id", default=None)

# W3C Trace Context: version-traceid-parentid-flags, lowercase hex; an all-zero id is invalid.
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}")
# A caller's X-Request-ID goes into logs and a response header: only plain tokens are taken,
# so a header cannot forge a log line or smuggle another header.
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def trace_id_from(traceparent: str | None, request_id: str | None) -> str:
    """The trace id for a request: the W3C ``traceparent``'s trace id, else a well-formed
    ``X-Request-ID``, else a new random one (32 hex digits, a valid W3C trace id)."""
    if traceparent:
        match = _TRACEPARENT.match(traceparent.strip())
        if match and match.group(1) != "0" * 32:
            return match.group(1)
    if request_id and _REQUEST_ID.match(request_id.strip()):
        return request_id.strip()
    return uuid.uuid4().hex


def current_trace_id() -> str | None:
    """The trace id of the request this code runs for, if any."""
    return TRACE_ID.get()
