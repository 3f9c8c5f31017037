"""A Prometheus histogram that takes a whole array of observations at once.

``prometheus_client.Histogram.observe`` takes one value a call: the pricing worker prices 60k+
events a second, and a Python call per event would cost more than the pricing. Here a take's
values are bucketed with one ``numpy.searchsorted`` and added to per-label bucket counts; the
registry reads them through :meth:`BulkHistogram.collect` as an ordinary histogram family.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Sequence

import numpy as np
from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

__all__ = ["BulkHistogram"]


class BulkHistogram:
    """A labelled histogram fed with arrays (:meth:`observe_many`).

    Args:
        name: the family name (samples ``name_bucket``, ``name_sum``, ``name_count``).
        documentation: the ``# HELP`` text.
        labelnames: the label names, in the order :meth:`observe_many` takes their values.
        buckets: upper bounds, ascending; ``+Inf`` is added.
        registry: where to register (None: nowhere).
    """

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        buckets: Sequence[float],
        registry: CollectorRegistry | None = None,
    ) -> None:
        bounds = [float(b) for b in buckets if not math.isinf(b)]
        if bounds != sorted(set(bounds)) or not bounds:
            raise ValueError("buckets must be ascending and distinct")
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self._bounds = np.asarray(bounds)
        self._counts: dict[tuple[str, ...], np.ndarray] = {}
        self._sums: dict[tuple[str, ...], float] = {}
        # The worker observes on the event loop; the exposition may run in another thread.
        self._lock = threading.Lock()
        if registry is not None:
            registry.register(self)

    def observe_many(self, labelvalues: Sequence[str], values: np.ndarray) -> None:
        """Observe every value of ``values`` (float, no NaN) under ``labelvalues``."""
        if len(labelvalues) != len(self.labelnames):
            raise ValueError(f"expected {len(self.labelnames)} label values, got {len(labelvalues)}")
        if not len(values):
            return
        # Bucket i holds bounds[i-1] < v <= bounds[i] (Prometheus' ``le``); the last is +Inf.
        index = np.searchsorted(self._bounds, values, side="left")
        counts = np.bincount(index, minlength=len(self._bounds) + 1)
        total = float(np.sum(values))
        key = tuple(labelvalues)
        with self._lock:
            if key in self._counts:
                self._counts[key] += counts
                self._sums[key] += total
            else:
                self._counts[key] = counts.astype(np.int64)
                self._sums[key] = total

    def describe(self) -> Iterable[Metric]:
        return [HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)]

    def collect(self) -> Iterable[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        with self._lock:
            series = [(key, counts.cumsum().tolist(), self._sums[key]) for key, counts in self._counts.items()]
        # Bounds written as prometheus_client writes them (``1e-06``, ``0.01``, ``10.0``).
        les = [*(floatToGoString(b) for b in self._bounds.tolist()), "+Inf"]  # type: ignore[no-untyped-call]  # untyped upstream
        for key, cumulative, total in series:
            family.add_metric(list(key), list(zip(les, cumulative, strict=True)), total)
        return [family]
