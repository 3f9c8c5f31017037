"""The service producer: a synchronous, non-blocking :class:`UsageProducer` with a disk spool.

Reading order: ``producer`` (batching, encoding, producing, the outage state machine),
``spool`` (the on-disk segments and their format), ``errors``, ``metrics``.
The API's own async producer is :mod:`llm_cost_ops.producer`.
"""

from llm_cost_ops.delivery.errors import (
    DeliveryError,
    ProducerBackpressureError,
    ProducerClosedError,
    SpoolFullError,
    SpoolLockedError,
)
from llm_cost_ops.delivery.producer import DeliveryCallback, UsageProducer

__all__ = [
    "DeliveryCallback",
    "DeliveryError",
    "ProducerBackpressureError",
    "ProducerClosedError",
    "SpoolFullError",
    "SpoolLockedError",
    "UsageProducer",
]
