"""The ``cost-ops`` command. Reading order: ``main`` (commands), ``up`` (the embedded
supervisor), ``ingest``, ``report`` (query and summary), ``pricing`` (custom prices),
``client``, ``console``."""

__all__: list[str] = []
