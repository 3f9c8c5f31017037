"""Getting usage records in from outside: files (``cost-ops ingest``) and other Kafka topics
(``cost-ops ingest-topic``).

Reading order: ``source`` (bytes in, format chosen), ``json_array``, ``csv_rows`` and
``records`` (one ``(where, record)`` per record, constant memory), then ``path``,
``provider_alias`` and the mappings (``otel``, ``litellm``, ``custom``, chosen by ``mapping``),
then ``topic`` (the consumer that maps, validates, publishes and dead-letters).
"""

from llm_cost_ops.ingest.records import Located, read_records
from llm_cost_ops.ingest.source import Format, detect_format

__all__ = ["Format", "Located", "detect_format", "read_records"]
