"""Liveness, readiness and metrics."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from api.deps import ContextDep
from llm_cost_ops.metrics import CONTENT_TYPE_LATEST

router = APIRouter(tags=["system"])


@router.get("/health")
def health() -> dict[str, str]:
    """The process is up."""
    return {"status": "healthy"}


@router.get("/ready")
async def ready(context: ContextDep) -> JSONResponse:
    """Broker and ClickHouse reachable (and, where this process runs the sink, the sink consuming)."""
    checks: dict[str, bool] = {"clickhouse": await asyncio.to_thread(context.store.ping)}
    if context.producer is not None:
        checks["kafka"] = await context.producer.reachable()
    if context.role in ("sink", "all"):
        task = context.sink_task
        sink = context.sink
        checks["sink"] = (
            sink is not None and sink.ready.is_set() and sink.healthy and task is not None and not task.done()
        )
    ok = all(checks.values())
    return JSONResponse({"status": "ready" if ok else "not_ready", "checks": checks}, status_code=200 if ok else 503)


@router.get("/metrics")
def metrics(context: ContextDep) -> Response:
    return Response(context.metrics.render(), media_type=CONTENT_TYPE_LATEST)
