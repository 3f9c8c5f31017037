"""The step both clients share after each attempt: give up (raise) or wait and try again."""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass

import httpx

from llm_cost_ops.sdk.errors import APIConnectionError, CostOpsError, RetryableAPIError, error_for
from llm_cost_ops.sdk.retry import RetryPolicy

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "http://127.0.0.1:8080"


@dataclass(frozen=True)
class Connection:
    """Where and as whom the client calls: the arguments, else the environment."""

    api_key: str
    base_url: str

    @classmethod
    def resolve(cls, api_key: str | None, base_url: str | None) -> Connection:
        key = api_key or os.environ.get("COSTOPS_API_KEY")
        if not key:
            raise CostOpsError(
                "no API key: pass api_key=... or set COSTOPS_API_KEY "
                "(`cost-ops auth create-api-key` makes one; the pipeline's admin key is in data/admin.key)"
            )
        return cls(key, (base_url or os.environ.get("COSTOPS_API_URL") or DEFAULT_BASE_URL).rstrip("/"))

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}", "Accept": "application/json"}


def retry_wait(
    policy: RetryPolicy, attempt: int, outcome: httpx.Response | httpx.TransportError, idempotent: bool, url: str
) -> float:
    """Seconds to wait before attempt ``attempt + 1``, or raise the error that ends the call.

    Args:
        policy: the client's retry policy.
        attempt: attempts made so far, minus one.
        outcome: an error answer (status >= 400), or the transport error that left none.
        idempotent: whether the request may be repeated (see :mod:`.retry`).
        url: the API's base URL, for the connection error's message.
    """
    if isinstance(outcome, httpx.TransportError):
        # Nothing was sent when the connection could not even be made: any request may be repeated.
        repeatable = idempotent or isinstance(outcome, httpx.ConnectError)
        if not policy.should_retry(attempt, None, None, repeatable, None):
            raise APIConnectionError(
                f"no answer from the LLM-CostOps API at {url} ({outcome.__class__.__name__}: {outcome})"
            ) from outcome
        wait, why = policy.delay(attempt, None), outcome.__class__.__name__
    else:
        error = error_for(outcome)
        told = error.retry_after if isinstance(error, RetryableAPIError) else None
        if not policy.should_retry(attempt, outcome.status_code, error.code, idempotent, told):
            raise error
        wait, why = policy.delay(attempt, told), f"{outcome.status_code} {error.code}"
    logger.info("retrying in %.2f s after %s (attempt %d of %d)", wait, why, attempt + 2, policy.max_retries + 1)
    return wait


def filename(response: httpx.Response) -> str | None:
    """The attachment's file name from ``Content-Disposition``."""
    found = re.search(r'filename="?([^";]+)"?', response.headers.get("Content-Disposition", ""))
    return found.group(1) if found else None
