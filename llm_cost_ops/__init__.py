"""LLM-CostOps: what your LLM traffic costs, as it happens.

Reading order: ``settings`` (the one configuration object), ``errors`` (the error
hierarchy every package extends), ``producer`` (publishing usage events to Kafka),
``sdk`` (the HTTP API's Python client, exported here), ``cli`` (the ``cost-ops`` command).
The pipeline itself lives in ``schemas``, ``streams``, ``sinks`` and ``api``.

The SDK's names are imported on first use (``from llm_cost_ops import CostOpsClient``), so
that ``import llm_cost_ops``, which every CLI command does, stays cheap. The error classes
exported here are the SDK's (what came over HTTP), not those of ``llm_cost_ops.errors``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

__all__ = [
    "APIError",
    "AsyncCostOpsClient",
    "AuthenticationError",
    "CostOpsClient",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "ValidationError",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("llm_cost_ops.sdk"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
