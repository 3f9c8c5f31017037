"""When to retry a request and how long to wait: pure logic, shared by both clients.

A retry must not change the outcome: reads, ``PUT`` and ``DELETE`` are idempotent; a usage
``POST`` is made so by the client-side ``id`` (the pipeline deduplicates by id). Other writes
(``POST /pricing``, ``/budgets``) are retried only on answers that say the request was not
processed (429), since a 502/503/504 or a timeout may come after the write committed.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

RETRY_STATUSES = frozenset({429, 502, 503, 504})
"""Statuses worth another attempt; every other 4xx is the caller's to fix."""
NOT_PROCESSED = frozenset({429})
"""Statuses answered before the request was acted on: safe to retry even for a plain ``POST``."""


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter, at least ``Retry-After``.

    Attributes:
        max_retries: attempts after the first (0 disables retries).
        backoff_s: the first wait; each retry doubles it, up to ``max_backoff_s``.
        max_backoff_s: the longest wait backoff alone picks.
        max_retry_after_s: a ``Retry-After`` longer than this is not waited for: the error is raised
            (a hard budget's next period, say, is hours away).
        jitter: a number in [0, 1) per call; each wait is scaled by 0.5 + jitter / 2 so that
            clients told to wait together do not come back together.
    """

    max_retries: int = 3
    backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    max_retry_after_s: float = 60.0
    jitter: Callable[[], float] = field(default=random.random, compare=False)

    def should_retry(
        self, attempt: int, status: int | None, code: str | None, idempotent: bool, retry_after: float | None
    ) -> bool:
        """Whether attempt number ``attempt`` (0-based) may be followed by another.

        Args:
            attempt: attempts made so far, minus one.
            status: the answer's status, or None when there was no answer (connection error).
            code: the error code of the answer, if any.
            idempotent: whether repeating the request cannot change the outcome.
            retry_after: the answer's ``Retry-After`` in seconds, if any.
        """
        if attempt >= self.max_retries:
            return False
        if retry_after is not None and retry_after > self.max_retry_after_s:
            return False
        if status is None:
            return idempotent
        if status not in RETRY_STATUSES or code == "BUDGET_001":
            return False
        return idempotent or status in NOT_PROCESSED

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait before attempt ``attempt + 1``: never less than ``retry_after``."""
        backoff = min(self.max_backoff_s, self.backoff_s * 2.0**attempt) * (0.5 + self.jitter() / 2)
        return max(backoff, retry_after or 0.0)
