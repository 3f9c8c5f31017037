"""The pricing stage alone: how its throughput scales with worker processes.

The end-to-end benchmark runs every process on the same cores, so adding a worker there
mostly measures the machine. Here only the broker and the workers run: a backlog of usage
events is published first, then 1, 2, ... workers (one consumer group) price it, and the rate
at which priced events appear on ``priced-usage`` (its end offsets, sampled; every message
holds 500 events) is the stage's throughput. Each worker count gets a fresh broker.
"""

from __future__ import annotations

import asyncio
import os
import platform
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from benchmarks.load import LoadCounter, LoadGenerator, Templates
from benchmarks.procstat import ProcessSampler
from llm_cost_ops.embedded import EmbeddedPipeline, Progress
from llm_cost_ops.errors import PipelineError
from llm_cost_ops.kafka import ensure_topics, producer_config
from llm_cost_ops.settings import Settings
from llm_cost_ops.wire import build_codec

BATCH = 500


class StageBenchmarkError(PipelineError):
    code = "BENCHMARK_ERROR"


def run_pricing_stage(
    settings: Settings, events: int, worker_counts: Sequence[int], progress: Progress
) -> dict[str, Any]:
    """Price ``events`` (rounded to whole batches) once per worker count; the rates side by side."""
    events = max(BATCH, events // BATCH * BATCH)
    runs = [_one(settings, events, workers, progress) for workers in worker_counts]
    base = runs[0]["events_per_s"]
    return {
        "machine": {"cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "events": events,
        "runs": runs,
        "speedup": {str(r["workers"]): round(r["events_per_s"] / base, 2) if base else None for r in runs},
    }


def _one(settings: Settings, events: int, workers: int, progress: Progress) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="costops-stage-") as data_dir:
        pipeline = EmbeddedPipeline(settings.model_copy(update={"data_dir": Path(data_dir)}), progress, workers=workers)
        try:
            pipeline.start_broker()
            local = pipeline.client_settings()
            progress(f"[stage, {workers} worker(s)] publishing a backlog of {events:,} events...")
            asyncio.run(_prefill(local, events))
            # Sampling starts before the workers do: a small backlog may be priced before the
            # last worker reports ready.
            ready = threading.Event()
            outcome: list[dict[str, Any] | BaseException] = []

            def measure() -> None:
                try:
                    outcome.append(asyncio.run(_measure(local, pipeline, events, workers, ready, progress)))
                except BaseException as exc:  # handed to the caller's thread below
                    outcome.append(exc)

            sampler = threading.Thread(target=measure, name="stage-sampler")
            sampler.start()
            try:
                pipeline.start_workers()
                progress(f"[stage, {workers} worker(s)] pricing...")
            finally:
                ready.set()
                sampler.join()
            if isinstance(outcome[0], BaseException):
                raise outcome[0]
            return outcome[0]
        finally:
            pipeline.stop()


async def _prefill(settings: Settings, events: int) -> None:
    await ensure_topics(settings)
    producer = AIOKafkaProducer(**producer_config(settings), max_batch_size=512 * 1024)
    await producer.start()
    try:
        # 96 organizations: keys spread evenly enough over the partitions that no worker idles.
        templates = Templates.build(build_codec(settings), 9600, tenants=32)
        load = LoadGenerator(producer, settings.kafka.usage_topic, templates, LoadCounter(), batch=BATCH)
        for _ in range(events // 50_000):
            await load.send(50_000)
        await load.send(events % 50_000)
    finally:
        await producer.stop()


async def _measure(
    settings: Settings, pipeline: EmbeddedPipeline, events: int, workers: int, ready: threading.Event,
    progress: Progress, timeout_s: float = 600.0,
) -> dict[str, Any]:  # fmt: skip
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka.bootstrap_servers)
    await consumer.start()
    try:
        topic = settings.kafka.priced_topic
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        if not partitions:
            await consumer.client.force_metadata_update()
            partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        sampler: ProcessSampler | None = None
        samples: list[tuple[float, int]] = []
        deadline = time.monotonic() + timeout_s
        while True:
            offsets = await consumer.end_offsets(partitions)
            done = sum(offsets.values()) * BATCH
            samples.append((time.monotonic(), done))
            if sampler is None and ready.is_set():
                # CPU from the moment every worker runs (the rate is from the offsets).
                pids = {n: pid for n, pid in pipeline.pids().items() if n.startswith(("worker", "broker"))}
                sampler = ProcessSampler(pids)
                sampler.start()
            if done >= events and sampler is not None:
                break
            problem = pipeline.failed() if ready.is_set() else None
            if problem is not None or time.monotonic() > deadline:
                raise StageBenchmarkError(problem or f"only {done:,} of {events:,} events priced in {timeout_s:.0f}s")
            await asyncio.sleep(0.05)
        usage = sampler.stop() if sampler is not None else {}
    finally:
        await consumer.stop()
    # The steady middle: from 10 % to 90 % of the backlog (start-up and tail left out).
    # (from the last sample below 10 %, so a short run still spans two samples).
    start = [s for s in samples if s[1] < events * 0.1][-1] if samples[0][1] < events * 0.1 else samples[0]
    end = next(s for s in samples if s[1] >= events * 0.9)
    rate = (end[1] - start[1]) / (end[0] - start[0]) if end[0] > start[0] else 0.0
    progress(f"[stage, {workers} worker(s)] {rate:,.0f} events/s")
    return {
        "workers": workers,
        "events_per_s": round(rate, 1),
        "processes": {name: asdict(u) for name, u in usage.items()},
    }


def stage_table(result: dict[str, Any]) -> str:
    lines = [f"pricing stage alone, {result['events']:,} events, {result['machine']['cores']} cores:"]
    for run in result["runs"]:
        cpu = ", ".join(f"{n} {p['cpu_percent']:.0f} %" for n, p in run["processes"].items())
        speedup = result["speedup"][str(run["workers"])]
        lines.append(f"  {run['workers']} worker(s): {run['events_per_s']:>10,.0f} events/s  x{speedup}  ({cpu})")
    return "\n".join(lines)
