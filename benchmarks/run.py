"""The benchmark: start an embedded pipeline of its own, drive it, measure, report.

Phases, in one run:

1. **throughput**: a closed loop publishes as fast as the pipeline makes events queryable
   (never more than ``backlog`` ahead); the rate of rows written to ClickHouse after a warm-up
   is the sustained end-to-end throughput;
2. **freshness**: an open loop at half that rate, plus 20 probe events a second whose
   ``ingested_at`` is their publish time; p50/p99 of publish -> queryable;
3. **accounting**: once drained, the API must hold exactly the distinct events sent;
4. **baselines**: fastavro decode and aiokafka consume of the same messages, then the ratios.
CPU and peak memory of each process are read from /proc over phase 1.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer

from benchmarks.baselines import consume_rate, decode_rates
from benchmarks.load import LoadCounter, LoadGenerator, RowsWritten, Templates, probe_loop
from benchmarks.procstat import ProcessSampler
from llm_cost_ops.broker import free_port
from llm_cost_ops.embedded import EmbeddedPipeline, Progress
from llm_cost_ops.errors import PipelineError
from llm_cost_ops.kafka import producer_config
from llm_cost_ops.settings import Settings
from llm_cost_ops.wire import build_codec

PROBE_ORG = "bench-probe"


class BenchmarkError(PipelineError):
    code = "BENCHMARK_ERROR"


def run_benchmark(
    settings: Settings,
    duration_s: float,
    freshness_s: float,
    progress: Progress,
    backlog: int = 200_000,
    workers: int = 1,
) -> dict[str, Any]:
    """Run every phase on a fresh embedded pipeline and return the result document."""
    with tempfile.TemporaryDirectory(prefix="costops-bench-") as data_dir:
        bench_settings = settings.model_copy(
            update={
                "data_dir": Path(data_dir),
                "api": settings.api.model_copy(update={"port": free_port()}),
            }
        )
        pipeline = EmbeddedPipeline(bench_settings, progress, workers=workers)
        try:
            pipeline.start()
            return asyncio.run(_measure(pipeline, duration_s, freshness_s, backlog, progress))
        finally:
            progress("stopping the benchmark pipeline...")
            pipeline.stop()


async def _measure(
    pipeline: EmbeddedPipeline, duration_s: float, freshness_s: float, backlog: int,
    progress: Progress,
) -> dict[str, Any]:  # fmt: skip
    assert pipeline.broker is not None
    settings = pipeline.client_settings()
    bootstrap = pipeline.broker.bootstrap_servers
    topic = settings.kafka.usage_topic
    codec = build_codec(settings)
    templates = Templates.build(codec, 5000)
    counter = LoadCounter()
    producer = AIOKafkaProducer(**producer_config(settings), max_batch_size=512 * 1024)
    await producer.start()
    rows = RowsWritten(pipeline.api_url)
    stop_polling = asyncio.Event()
    poller = asyncio.create_task(rows.poll(stop_polling))
    load = LoadGenerator(producer, topic, templates, counter)
    pids = {**pipeline.pids(), "bench (load generator)": os.getpid()}
    try:
        progress(f"[throughput] publishing as fast as the pipeline absorbs, for {duration_s:.0f}s...")
        sampler = ProcessSampler(pids)
        sampler.start()
        started = time.monotonic()
        await load.closed_loop(duration_s, lambda: rows.value, backlog)
        ended = time.monotonic()
        processes = sampler.stop()
        warmup = min(10.0, duration_s * 0.25)
        throughput = rows.rate_between(started + warmup, ended)
        progress(f"[throughput] {throughput:,.0f} events/s sustained (after a {warmup:.0f}s warm-up)")
        _check(pipeline)
        await _drain(rows, counter.sent, progress)

        rate = max(1.0, throughput / 2)
        progress(f"[freshness] {rate:,.0f} events/s plus 20 probes/s, for {freshness_s:.0f}s...")
        await asyncio.gather(
            load.open_loop(rate, freshness_s),
            probe_loop(producer, topic, codec, PROBE_ORG, counter, freshness_s),
        )
        await _drain(rows, counter.sent + counter.probes, progress)
        _check(pipeline)
        key = settings.client_key()  # the pipeline's admin key (its admin.key file)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        async with httpx.AsyncClient(base_url=pipeline.api_url, timeout=120, headers=headers) as api:
            probe_stats = (await api.get("/api/v1/usage/stats", params={"organization_id": PROBE_ORG})).json()
            all_stats = (await api.get("/api/v1/usage/stats")).json()
    finally:
        stop_polling.set()
        await poller
        await rows.close()
        await producer.stop()

    progress("[baselines] fastavro decode, the batch reader and aiokafka consume of the same messages...")
    decode, reader = decode_rates(codec, templates)
    consume_messages, consume, consumed = await consume_rate(bootstrap, topic, codec.batch_header(), limit=500_000)
    expected = counter.sent + counter.probes
    return {
        "machine": {"cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "run": {
            "duration_s": duration_s,
            "freshness_s": freshness_s,
            "backlog": backlog,
            "workers": sum(1 for name in pids if name.startswith("worker")),
        },
        "end_to_end_events_per_s": round(throughput, 1),
        "freshness": {
            "rate_events_per_s": round(rate, 1),
            "probes": probe_stats["events"],
            **{k: v for k, v in (probe_stats["freshness"] or {}).items()},
        },
        "baselines": {
            "fastavro_decode_events_per_s": round(decode, 1),
            "batch_reader_decode_events_per_s": round(reader, 1),
            "aiokafka_consume_events_per_s": round(consume, 1),
            "aiokafka_consume_messages_per_s": round(consume_messages, 1),
            "aiokafka_messages_consumed": consumed,
        },
        "ratios": {
            "pipeline_vs_consume": round(throughput / consume, 4) if consume else None,
            "pipeline_vs_decode": round(throughput / decode, 4) if decode else None,
            "pipeline_vs_batch_reader": round(throughput / reader, 4) if reader else None,
        },
        "processes": {name: asdict(usage) for name, usage in processes.items()},
        "accounting": {
            "events_sent": expected,
            "events_stored": all_stats["events"],
            "lost": max(0, expected - all_stats["events"]),
            "extra": max(0, all_stats["events"] - expected),
        },
    }


def _check(pipeline: EmbeddedPipeline) -> None:
    problem = pipeline.failed()
    if problem is not None:
        raise BenchmarkError(f"the pipeline broke during the benchmark: {problem}")


async def _drain(rows: RowsWritten, expected: int, progress: Progress, timeout_s: float = 180.0) -> None:
    deadline = time.monotonic() + timeout_s
    while rows.value < expected:
        if time.monotonic() > deadline:
            raise BenchmarkError(f"only {rows.value:,} of {expected:,} events were written after {timeout_s:.0f}s")
        await asyncio.sleep(0.2)
    progress(f"  drained: {rows.value:,} rows written")


def table(result: dict[str, Any]) -> str:
    """The short human summary of a result document."""
    f = result["freshness"]
    b = result["baselines"]
    lines = [
        f"machine: {result['machine']['cores']} cores, Python {result['machine']['python']}",
        f"end to end (produce -> queryable): {result['end_to_end_events_per_s']:>12,.0f} events/s",
        f"freshness at {f['rate_events_per_s']:,.0f} events/s:   p50 {f.get('p50_ms', 0):,.0f} ms, "
        f"p99 {f.get('p99_ms', 0):,.0f} ms ({f['probes']} probes)",
        f"baseline aiokafka consume:          {b['aiokafka_consume_events_per_s']:>12,.0f} events/s "
        f"({b['aiokafka_consume_messages_per_s']:,.0f} messages/s)",
        f"baseline fastavro decode:           {b['fastavro_decode_events_per_s']:>12,.0f} events/s",
        f"pipeline's batch reader decode:     {b['batch_reader_decode_events_per_s']:>12,.0f} events/s",
        f"pipeline / consume: {result['ratios']['pipeline_vs_consume']}, "
        f"pipeline / fastavro decode: {result['ratios']['pipeline_vs_decode']}, "
        f"pipeline / batch reader: {result['ratios']['pipeline_vs_batch_reader']}",
        "process                      CPU %   peak MB",
    ]
    lines += [f"  {n:<26} {p['cpu_percent']:>6.1f} {p['peak_rss_mb']:>9.1f}" for n, p in result["processes"].items()]
    a = result["accounting"]
    lines.append(
        f"accounting: sent {a['events_sent']:,}, stored {a['events_stored']:,}, lost {a['lost']}, extra {a['extra']}"
    )
    return "\n".join(lines)


def write(result: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
