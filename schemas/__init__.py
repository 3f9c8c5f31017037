"""Event records and their wire format. Pure data: no I/O but the optional Schema Registry.

Reading order: ``usage`` (the usage event and its validation rules), ``columns`` (events as
an Arrow table), ``usage_check`` (the rules on whole columns), ``priced`` (the priced table
and its Arrow wire format), ``errors``, ``registry`` (schema ids), ``serde`` (Confluent wire
format), ``codec`` (events <-> Avro messages), ``dlq`` (dead-letter headers), ``query``
(parameters and response models of the cost API), ``pricing_rule`` (custom prices),
``control`` (the pricing rule list and the audit log).
"""

from schemas.priced import PricingStatus
from schemas.usage import UsageEvent

__all__ = ["PricingStatus", "UsageEvent"]
