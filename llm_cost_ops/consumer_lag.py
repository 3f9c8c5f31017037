"""Consumer lag: how many messages of each held partition the group has not committed yet.

The worker (Faust) and the sink (aiokafka) both compute it from what their consumer already
knows, the high watermark of the last fetch and the last committed offset, so it costs no
request to the broker. It is reported as ``costops_consumer_lag`` (:mod:`llm_cost_ops.metrics`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol, TypeVar

__all__ = ["partition_lags"]


class _Partition(Protocol):
    @property
    def topic(self) -> str: ...

    @property
    def partition(self) -> int: ...


P = TypeVar("P", bound=_Partition)


def partition_lags(
    assigned: Iterable[P], highwater: Callable[[P], int | None], committed: Callable[[P], int | None]
) -> dict[tuple[str, int], int]:
    """``highwater - committed`` per (topic, partition) of ``assigned``.

    A partition without a fetch yet (no high watermark) or without a commit yet is left out:
    its lag is unknown, and a guess (from offset 0) would page someone for a trimmed topic.
    """
    lags: dict[tuple[str, int], int] = {}
    for tp in assigned:
        high, done = highwater(tp), committed(tp)
        if high is None or done is None:
            continue
        lags[(tp.topic, tp.partition)] = max(0, high - done)
    return lags
