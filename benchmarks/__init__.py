"""``cost-ops bench``: the embedded pipeline measured at full speed, beside its raw baselines.

Reading order: ``run`` (the phases and the report), ``load`` (pre-encoded messages with fresh
ids, produced at a fixed or the highest sustainable rate), ``baselines`` (fastavro decode and
aiokafka consume of the same messages), ``procstat`` (CPU and peak memory from /proc).
"""

__all__: list[str] = []
