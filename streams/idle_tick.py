"""Idle ticks: windows of a partition that fell silent close without waiting for traffic.

A partition's watermark is the latest event time it has seen (streams/windows.py), so after
its last event its newest windows would stay open until the next one. The worker therefore
watches its usage partitions: one that is *live* (its watermark within the largest window,
its grace and ``idle_s`` of now) and has had no message for ``WINDOW__IDLE_S`` gets a tick, a
message produced to that very partition (value ``tick``, header ``costops-tick`` = the event
time reached: now - ``idle_s``). The price agent never prices a tick; the window step takes it
as the partition's event time, through the same path as an event (table writes during it,
offsets committed after), so a replayed tick changes nothing.

A partition whose watermark is old (a replay of past traffic, or a restart after a long
silence) gets no tick: wall-clock time says nothing about old event time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from llm_cost_ops.settings import WindowSettings

logger = logging.getLogger(__name__)

TICK_HEADER = "costops-tick"
TICK_VALUE = b"tick"


def tick_ms(message: Any) -> int | None:
    """The event time a tick message carries; None for any other message."""
    headers = message.headers
    if not headers:
        return None
    items = headers.items() if isinstance(headers, dict) else headers
    for name, value in items:
        if name == TICK_HEADER:
            try:
                return int(bytes(value).decode())
            except (TypeError, ValueError):
                return None
    return None


class IdleTicker:
    """Sends the ticks of one worker's idle, live partitions.

    Args:
        config: the window settings (``idle_s``, sizes and grace).
        watermark: a partition's watermark in ms (None before any event).
        assigned: the usage partitions this worker owns now.
        send: produce a tick of event time ``ms`` to partition ``p``.
    """

    def __init__(
        self,
        config: WindowSettings,
        watermark: Callable[[int], int | None],
        assigned: Callable[[], Iterable[int]],
        send: Callable[[int, int], Any],
        clock: Callable[[], float] = time.monotonic,
        wall_ms: Callable[[], int] = lambda: int(datetime.now(UTC).timestamp() * 1000),
    ) -> None:
        self._config = config
        self._watermark = watermark
        self._assigned = assigned
        self._send = send
        self._clock = clock
        self._wall_ms = wall_ms
        self._seen: dict[int, float] = {}

    def saw(self, partitions: Iterable[int]) -> None:
        """Messages of these partitions were just consumed."""
        now = self._clock()
        for partition in partitions:
            self._seen[partition] = now

    def due(self, now_ms: int) -> dict[int, int]:
        """Partition -> the event time to tick it to, for each idle, live, owned partition."""
        idle_ms = int(self._config.idle_s * 1000)
        live_ms = (max(self._config.sizes_s) + self._config.grace_s) * 1000 + 2 * idle_ms
        now = self._clock()
        due = {}
        for partition in self._assigned():
            last = self._seen.setdefault(partition, now)  # newly owned: idle from now on
            if (now - last) * 1000 < idle_ms:
                continue
            mark = self._watermark(partition)
            target = now_ms - idle_ms
            if mark is None or target <= mark or mark < now_ms - live_ms:
                continue
            due[partition] = target
        return due

    async def tick(self) -> int:
        """Send the ticks that are due; how many."""
        due = self.due(self._wall_ms())
        for partition, target in due.items():
            await self._send(partition, target)
            self._seen[partition] = self._clock()
            logger.debug("idle tick", extra={"partition": partition, "event_time_ms": target})
        return len(due)
