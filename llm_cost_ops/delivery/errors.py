"""Errors of the service producer (:class:`llm_cost_ops.delivery.UsageProducer`).

::

    UnavailableError (llm_cost_ops.errors)
    └── DeliveryError             a record was not delivered (given to ``on_delivery``)
        ├── ProducerBackpressureError   ``send`` refused a record: the spool or the queue is full
        │   └── SpoolFullError
        └── ProducerClosedError   ``send`` after ``close``
    PipelineError
    └── SpoolLockedError          another process owns the spool directory
"""

from __future__ import annotations

from llm_cost_ops.errors import PipelineError, UnavailableError


class DeliveryError(UnavailableError):
    """A record was not (or not yet) delivered to Kafka."""

    code = "DELIVERY_ERROR"


class ProducerBackpressureError(DeliveryError):
    """``send`` refused the record: nothing of it was kept. Retry after ``retry_after`` seconds."""

    code = "PRODUCER_BACKPRESSURE"


class SpoolFullError(ProducerBackpressureError):
    """The broker is unreachable and the local spool holds ``spool_max_bytes`` already."""

    code = "SPOOL_FULL"

    def __init__(self, message: str, spool_bytes: int, retry_after: float = 5.0) -> None:
        super().__init__(message, retry_after)
        self.spool_bytes = spool_bytes


class ProducerClosedError(DeliveryError):
    code = "PRODUCER_CLOSED"


class SpoolLockedError(PipelineError):
    """Another live process holds the spool directory's lock: give each producer its own."""

    code = "SPOOL_LOCKED"
