"""What the SDK raises: one root, and one class per kind of API answer.

::

    CostOpsError                  root of every error the SDK raises
    ├── APIConnectionError        no answer: connection refused or reset, timeout (after the retries)
    └── APIError                  the API answered an error (``status_code``, ``code``, ``message``)
        ├── ValidationError       422: ``field_errors`` names every bad field
        ├── AuthenticationError   401: no key, or an invalid, expired or revoked one
        ├── PermissionDeniedError 403: the key lacks the permission, or named another organization
        ├── NotFoundError         404: unknown id, or another organization's
        ├── ConflictError         409: the resource is not in a state that allows this yet
        ├── RateLimitError        429: over the key's rate (``retry_after`` seconds)
        │   └── BudgetExceededError  429 ``BUDGET_001``: a hard budget is spent until its next period
        └── ServiceUnavailableError  503: a dependency of the API is down (``retry_after`` seconds)

These are the client's classes, not the pipeline's (``llm_cost_ops.errors``): an SDK user
handles what came over HTTP, and the SDK must not import the server's code to do so.
"""

from __future__ import annotations

import httpx


class CostOpsError(Exception):
    """Root of the SDK's errors."""


class APIConnectionError(CostOpsError):
    """The API could not be reached, or did not answer in time, on every attempt."""


class APIError(CostOpsError):
    """An error answer: the seeds' ``{"error": {"code", "message", "field_errors"}}``.

    Attributes:
        status_code: the HTTP status.
        code: the machine-readable code (``VALIDATION_ERROR``, ``AUTH_001``, ...).
        message: the human-readable reason.
        field_errors: each bad field (or parameter) and why; empty when none was named.
    """

    def __init__(self, status_code: int, code: str, message: str, field_errors: dict[str, str] | None = None) -> None:
        super().__init__(f"{status_code} {code}: {message}")
        self.status_code = status_code
        self.code = code
        self.message = message
        self.field_errors = field_errors or {}


class ValidationError(APIError):
    """422: the request was refused for bad input."""


class AuthenticationError(APIError):
    """401: set ``COSTOPS_API_KEY`` (or pass ``api_key``) to a valid key."""


class PermissionDeniedError(APIError):
    """403: the key may not do this, or not for the organization named (``field_errors`` says which)."""


class NotFoundError(APIError):
    """404: no such id, or one of another organization."""


class ConflictError(APIError):
    """409: the resource exists but does not allow this yet."""


class RetryableAPIError(APIError):
    """An answer that says when to try again (``retry_after`` seconds, from ``Retry-After``)."""

    def __init__(
        self,
        status_code: int,
        code: str,
        message: str,
        field_errors: dict[str, str] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(status_code, code, message, field_errors)
        self.retry_after = retry_after


class RateLimitError(RetryableAPIError):
    """429: over the key's request rate."""


class BudgetExceededError(RateLimitError):
    """429 ``BUDGET_001``: a hard budget the records count against is spent; ``retry_after``
    is the time to its next period, so the SDK never retries it on its own."""


class ServiceUnavailableError(RetryableAPIError):
    """503: the broker or ClickHouse is unavailable to the API."""


_BY_STATUS: dict[int, type[APIError]] = {
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: ValidationError,
}


def retry_after(response: httpx.Response) -> float | None:
    """Seconds from the ``Retry-After`` header (delta-seconds form), if any."""
    value = response.headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # the HTTP-date form: the API never sends it, and backoff applies instead


def error_for(response: httpx.Response) -> APIError:
    """The error class of an error answer, carrying its code, message and field errors."""
    try:
        error = response.json()["error"]
        code, message = str(error["code"]), str(error.get("message", ""))
        fields = {str(k): str(v) for k, v in (error.get("field_errors") or {}).items()}
    except (ValueError, KeyError, TypeError, AttributeError):
        code, message, fields = f"HTTP_{response.status_code}", response.text[:500], {}
    status = response.status_code
    if status == 429:
        kind = BudgetExceededError if code == "BUDGET_001" else RateLimitError
        return kind(status, code, message, fields, retry_after(response))
    if status == 503:
        return ServiceUnavailableError(status, code, message, fields, retry_after(response))
    return _BY_STATUS.get(status, APIError)(status, code, message, fields)
