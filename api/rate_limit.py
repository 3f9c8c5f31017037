"""Per-key request rate limiting: a token bucket per caller, in this API process.

Each bucket holds up to ``burst`` tokens and refills at ``rate`` per second; a request takes
one. The answer carries the seeds' headers: ``X-RateLimit-Limit`` (the bucket's size),
``X-RateLimit-Remaining`` and ``X-RateLimit-Reset`` (epoch second when the bucket is full).
With several API processes behind a load balancer each keeps its own buckets, so a key's
limit is per process (divide by the replica count to set a deployment-wide figure).
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    limit: int
    remaining: int
    reset_epoch: int
    retry_after_s: float

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_epoch),
        }


class RateLimiter:
    """Token buckets keyed by caller id; the least recently used are forgotten past ``max_keys``
    (a forgotten caller starts again with a full bucket).

    Args:
        rate: tokens added per second.
        burst: bucket size.
        clock: monotonic seconds; ``wall``: epoch seconds (tests pass fixed ones).
    """

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._rate = rate
        self._burst = burst
        self._max_keys = max_keys
        self._clock = clock
        self._wall = wall
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # id -> (tokens, at)
        self._lock = threading.Lock()

    def take(self, caller: str) -> RateDecision:
        now = self._clock()
        with self._lock:
            tokens, at = self._buckets.pop(caller, (float(self._burst), now))
            tokens = min(float(self._burst), tokens + (now - at) * self._rate)
            allowed = tokens >= 1.0
            if allowed:
                tokens -= 1.0
            self._buckets[caller] = (tokens, now)
            if len(self._buckets) > self._max_keys:
                self._buckets.popitem(last=False)
        full_in = (self._burst - tokens) / self._rate
        return RateDecision(
            allowed=allowed,
            limit=self._burst,
            remaining=int(tokens),
            reset_epoch=math.ceil(self._wall() + full_in),
            retry_after_s=0.0 if allowed else (1.0 - tokens) / self._rate,
        )
