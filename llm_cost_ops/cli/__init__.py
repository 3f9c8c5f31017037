"""The ``cost-ops`` command. Reading order: ``main`` (commands), ``up`` (the embedded
supervisor), ``ingest``, ``report`` (query and summary), ``client``, ``console``."""

__all__: list[str] = []
