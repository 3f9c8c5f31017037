"""The pipeline's error hierarchy, shared by every package.

::

    PipelineError                 root of every error the pipeline raises on purpose
    ├── InvalidInputError         the caller sent something wrong (API: 422)
    │   └── schemas.errors.EventValidationError, schemas.errors.DecodeError, ...
    ├── NotFoundError             the thing asked for does not exist (API: 404)
    ├── ConflictError             the thing exists but is not in a state that allows this (API: 409)
    ├── AuthenticationError       no key, or an invalid, expired or revoked one (API: 401)
    ├── PermissionDeniedError     the caller may not do this, or not for this organization (API: 403)
    ├── RateLimitedError          the caller's key is over its request rate (API: 429)
    ├── PayloadTooLargeError      the request body is over the size limit (API: 413)
    ├── BudgetExceededError       a hard budget is spent; retry in the next period (API: 429)
    └── UnavailableError          a dependency is down; retrying may work (API: 503)
        └── sinks.errors.StoreUnavailableError, llm_cost_ops.producer.PublishError

Errors carry data (``field_errors``, ``retry_after``), not only text. Each package
subclasses a kind in its own ``errors.py``; only ``api/errors.py`` knows HTTP statuses.
"""

from __future__ import annotations


class PipelineError(Exception):
    """Root of the pipeline's errors. ``code`` is the seeds' machine-readable error code."""

    code = "INTERNAL_ERROR"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInputError(PipelineError):
    """The input is wrong; ``field_errors`` maps each bad field to its reason."""

    code = "VALIDATION_ERROR"

    def __init__(self, message: str, field_errors: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.field_errors = field_errors or {}


class NotFoundError(PipelineError):
    code = "NOT_FOUND"


class ConflictError(PipelineError):
    """The request is valid but the resource's state does not allow it yet (a report that is
    still being generated cannot be downloaded)."""

    code = "CONFLICT"


class AuthenticationError(PipelineError):
    """The seeds' ``AUTH_001``: the request has no valid API key or token."""

    code = "AUTH_001"


class PermissionDeniedError(PipelineError):
    """Authenticated, but the key or user lacks ``permission`` (or acts outside its organization);
    ``field_errors`` names the parameter that asked for another organization."""

    code = "AUTH_002"

    def __init__(self, message: str, field_errors: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.field_errors = field_errors or {}


class RateLimitedError(PipelineError):
    """Too many requests for the key; ``retry_after`` seconds until one is allowed again."""

    code = "RATE_LIMIT_EXCEEDED"

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PayloadTooLargeError(PipelineError):
    code = "REQUEST_TOO_LARGE"


class BudgetExceededError(PipelineError):
    """A hard budget the events count against is spent (``BUDGET_001``); ``retry_after`` is
    the time to the budget's next period, ``field_errors`` names each budget."""

    code = "BUDGET_001"

    def __init__(self, message: str, field_errors: dict[str, str], retry_after: float) -> None:
        super().__init__(message)
        self.field_errors = field_errors
        self.retry_after = retry_after


class UnavailableError(PipelineError):
    """A dependency is unavailable; ``retry_after`` seconds is a fair time to wait."""

    code = "SERVICE_UNAVAILABLE"

    def __init__(self, message: str, retry_after: float = 5.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class InsufficientDataError(InvalidInputError):
    """Too little history to forecast or to detect anomalies (the seeds' ``FORECAST_001``)."""

    code = "FORECAST_001"
