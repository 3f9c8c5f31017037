"""The Python SDK of the LLM-CostOps HTTP API: ``CostOpsClient`` and ``AsyncCostOpsClient``.

Reading order: ``client`` (the sync client: attempts and downloads), ``resources`` (what
``client.usage``, ``client.costs``, ... offer), ``calls`` (each operation's request and answer
parser, shared with the async side), ``retry`` and ``attempt`` (when to try again),
``errors``, ``params`` (filters to query parameters), ``models`` and ``control_models``
(results), ``async_client`` and ``async_resources`` (the same, awaited).
"""

from llm_cost_ops.sdk.async_client import AsyncCostOpsClient
from llm_cost_ops.sdk.client import CostOpsClient
from llm_cost_ops.sdk.errors import (
    APIConnectionError,
    APIError,
    AuthenticationError,
    BudgetExceededError,
    ConflictError,
    CostOpsError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServiceUnavailableError,
    ValidationError,
)

__all__ = [
    "APIConnectionError",
    "APIError",
    "AsyncCostOpsClient",
    "AuthenticationError",
    "BudgetExceededError",
    "ConflictError",
    "CostOpsClient",
    "CostOpsError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "ServiceUnavailableError",
    "ValidationError",
]
