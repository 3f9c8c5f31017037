"""CPU time and peak resident memory of processes, read from /proc (Linux)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()  # noqa: SIM115
    return (int(fields[11]) + int(fields[12])) / _TICKS


def peak_rss_mb(pid: int) -> float:
    """Peak resident set size (VmHWM) of ``pid`` in MB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class ProcessUsage:
    cpu_percent: float
    peak_rss_mb: float


class ProcessSampler:
    """CPU share over an interval, per named process. ``start()`` then ``stop()``."""

    def __init__(self, pids: dict[str, int]) -> None:
        self._pids = pids
        self._cpu0: dict[str, float] = {}
        self._t0 = 0.0

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._cpu0 = {name: cpu_seconds(pid) for name, pid in self._pids.items()}

    def stop(self) -> dict[str, ProcessUsage]:
        elapsed = time.monotonic() - self._t0
        return {
            name: ProcessUsage(
                cpu_percent=round(100 * (cpu_seconds(pid) - self._cpu0[name]) / elapsed, 1),
                peak_rss_mb=round(peak_rss_mb(pid), 1),
            )
            for name, pid in self._pids.items()
        }
