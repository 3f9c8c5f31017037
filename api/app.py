"""``create_app(settings, role)``: the FastAPI application and its lifespan.

The lifespan builds every resource once and tears it down in reverse order: the ClickHouse
store (migrated), the Kafka producer (roles ``api``/``all``), the sink task (``sink``/``all``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial

import httpx
from brotli_asgi import BrotliMiddleware
from fastapi import Depends, FastAPI, Request, Response
from fastapi.middleware.cors import CORSMiddleware

from api.auth import Authenticator, permit_by_method
from api.body_limit import BodyLimitMiddleware
from api.bootstrap import bootstrap_access, jwt_secret
from api.context import ApiContext, Role
from api.errors import register_error_handlers
from api.rate_limit import RateDecision
from api.report_runner import ReportRunner
from api.routes import (
    admin,
    alerts,
    analytics,
    auth_routes,
    budgets,
    costs,
    dlq,
    docs,
    exports,
    pricing,
    pricing_ops,
    reports,
    system,
    usage,
    webhooks,
)
from api.spend_board import SpendBoard
from api.trace import TraceMiddleware
from llm_cost_ops.errors import PipelineError, UnavailableError
from llm_cost_ops.kafka import ensure_topics, sleep_until
from llm_cost_ops.metrics import PipelineMetrics
from llm_cost_ops.producer import UsageProducer
from llm_cost_ops.settings import Settings
from llm_cost_ops.wire import build_codec
from sinks.access_store import AccessStore
from sinks.budget_store import BudgetStore
from sinks.control_store import ControlStore
from sinks.report_store import ReportStore
from sinks.rollup import RollupRefresher
from sinks.sink import UsageSink
from sinks.store import ClickHouseStore
from sinks.webhook_store import WebhookStore
from sinks.webhooks import WebhookNotifier
from streams.control import ControlFeed, ControlPublisher

logger = logging.getLogger(__name__)


def create_app(settings: Settings, role: Role = "api") -> FastAPI:
    """Build the HTTP app for one role (see :data:`api.context.Role`)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        metrics = PipelineMetrics()
        registry_http = httpx.Client(timeout=10.0) if settings.kafka.schema_registry_url else None
        codec = build_codec(settings, registry_http)
        await ensure_topics(settings)
        store = await asyncio.to_thread(ClickHouseStore.open, settings)
        context = ApiContext(settings=settings, role=role, metrics=metrics, store=store)
        publisher: ControlPublisher | None = None
        publishing: asyncio.Task[None] | None = None
        notifying: asyncio.Task[None] | None = None
        following: list[asyncio.Task[None]] = []
        try:
            if role in ("api", "all"):
                control = context.control = await asyncio.to_thread(ControlStore.open, settings.control_db_url)
                access = AccessStore(control)
                await asyncio.to_thread(bootstrap_access, settings, access)
                authenticator = Authenticator(settings, access, await asyncio.to_thread(jwt_secret, settings))
                context.authenticator = app.state.authenticator = authenticator
                publisher = ControlPublisher(settings, control.snapshot, BudgetStore(control).snapshot)
                await publisher.start()
                context.control_changed = publisher.changed
                publishing = asyncio.create_task(publisher.run(context.stop), name="control-publisher")
                context.producer = UsageProducer(settings, codec)
                await context.producer.start()
                notifier = WebhookNotifier(settings, WebhookStore(control), metrics)
                notifying = asyncio.create_task(notifier.run(context.stop), name="webhooks")
                # Budgets (for hard limits) from the control topic, spend from the workers' table.
                feed = ControlFeed(settings, lambda _rules: None, context.limits.use, pricing=False)
                board = context.board = SpendBoard(settings)
                following = [
                    asyncio.create_task(feed.run(), name="control-feed"),
                    asyncio.create_task(board.run(context.stop), name="spend-board"),
                    asyncio.create_task(_record_key_use(authenticator, access, context.stop), name="key-use"),
                ]
                # Fails the reports a stopped process left unfinished, first thing.
                reporter = context.reporter = ReportRunner(context, ReportStore(control))
                following.append(asyncio.create_task(reporter.run(context.stop), name="reports"))
            if role in ("sink", "all"):
                context.sink = UsageSink(settings, store, metrics)
                context.sink_task = asyncio.create_task(context.sink.run(context.stop), name="sink")
                context.sink_task.add_done_callback(partial(_on_sink_exit, context))
                refresher = RollupRefresher(store)
                period = settings.sink.rollup_refresh_seconds
                following.append(asyncio.create_task(_refresh_rollup(refresher, period, context.stop), name="rollup"))
            app.state.context = context
            yield
        finally:
            context.stop.set()
            if context.sink_task is not None:
                await asyncio.gather(context.sink_task, return_exceptions=True)
            if context.producer is not None:
                await context.producer.stop()
            if publishing is not None:
                await asyncio.gather(publishing, return_exceptions=True)
            if notifying is not None:
                await asyncio.gather(notifying, return_exceptions=True)
            for task in following:
                task.cancel()
            await asyncio.gather(*following, return_exceptions=True)
            if context.reporter is not None:
                await context.reporter.close()
            if publisher is not None:
                await publisher.stop()
            if context.control is not None:
                await asyncio.to_thread(context.control.close)
            await asyncio.to_thread(store.close)
            if registry_http is not None:
                registry_http.close()

    public_docs = settings.api.public_docs
    app = FastAPI(
        title="LLM-CostOps API",
        version="0.1.0",
        description=API_DESCRIPTION,
        lifespan=lifespan,
        openapi_url="/openapi.json" if public_docs else None,
        docs_url="/docs" if public_docs else None,
        redoc_url=None,
    )
    register_error_handlers(app)
    app.include_router(system.router)
    if role in ("api", "all"):
        app.include_router(
            usage.router, dependencies=[Depends(permit_by_method("read:costs", "write:costs", "delete:costs"))]
        )
        for router, read, write in (
            (exports.router, "export:data", "export:data"),  # before costs: /export is not an event id
            (costs.router, "read:costs", "read:costs"),
            (analytics.router, "read:costs", "read:costs"),
            (pricing_ops.router, "read:pricing", "write:pricing"),  # before pricing: /missing is not a rule id
            (pricing.router, "read:pricing", "write:pricing"),
            (dlq.router, "admin:dlq", "admin:dlq"),
            (webhooks.router, "read:webhooks", "write:webhooks"),
            (budgets.router, "read:budgets", "write:budgets"),
            (reports.router, "read:reports", "write:reports"),
        ):
            app.include_router(router, dependencies=[Depends(permit_by_method(read, write))])
        app.include_router(alerts.router)  # permissions per route
        app.include_router(auth_routes.router)
        app.include_router(admin.router)
        if not public_docs:
            app.include_router(docs.router)
    app.middleware("http")(_observe)
    _add_http_middleware(app, settings)
    return app


API_DESCRIPTION = """What your LLM traffic costs, as it happens.

Every endpoint but `/health`, `/ready` and `/metrics` needs a key: `Authorization: Bearer sk_live_…`
or `X-API-Key: sk_live_…` (or a user's access token from `POST /api/v1/auth/login`). Keys and users
belong to one organization and see only its data; the `admin` role spans the deployment.
Errors have one shape: `{"error": {"code": "AUTH_001", "message": "…", "field_errors": {…}}}`.
"""


def _add_http_middleware(app: FastAPI, settings: Settings) -> None:
    """Outermost last: the trace id first (every answer and log line has it), then CORS answers
    preflights, then the size limit, then compression."""
    if settings.api.compression:
        app.add_middleware(BrotliMiddleware, minimum_size=1024, gzip_fallback=True)
    app.add_middleware(BodyLimitMiddleware, max_bytes=int(settings.api.max_request_mb * 1024 * 1024))
    if settings.api.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.api.cors_origins),
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type", "X-Request-ID", "traceparent"],
            expose_headers=[
                "X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "Retry-After", "X-Request-ID"
            ],
        )  # fmt: skip
    app.add_middleware(TraceMiddleware)


async def _record_key_use(authenticator: Authenticator, access: AccessStore, stop: asyncio.Event) -> None:
    """Write the keys' ``last_used_at`` every 30 s (one write per key, not per request)."""
    while True:
        await sleep_until(stop, 30.0)
        try:
            await asyncio.to_thread(access.touch_keys, authenticator.take_used())
        except UnavailableError as exc:
            logger.warning("could not record API key use: %s", exc.message)
        if stop.is_set():
            return


async def _refresh_rollup(refresher: RollupRefresher, period: float, stop: asyncio.Event) -> None:
    """Recompute the rollup's dirty hours every ``period`` seconds. A failure is logged and
    retried: the dirty hours are read from ``usage_costs`` meanwhile, so answers stay exact."""
    while not stop.is_set():
        try:
            await asyncio.to_thread(refresher.refresh)
        except PipelineError as exc:
            logger.warning("rollup refresh failed: %s", exc.message, extra={"operation": "rollup"})
        await sleep_until(stop, period)


async def _observe(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    started = time.perf_counter()
    response = await call_next(request)
    route = request.scope.get("route")
    path = getattr(route, "path", "unmatched")
    decision: RateDecision | None = getattr(request.state, "rate_limit", None)
    if decision is not None:
        response.headers.update(decision.headers())
    context: ApiContext | None = getattr(request.app.state, "context", None)
    if context is not None:
        context.metrics.http_requests.labels(request.method, path, str(response.status_code)).inc()
        context.metrics.http_seconds.labels(request.method, path).observe(time.perf_counter() - started)
    return response


def _on_sink_exit(context: ApiContext, task: asyncio.Task[None]) -> None:
    """A sink that dies must take its process down: a live API over a dead sink would accept
    events that never reach ClickHouse. SIGTERM shuts uvicorn down cleanly; ``cost-ops`` then
    exits non-zero (``context.fatal``) so the supervisor or orchestrator restarts it, and the
    new sink resumes from the last committed offsets."""
    if task.cancelled() or (exc := task.exception()) is None:
        return
    context.fatal = f"the sink stopped: {exc!r}"
    logger.critical(context.fatal, exc_info=exc)
    os.kill(os.getpid(), signal.SIGTERM)
