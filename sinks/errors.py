"""Errors of the ClickHouse layer. Driver errors are wrapped here, at the boundary."""

from __future__ import annotations

from llm_cost_ops.errors import InvalidInputError, UnavailableError


class StoreUnavailableError(UnavailableError):
    """ClickHouse did not answer or failed transiently; retry with backoff."""

    code = "STORE_UNAVAILABLE"


class QueryError(InvalidInputError):
    """ClickHouse rejected a query built from the caller's parameters."""

    code = "QUERY_ERROR"
