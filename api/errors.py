"""The only module that knows HTTP statuses: one table, one handler, resolved through the MRO.

Every error body has the seeds' shape::

    {"error": {"code": "VALIDATION_ERROR", "message": "...", "field_errors": {"prompt_tokens": "..."}}}
"""

from __future__ import annotations

import logging
import math

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from llm_cost_ops.errors import (
    AuthenticationError,
    BudgetExceededError,
    ConflictError,
    InvalidInputError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    PipelineError,
    RateLimitedError,
    UnavailableError,
)
from llm_cost_ops.trace import current_trace_id
from schemas.errors import field_errors_from

logger = logging.getLogger(__name__)

STATUS: dict[type[PipelineError], int] = {
    InvalidInputError: 422,
    NotFoundError: 404,
    ConflictError: 409,
    AuthenticationError: 401,
    PermissionDeniedError: 403,
    RateLimitedError: 429,
    PayloadTooLargeError: 413,
    BudgetExceededError: 429,
    UnavailableError: 503,
    PipelineError: 500,
}


def status_for(exc: PipelineError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def error_body(code: str, message: str, field_errors: dict[str, str] | None = None) -> dict[str, object]:
    error: dict[str, object] = {"code": code, "message": message}
    if field_errors:
        error["field_errors"] = field_errors
    return {"error": error}


async def pipeline_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, PipelineError)
    status = status_for(exc)
    headers = {}
    if isinstance(exc, UnavailableError):
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
        logger.warning("%s %s unavailable: %s", request.method, request.url.path, exc.message)
    elif isinstance(exc, BudgetExceededError | RateLimitedError):
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
    elif isinstance(exc, AuthenticationError):
        headers["WWW-Authenticate"] = 'Bearer realm="llm-cost-ops"'
    elif status >= 500:
        logger.error("%s %s failed: %s", request.method, request.url.path, exc.message)
    fields = (
        exc.field_errors if isinstance(exc, InvalidInputError | BudgetExceededError | PermissionDeniedError) else None
    )
    return JSONResponse(error_body(exc.code, exc.message, fields), status_code=status, headers=headers)


async def request_validation_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    fields = field_errors_from(exc.errors())
    return JSONResponse(
        error_body("VALIDATION_ERROR", f"invalid request: {', '.join(fields)}", fields), status_code=422
    )


async def unexpected_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """Last resort: the error shape holds even for a bug; the trace goes to the server log only.

    Starlette runs this outside every middleware, so the request id header is set here: it is
    what finds the logged traceback."""
    logger.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    trace_id = current_trace_id()
    return JSONResponse(
        error_body("INTERNAL_ERROR", "internal error; the server log has the details"),
        status_code=500,
        headers={"X-Request-ID": trace_id} if trace_id else None,
    )


def register_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(PipelineError, pipeline_error_handler)
    app.add_exception_handler(RequestValidationError, request_validation_handler)
    app.add_exception_handler(Exception, unexpected_error_handler)
