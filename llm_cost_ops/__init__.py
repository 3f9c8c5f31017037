"""LLM-CostOps: what your LLM traffic costs, as it happens.

Reading order: ``settings`` (the one configuration object), ``errors`` (the error
hierarchy every package extends), ``producer`` (publishing usage events to Kafka),
``cli`` (the ``cost-ops`` command). The pipeline itself lives in ``schemas``,
``streams``, ``sinks`` and ``api``.
"""

__all__: list[str] = []
