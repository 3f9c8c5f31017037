"""The only code that talks to ClickHouse. Reading order: ``store`` (one interface, chDB or
server), ``migrations`` (versioned DDL), ``rows`` (records -> rows), ``sink`` (the batched,
idempotent consumer), ``queries`` (the API's parameterised queries)."""

__all__: list[str] = []
