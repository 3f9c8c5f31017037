"""``create_app(settings)``: the Faust application with its topics, agents and web pages."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import faust
from faust.types import TP
from faust.web import Request, Response, View

from llm_cost_ops.consumer_lag import partition_lags
from llm_cost_ops.kafka import bootstrap_servers
from llm_cost_ops.metrics import CONTENT_TYPE_LATEST, PipelineMetrics
from llm_cost_ops.settings import Settings
from llm_cost_ops.wire import build_codec
from schemas.provider import allowed_providers
from streams.budget_step import BudgetDeps, KnownBudgets
from streams.budgets import BudgetBook
from streams.control import ControlFeed
from streams.delivery_guards import install_delivery_guards
from streams.detect_agent import DetectDeps, register_detect_agent
from streams.detectors import DetectorConfig
from streams.idle_tick import TICK_HEADER, TICK_VALUE, IdleTicker
from streams.price_agent import PriceAgentDeps, register_price_agent
from streams.pricing import PriceCatalog, Pricer
from streams.rules import RuleBook
from streams.stall_watch import broker_probe
from streams.topics import PipelineTopics, declare_topics
from streams.window_step import WindowDeps

logger = logging.getLogger(__name__)


def create_app(settings: Settings, metrics: PipelineMetrics | None = None) -> faust.App:
    """Build the worker's Faust app. Nothing connects until the worker starts it."""
    k = settings.kafka
    # Faust creates its datadir without parents; the data directory may not exist yet.
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        settings.worker.app_id,
        broker=[f"kafka://{s.strip()}" for s in bootstrap_servers(settings).split(",")],
        store="memory://",
        datadir=str(settings.data_dir / "faust"),  # Faust's default is the working directory
        topic_partitions=k.partitions,
        topic_replication_factor=k.replication_factor,
        producer_acks=-1,
        # Not compressed: a priced table is ~150 bytes an event (text dictionary-encoded), and
        # every codec measured here cost the worker more than all its pricing (docs/performance.md).
        producer_compression_type=None,
        # Tansu: end offsets are right only when each batch holds one record (settings.py).
        producer_max_batch_size=1 if k.single_record_batches else 16384,
        broker_rebalance_timeout=k.rebalance_timeout_s,
        broker_session_timeout=max(10.0, k.rebalance_timeout_s * 2),
        broker_heartbeat_interval=1.0,
        consumer_auto_offset_reset="earliest",
        web_port=settings.worker.web_port,
        web_host=settings.worker.web_host,
        web_in_thread=False,
    )
    metrics = metrics or PipelineMetrics()
    topics = declare_topics(app, settings)
    pricer = Pricer(PriceCatalog())

    def use_rules(book: RuleBook) -> None:
        pricer.rules = book  # whole: a take in progress keeps the book it started with

    budgets = KnownBudgets()

    def use_budgets(book: BudgetBook) -> None:
        budgets.book = book

    feed = ControlFeed(settings, use_rules, use_budgets)
    # Changelog-backed: a restarted or rebalanced worker recovers each month's volume.
    # Values are JSON lists [total, partition, offset] (the app's default json serializer).
    volumes = app.Table("tier-volume", partitions=k.partitions, key_type=str)
    windows_table = app.Table("windows-open", partitions=k.partitions, key_type=str)
    ticker = _idle_ticker(app, settings, topics, windows_table) if settings.window.idle_s > 0 else None
    deps = PriceAgentDeps(
        codec=build_codec(settings),
        pricer=pricer,
        providers=allowed_providers(settings.custom_providers),
        metrics=metrics,
        batch_size=settings.worker.batch_size,
        batch_seconds=settings.worker.batch_seconds,
        volumes=volumes,
        rules_ready=feed.ready,
        windows=WindowDeps(
            config=settings.window,
            # Open windows and each partition's watermark (streams/window_step.py): a
            # restarted worker closes what its predecessor opened.
            windows=windows_table,
            topic=topics.windows,
            metrics=metrics,
        ),
        budgets=BudgetDeps(
            # Spend per series and period, and the thresholds reached (streams/budget_step.py).
            spend=app.Table("budget-spend", partitions=k.partitions, key_type=str),
            budgets=budgets,
            alerts=topics.alerts,
            metrics=metrics,
            retention_days=settings.budgets.retention_days,
        ),
        ticker=ticker,
    )
    register_price_agent(app, topics, deps)
    register_detect_agent(
        app,
        topics,
        DetectDeps(
            config=DetectorConfig.from_settings(settings.anomaly),
            window_s=settings.anomaly.window_s,
            states=app.Table("anomaly-state", partitions=k.partitions, key_type=str),
            metrics=metrics,
        ),
    )

    async def follow_control() -> None:
        await feed.run()

    app.task(follow_control)
    _record_consumer_lag(app, settings, metrics)
    _register_pages(app, metrics)
    install_delivery_guards(app, broker_probe(bootstrap_servers(settings)))
    return app


def _idle_ticker(app: faust.App, settings: Settings, topics: PipelineTopics, windows: Any) -> IdleTicker:
    """Ticks for this worker's idle usage partitions, checked four times per ``idle_s``."""
    usage = settings.kafka.usage_topic

    def watermark(partition: int) -> int | None:
        value = windows.get(f"{partition}|mark")  # streams/window_step.py
        return None if value is None else int(value)

    def assigned() -> list[int]:
        if app.rebalancing:
            return []
        return [tp.partition for tp in app.consumer.assignment() if tp.topic == usage]

    async def send(partition: int, event_time_ms: int) -> None:
        headers = [(TICK_HEADER, str(event_time_ms).encode())]
        await topics.usage.send(key=None, value=TICK_VALUE, partition=partition, headers=headers)

    ticker = IdleTicker(settings.window, watermark, assigned, send)

    @app.timer(interval=max(0.5, settings.window.idle_s / 4))  # type: ignore[untyped-decorator]
    async def idle_ticks() -> None:
        try:
            await ticker.tick()
        except Exception as exc:  # a timer that raises stops the worker; a tick is only an optimisation
            logger.warning("idle tick skipped: %s", exc)

    _ = idle_ticks
    return ticker


def _record_consumer_lag(app: faust.App, settings: Settings, metrics: PipelineMetrics) -> None:
    """``costops_consumer_lag`` of the source partitions this worker holds, every 5 s.

    Faust's consumer keeps the committed offsets it sought to or committed; it has no public
    accessor for them, so the private mapping is read here, and a Faust without it reports no
    lag rather than failing. Changelog partitions are never committed and are left out."""
    consumer: Any = app.consumer

    @app.timer(interval=5.0)  # type: ignore[untyped-decorator]
    async def consumer_lag() -> None:
        try:
            committed: Mapping[TP, int | None] = getattr(consumer, "_committed_offset", {})
            assigned = (
                [] if app.rebalancing else [tp for tp in consumer.assignment() if app.topics.acks_enabled_for(tp.topic)]
            )
            lags = partition_lags(assigned, consumer.highwater, committed.get)
        except Exception as exc:  # a timer that raises stops the worker; the lag is only a metric
            logger.debug("consumer lag not read: %s", exc)
            return
        metrics.set_consumer_lag(settings.worker.app_id, lags)

    _ = consumer_lag


def _register_pages(app: faust.App, metrics: PipelineMetrics) -> None:
    @app.page("/health")
    class Health(View):
        async def get(self, request: Request) -> Response:
            return self.json({"status": "healthy"})

    @app.page("/ready")
    class Ready(View):
        async def get(self, request: Request) -> Response:
            # Consuming: the group is joined and this worker owns partitions.
            assigned = len(app.consumer.assignment()) if not app.rebalancing else 0
            status = 200 if assigned else 503
            return self.json({"status": "ready" if assigned else "not_ready", "partitions": assigned}, status=status)

    @app.page("/metrics")
    class Metrics(View):
        async def get(self, request: Request) -> Response:
            return self.bytes(metrics.render(), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    _ = (Health, Ready, Metrics)


def run_worker(settings: Settings) -> Any:
    """Run the worker in this process until SIGINT/SIGTERM (the ``cost-ops worker`` command).

    The entrypoint has configured logging already (``configure_logging``): Faust must not
    replace it, or ``LOG_FORMAT=json`` and the records' role would be lost. Nor print its
    banner in JSON mode, where every line of output must be a JSON object.
    """
    from faust.worker import Worker

    app = create_app(settings)
    worker = Worker(app, loglevel=settings.log_level, override_logging=False, quiet=settings.log_format == "json")
    return worker.execute_from_commandline()
