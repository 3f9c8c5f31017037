"""Event records and their wire format. Pure data: no I/O but the optional Schema Registry.

Reading order: ``usage`` (the usage event and its validation rules), ``priced`` (the priced
record), ``errors``, ``registry`` (schema ids), ``serde`` (Confluent wire format), ``codec``
(models <-> Avro records), ``dlq`` (dead-letter headers), ``query`` (parameters and response
models of the cost API).
"""

from schemas.priced import CostBreakdown, PricedUsage, PricingStatus
from schemas.usage import UsageEvent

__all__ = ["CostBreakdown", "PricedUsage", "PricingStatus", "UsageEvent"]
