"""The HTTP API. Reading order: ``app`` (``create_app(settings, role)`` and the lifespan),
``context`` (shared resources), ``deps`` (dependencies and parameter parsing), ``errors``
(the one status table), ``routes/`` (usage ingestion, cost queries, pricing rules, system
endpoints)."""

__all__: list[str] = []
