"""Errors of the ClickHouse layer. Driver errors are wrapped here, at the boundary."""

from __future__ import annotations

from llm_cost_ops.errors import PipelineError, UnavailableError


class StoreUnavailableError(UnavailableError):
    """ClickHouse did not answer or failed transiently; retry with backoff."""

    code = "STORE_UNAVAILABLE"


class QueryError(PipelineError):
    """ClickHouse rejected a statement. Statements are built from validated parameters, so this
    is the server's or our fault (a limit, a broken migration), never the caller's input."""

    code = "QUERY_ERROR"


class ControlStoreUnavailableError(UnavailableError):
    """The control plane's database (SQLite or PostgreSQL) did not answer or is locked; retry."""

    code = "CONTROL_STORE_UNAVAILABLE"
