"""The only code that talks to ClickHouse. Reading order: ``store`` (one interface, chDB or
server), ``migrations`` (versioned DDL), ``rows`` (records -> rows), ``sink`` (the batched,
idempotent consumer), ``queries`` (the API's parameterised queries). The control plane's
relational store (SQLite or PostgreSQL) sits beside them: ``control_schema`` (tables,
migrations, rows), ``control_store`` (pricing rules and their audit log)."""

__all__: list[str] = []
