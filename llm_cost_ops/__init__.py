"""LLM-CostOps: what your LLM traffic costs, as it happens.

Reading order: ``settings`` (the one configuration object), ``errors`` (the error
hierarchy every package extends), ``producer`` (publishing usage events to Kafka),
``sdk`` (the HTTP API's Python client), ``delivery`` (the Kafka producer for services, with
its disk spool), ``providers`` (usage records from OpenAI, Anthropic, Gemini and Bedrock
responses, and ``track``), ``cli`` (the ``cost-ops`` command). The pipeline itself lives in
``schemas``, ``streams``, ``sinks`` and ``api``.

The names exported here are imported on first use (``from llm_cost_ops import
CostOpsClient``), so that ``import llm_cost_ops``, which every CLI command does, stays cheap.
The error classes exported here are the SDK's (what came over HTTP), not those of
``llm_cost_ops.errors``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llm_cost_ops.delivery import UsageProducer
    from llm_cost_ops.providers import Tracker, track, tracked, usage_from_response, usage_from_stream
    from llm_cost_ops.sdk import (
        APIError,
        AsyncCostOpsClient,
        AuthenticationError,
        CostOpsClient,
        NotFoundError,
        PermissionDeniedError,
        RateLimitError,
        ValidationError,
    )

_WHERE = {
    **dict.fromkeys(
        (
            "APIError",
            "AsyncCostOpsClient",
            "AuthenticationError",
            "CostOpsClient",
            "NotFoundError",
            "PermissionDeniedError",
            "RateLimitError",
            "ValidationError",
        ),
        "llm_cost_ops.sdk",
    ),
    "UsageProducer": "llm_cost_ops.delivery",
    **dict.fromkeys(
        ("Tracker", "track", "tracked", "usage_from_response", "usage_from_stream"), "llm_cost_ops.providers"
    ),
}

__all__ = [
    "APIError",
    "AsyncCostOpsClient",
    "AuthenticationError",
    "CostOpsClient",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "Tracker",
    "UsageProducer",
    "ValidationError",
    "track",
    "tracked",
    "usage_from_response",
    "usage_from_stream",
]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
