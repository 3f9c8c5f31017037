"""The cost, export and report routes served by a real uvicorn server in a thread, over a real
ClickHouse store and a control store on SQLite, with the app's own permissions and context."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from access_keys import admin_authenticator
from fastapi import Depends, FastAPI
from served import served

from api.auth import permit_by_method
from api.context import ApiContext
from api.errors import register_error_handlers
from api.report_runner import ReportRunner
from api.routes import costs, exports, reports
from api.spend_board import SpendBoard
from llm_cost_ops.metrics import PipelineMetrics
from llm_cost_ops.settings import Settings
from schemas.control import Actor
from sinks.access_store import AccessStore
from sinks.control_store import ControlStore
from sinks.report_store import ReportStore
from sinks.store import ClickHouseStore


@dataclass
class ServedApi:
    url: str
    admin_key: str
    context: ApiContext
    control: ControlStore

    def client(self, key: str | None = None, timeout: float = 60.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"X-API-Key": key or self.admin_key}, timeout=timeout)


def build_app(context: ApiContext) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        assert context.control is not None
        reporter = context.reporter = ReportRunner(context, ReportStore(context.control))
        sweeping = asyncio.create_task(reporter.run(context.stop))
        yield
        context.stop.set()
        await sweeping
        await reporter.close()

    app = FastAPI(lifespan=lifespan)
    register_error_handlers(app)
    for router, read, write in (
        (exports.router, "export:data", "export:data"),
        (costs.router, "read:costs", "read:costs"),
        (reports.router, "read:reports", "write:reports"),
    ):
        app.include_router(router, dependencies=[Depends(permit_by_method(read, write))])
    app.state.context = context
    return app


@contextmanager
def serve_api(store: ClickHouseStore, tmp_path: Path, **api: Any) -> Iterator[ServedApi]:
    settings = Settings(_env_file=None, data_dir=tmp_path / "data", api=api)  # type: ignore[call-arg]
    control = ControlStore.open(f"sqlite:///{tmp_path / 'control.db'}")
    context = ApiContext(settings=settings, role="api", metrics=PipelineMetrics(), store=store, control=control)
    context.board = SpendBoard(settings)  # budget spend; nothing follows the workers' table here
    app = build_app(context)
    authenticator, secret = admin_authenticator(control, settings)
    app.state.authenticator = context.authenticator = authenticator
    try:
        with served(app, lifespan="on", stop_timeout_s=30) as url:
            yield ServedApi(url=url, admin_key=secret, context=context, control=control)
    finally:
        control.close()


def tenant_key(api: ServedApi, organization_id: str, role: str) -> str:
    """A key of ``organization_id`` with ``role``."""
    access = AccessStore(api.control)
    access.ensure_organization(organization_id, organization_id, Actor("test"))
    return access.create_key(f"{role} of {organization_id}", organization_id, role, Actor("test")).key
