"""``cost-ops``: run the pipeline and ask it what LLM traffic costs.

Each command builds the settings once and passes them down. Errors end in one line on
stderr and a non-zero exit code, not a stack trace (``LOG_LEVEL=debug`` shows the trace).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from pydantic import ValidationError

from llm_cost_ops.cli.console import configure_logging, err, out
from llm_cost_ops.errors import InvalidInputError, PipelineError
from llm_cost_ops.settings import Settings, load_settings
from schemas.errors import field_errors

logger = logging.getLogger(__name__)

Command = Callable[[argparse.Namespace, Settings], int]


def cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    from llm_cost_ops.cli.up import Supervisor

    return Supervisor(settings, args.demo_rate if args.demo else None).run()


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from llm_cost_ops.kafka import ensure_topics
    from streams.app import run_worker

    asyncio.run(ensure_topics(settings))
    run_worker(settings)
    return 0


def cmd_api(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from api.app import create_app
    from llm_cost_ops.kafka import ensure_topics

    # Fail here, in one line, rather than in uvicorn's lifespan with a stack trace.
    asyncio.run(ensure_topics(settings))

    port = args.port if args.port is not None else settings.api.port
    app = create_app(settings, role=args.role)
    uvicorn.run(
        app,
        host=settings.api.host,
        port=port,
        log_level=settings.log_level,
        log_config=None,  # uvicorn's records go through configure_logging's handler (JSON too)
        timeout_graceful_shutdown=10,
    )
    context = getattr(app.state, "context", None)
    if context is not None and context.fatal:
        err(f"error: {context.fatal}")
        return 1
    return 0


def cmd_recover(args: argparse.Namespace, settings: Settings) -> int:
    from llm_cost_ops.recovery import recover

    report = recover(settings, out)
    out(
        f"recovered: {report.volumes} tier volumes, {report.spend_buckets} budget-spend buckets, "
        f"{report.replayed_events} journalled events published again"
    )
    return 0


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from llm_cost_ops.demo import DemoStream, run_demo
    from llm_cost_ops.producer import UsageProducer
    from llm_cost_ops.wire import build_codec

    async def main() -> int:
        async with UsageProducer(settings, build_codec(settings)) as producer:
            return await run_demo(producer, args.rate, args.duration, DemoStream(args.seed))

    sent = asyncio.run(main())
    out(f"published {sent} demo events")
    return 0


def cmd_ingest(args: argparse.Namespace, settings: Settings) -> int:
    from tqdm import tqdm

    from llm_cost_ops.cli.client import ApiClient
    from llm_cost_ops.cli.ingest import IngestParams, ingest

    params = IngestParams(args.file, args.format, args.dry_run, args.batch_size, progress=not args.quiet)

    def reject(line: str) -> None:
        tqdm.write(f"rejected {line}", file=sys.stderr)  # above the progress bar, not through it

    if args.dry_run:
        report = ingest(params, None, settings.custom_providers, reject)
        out(f"{report.read} records read, {report.read - report.rejected} valid, {report.rejected} invalid")
    else:
        with ApiClient.for_settings(settings) as client:
            report = ingest(params, client, settings.custom_providers, reject)
        out(f"{report.read} records read, {report.sent} ingested, {report.rejected} rejected")
    return 1 if report.rejected else 0


def cmd_ingest_topic(args: argparse.Namespace, settings: Settings) -> int:
    from llm_cost_ops.ingest.mapping import load_mapping
    from llm_cost_ops.ingest.topic import TopicIngester, run_until_signalled

    mapping = load_mapping(args.mapping, settings.ingest)
    group = args.group or f"{settings.ingest.group_prefix}-{args.topic}"
    ingester = TopicIngester(settings, args.topic, mapping, group, from_beginning=args.from_beginning)
    stats = asyncio.run(run_until_signalled(ingester))
    out(f"{stats.read} messages read, {stats.published} events published, {stats.dead_lettered} dead-lettered")
    return 0


def cmd_query(args: argparse.Namespace, settings: Settings) -> int:
    from llm_cost_ops.cli.client import ApiClient
    from llm_cost_ops.cli.report import Window, query

    window = Window(args.range, args.start_date, args.end_date)
    with ApiClient.for_settings(settings) as client:
        out(query(client, window, args.output, args.organization, args.provider, args.model, args.limit))
    return 0


def cmd_summary(args: argparse.Namespace, settings: Settings) -> int:
    from llm_cost_ops.cli.client import ApiClient
    from llm_cost_ops.cli.report import Window, summary

    window = Window(args.period, args.start_date, args.end_date)
    with ApiClient.for_settings(settings) as client:
        out(summary(client, window, args.organization, args.output))
    return 0


def cmd_bench(args: argparse.Namespace, settings: Settings) -> int:
    from benchmarks.run import run_benchmark, table, write

    if args.pricing_stage:
        from benchmarks.stage import run_pricing_stage, stage_table

        stage = run_pricing_stage(settings, args.pricing_stage, range(1, max(2, args.workers) + 1), progress=err)
        write(stage, args.output)
        out(stage_table(stage))
        out(f"result: {args.output}")
        return 0
    result = run_benchmark(
        settings, args.duration, args.freshness_duration, progress=err, backlog=args.backlog, workers=args.workers
    )
    write(result, args.output)
    out(table(result))
    out(f"result: {args.output}")
    return 1 if result["accounting"]["lost"] or result["accounting"]["extra"] else 0


def cmd_bench_queries(args: argparse.Namespace, settings: Settings) -> int:
    from benchmarks.query_load import run_query_benchmark, table
    from benchmarks.run import write

    result = run_query_benchmark(args.rows, args.concurrency, args.duration, progress=err)
    write(result, args.output)
    out(table(result))
    out(f"result: {args.output}")
    return 0 if all(result["answers_agree"].values()) else 1


def cmd_check_config(args: argparse.Namespace, settings: Settings) -> int:
    out(json.dumps(settings.model_dump(mode="json"), indent=2))
    return 0


def _date_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--start-date", help="ISO 8601 date or timestamp (overrides the range)")
    parser.add_argument("--end-date", help="ISO 8601; a date includes that whole day")


def build_parser() -> argparse.ArgumentParser:
    from llm_cost_ops.cli.anomalies import add_anomaly_commands
    from llm_cost_ops.cli.auth import add_auth_commands
    from llm_cost_ops.cli.dlq import add_dlq_commands
    from llm_cost_ops.cli.export import add_export_command
    from llm_cost_ops.cli.pricing import add_pricing_commands
    from llm_cost_ops.cli.report import RANGES
    from llm_cost_ops.cli.reprice import add_reprice_commands

    parser = argparse.ArgumentParser(prog="cost-ops", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, help="TOML settings file (also COSTOPS_CONFIG)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = sub.add_parser("up", help="run the whole pipeline on this machine (embedded broker + chDB)")
    up.add_argument("--demo", action="store_true", help="also publish a realistic synthetic stream")
    up.add_argument("--demo-rate", type=float, default=20.0, help="peak demo events per second (default 20)")
    up.set_defaults(func=cmd_up)

    sub.add_parser("worker", help="run the Faust pricing worker (KAFKA_BOOTSTRAP_SERVERS)").set_defaults(
        func=cmd_worker
    )

    api = sub.add_parser("api", help="run the HTTP API (CLICKHOUSE_URL, KAFKA_BOOTSTRAP_SERVERS)")
    api.add_argument("--role", choices=["api", "sink", "all"], default="api", help="all = api + sink (embedded)")
    api.add_argument("--port", type=int, help="overrides API_PORT")
    api.set_defaults(func=cmd_api)

    sink = sub.add_parser("sink", help="run the ClickHouse sink alone (serves /health, /ready, /metrics)")
    sink.add_argument("--port", type=int, default=8081, help="health/metrics port (default 8081)")
    sink.set_defaults(func=cmd_api, role="sink")

    sub.add_parser(
        "recover", help="seed a new, empty broker from ClickHouse and the ingestion journal (cost-ops up runs it)"
    ).set_defaults(func=cmd_recover)

    demo = sub.add_parser("demo", help="publish a synthetic usage stream to Kafka")
    demo.add_argument("--rate", type=float, default=20.0, help="peak events per second")
    demo.add_argument("--duration", type=float, default=None, help="seconds to run (default: until stopped)")
    demo.add_argument("--seed", type=int, default=None)
    demo.set_defaults(func=cmd_demo)

    ingest = sub.add_parser("ingest", help="ingest usage records from a JSON, JSON-lines or CSV file")
    ingest.add_argument("--file", required=True, help="path, or - for stdin")
    ingest.add_argument(
        "--format", choices=["json", "jsonl", "csv"], help="default: from the extension, else from the first byte"
    )
    ingest.add_argument("--dry-run", action="store_true", help="validate only")
    ingest.add_argument("--batch-size", type=int, default=500, help="records per API request (1-1000, default 500)")
    ingest.add_argument("--quiet", action="store_true", help="no progress bar")
    ingest.set_defaults(func=cmd_ingest)

    topic = sub.add_parser(
        "ingest-topic", help="map JSON messages of another Kafka topic to usage events (runs until stopped)"
    )
    topic.add_argument("--topic", required=True, help="the source topic")
    topic.add_argument("--mapping", required=True, help="otel-genai, litellm, or a TOML mapping file (docs/ingest.md)")
    topic.add_argument("--group", help="consumer group (default: <ingest.group_prefix>-<topic>)")
    topic.add_argument(
        "--from-beginning", action="store_true", help="a group without committed offsets starts at the oldest message"
    )
    topic.set_defaults(func=cmd_ingest_topic)

    query = sub.add_parser("query", help="list cost records")
    query.add_argument("--range", default="last-24-hours", choices=list(RANGES))
    query.add_argument("--output", default="table", choices=["table", "json", "csv"])
    query.add_argument("--organization")
    query.add_argument("--provider")
    query.add_argument("--model")
    query.add_argument("--limit", type=int, default=100)
    _date_flags(query)
    query.set_defaults(func=cmd_query)

    summary = sub.add_parser("summary", help="total cost, requests, by provider and model")
    summary.add_argument("--period", default="last-30-days", choices=list(RANGES))
    summary.add_argument("--organization")
    summary.add_argument("--output", default="text", choices=["text", "json"])
    _date_flags(summary)
    summary.set_defaults(func=cmd_summary)

    bench = sub.add_parser("bench", help="measure the embedded pipeline (throughput, freshness, baselines)")
    bench.add_argument("--duration", type=float, default=60.0, help="seconds of the throughput phase (default 60)")
    bench.add_argument("--freshness-duration", type=float, default=30.0, help="seconds of the freshness phase")
    bench.add_argument("--workers", type=int, default=1, help="pricing worker processes (one consumer group)")
    bench.add_argument(
        "--backlog",
        type=int,
        default=200_000,
        help="most events in flight in the throughput phase (the rate is at most backlog / latency)",
    )
    bench.add_argument(
        "--pricing-stage",
        type=int,
        metavar="EVENTS",
        help="instead: price a backlog of EVENTS with the pricing stage alone, 1 to max(2, --workers) workers",
    )
    bench.add_argument("--output", type=Path, default=Path("benchmarks/results/latest.json"))
    bench.set_defaults(func=cmd_bench)

    bench_queries = sub.add_parser(
        "bench-queries", help="measure the query endpoints under concurrent load, base table vs hourly rollup"
    )
    bench_queries.add_argument("--rows", type=int, default=10_000_000, help="usage rows to load (default 10M)")
    bench_queries.add_argument("--concurrency", type=int, default=8, help="concurrent clients (default 8)")
    bench_queries.add_argument(
        "--duration", type=float, default=30.0, help="seconds of load per endpoint and mode (default 30)"
    )
    bench_queries.add_argument("--output", type=Path, default=Path("benchmarks/results/queries.json"))
    bench_queries.set_defaults(func=cmd_bench_queries)

    add_reprice_commands(sub, add_pricing_commands(sub))
    add_dlq_commands(sub)
    add_anomaly_commands(sub)
    add_auth_commands(sub)
    add_export_command(sub)

    sub.add_parser("check-config", help="validate and print the effective settings").set_defaults(func=cmd_check_config)
    return parser


def _log_role(args: argparse.Namespace) -> str:
    """The process's role on its log records: ``worker``, ``api``/``sink``/``all``, ``up``, or ``cli``."""
    if args.func is cmd_worker:
        return "worker"
    if args.func is cmd_api:
        return str(args.role)
    if args.func is cmd_up:
        return "up"
    return "cli"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(args.config)
    except ValidationError as exc:
        err("error: invalid configuration:")
        for name, reason in field_errors(exc).items():
            err(f"  {name}: {reason}")
        return 2
    except (FileNotFoundError, ValueError) as exc:
        err(f"error: invalid configuration: {exc}")
        return 2
    configure_logging(settings.log_level, settings.log_format, _log_role(args))
    try:
        code: int = args.func(args, settings)
    except KeyboardInterrupt:
        return 130
    except InvalidInputError as exc:
        err(f"error: {exc.message}")
        for name, reason in exc.field_errors.items():
            err(f"  {name}: {reason}")
        return 2
    except (PipelineError, OSError) as exc:
        logger.debug("command failed", exc_info=exc)
        err(f"error: {exc}")
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
