"""Where the fault test's missing events went: which source messages held them, whether the
worker priced them, what the groups committed, and what the processes logged about it.

Printed only when events are missing, so a failed CI run says which stage lost them."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition

from schemas.priced import decode_priced

from processes import group_offsets

LOG_LINE = re.compile(
    r"committed offset|reading .* from the beginning|Assigned|[Rr]evok|rebalanc|seek|"
    r"WARNING|ERROR|CRITICAL|Traceback|[Ee]xception"
)
NOISE = re.compile(r"dead letter|cost\.anomaly|budget\.")
"""Warnings the test causes on purpose (its poison messages, spikes)."""


def ranges(offsets: Iterable[int]) -> str:
    """``3-7, 12``: sorted offsets as runs."""
    runs: list[list[int]] = []
    for offset in sorted(set(offsets)):
        if runs and offset == runs[-1][1] + 1:
            runs[-1][1] = offset
        else:
            runs.append([offset, offset])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


async def _values(bootstrap: str, topic: str, ends: Mapping[int, int]) -> dict[int, list[bytes | None]]:
    """Every message of ``topic`` up to ``ends``, by partition."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in ends]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        values: dict[int, list[bytes | None]] = {p: [] for p in ends}
        idle = 0
        while idle < 3 and any(len(values[p]) < end for p, end in ends.items()):
            fetched = await consumer.getmany(timeout_ms=1000)
            idle = 0 if fetched else idle + 1
            for tp, records in fetched.items():
                values[tp.partition].extend(record.value for record in records)
    finally:
        await consumer.stop()
    return values


def diagnose(
    bootstrap: str,
    env: Mapping[str, str],
    missing: set[str],
    positions: Mapping[str, list[tuple[int, int]]],
    logs: Path,
) -> str:
    """A report on ``missing`` event ids; ``positions``: each event id's (partition, offset)
    on the usage topic, once per message that carried it."""
    lines = [f"diagnosis of {len(missing):,} missing events:"]
    by_partition: dict[int, set[int]] = {}
    for event_id in missing:
        for partition, offset in positions.get(event_id, []):
            by_partition.setdefault(partition, set()).add(offset)
    for partition, offsets in sorted(by_partition.items()):
        lines.append(f"  usage/{partition}: messages at offsets {ranges(offsets)}")
    partitions, priced_topic = int(env["KAFKA__PARTITIONS"]), env["KAFKA__PRICED_TOPIC"]
    ends: dict[str, dict[int, int]] = {}
    for stage, group, topic in (
        ("worker", env["WORKER__APP_ID"], env["KAFKA__USAGE_TOPIC"]),
        ("sink", env["SINK__GROUP_ID"], priced_topic),
    ):
        ends[topic], committed = asyncio.run(group_offsets(bootstrap, group, topic, partitions))
        lines.append(f"  {stage} group committed {committed} of {topic} ends {ends[topic]}")
    priced = asyncio.run(_values(bootstrap, priced_topic, ends[priced_topic]))
    where: dict[int, set[int]] = {}
    found: set[str] = set()
    for partition, values in priced.items():
        for offset, value in enumerate(values):
            try:
                ids = set(decode_priced(value).column("event_id").to_pylist())
            except Exception:  # a message the sink dead-letters; not an event
                continue
            if ids & missing:
                found |= ids & missing
                where.setdefault(partition, set()).add(offset)
    if found:
        lines.append(
            f"  the worker priced {len(found):,} of them, so the sink lost those: "
            + "; ".join(f"priced/{p} offsets {ranges(o)}" for p, o in sorted(where.items()))
        )
    if len(found) < len(missing):
        lines.append(f"  {len(missing) - len(found):,} of them are not on the priced topic: the worker lost those")
    for log in sorted(logs.glob("*.log")):
        hits = [
            line
            for line in log.read_text(errors="replace").splitlines()
            if LOG_LINE.search(line) and not NOISE.search(line)
        ]
        if hits:
            lines.append(f"  {log.name}:")
            lines.extend(f"    {line[:240]}" for line in hits[-40:])
    return "\n".join(lines)
