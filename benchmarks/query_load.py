"""``cost-ops bench-queries``: the query endpoints under concurrent load, base table vs rollup.

In one run, on a chDB store of its own in a temporary directory:

1. **load**: ``rows`` usage rows in one ``INSERT … SELECT … FROM numbers(rows)``, spread over
   12 organizations (skewed), 12 models of 4 providers, 5 projects per organization, 400 users,
   90 days; 2 % unpriced, 5 % without latency, one organization (``org-3``) billed in EUR;
2. **rollup**: every hour marked dirty and recomputed by :class:`RollupRefresher` (timed);
3. **agreement**: each endpoint answered once per mode, and the answers compared (all but
   the models' p95 latency, a sampled estimate in both modes);
4. **load per endpoint and mode**: ``concurrency`` clients call one endpoint for ``duration``
   seconds through the real FastAPI app (in-process ASGI, an organization's API key, the
   same store); p50/p99 latency and requests/s. The base-table mode is the same app with
   ``clickhouse.rollups`` off: the baseline of the same run.
"""

from __future__ import annotations

import asyncio
import platform
import secrets
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import clickhouse_connect
import httpx
from clickhouse_connect.driver.client import Client
from fastapi import Depends, FastAPI

from api.auth import Authenticator, permit_by_method
from api.errors import register_error_handlers
from api.routes import analytics, costs, usage
from llm_cost_ops.errors import PipelineError
from llm_cost_ops.settings import Settings
from schemas.auth import OrganizationInput
from schemas.control import Actor
from sinks.access_store import AccessStore
from sinks.control_store import ControlStore
from sinks.queries import CostQueries
from sinks.rollup import RollupRefresher
from sinks.store import ClickHouseStore

Progress = Callable[[str], None]
ORGANIZATIONS = 12
DAYS = 90
END = datetime(2026, 12, 1, tzinfo=UTC)
"""The data's last instant (fixed, so runs are comparable)."""
_MODELS = [
    ("openai", "gpt-4o", "0.0000025", "0.00001"),
    ("openai", "gpt-4o-mini", "0.00000015", "0.0000006"),
    ("openai", "o1", "0.000015", "0.00006"),
    ("openai", "gpt-4-turbo", "0.00001", "0.00003"),
    ("anthropic", "claude-3-5-sonnet-20241022", "0.000003", "0.000015"),
    ("anthropic", "claude-3-5-haiku-20241022", "0.0000008", "0.000004"),
    ("anthropic", "claude-3-opus-20240229", "0.000015", "0.000075"),
    ("google", "gemini-1.5-pro", "0.00000125", "0.000005"),
    ("google", "gemini-1.5-flash", "0.000000075", "0.0000003"),
    ("google", "gemini-2.0-flash", "0.0000001", "0.0000004"),
    ("mistral", "mistral-large-latest", "0.000002", "0.000006"),
    ("mistral", "mistral-small-latest", "0.0000002", "0.0000006"),
]


class QueryBenchmarkError(PipelineError):
    code = "BENCHMARK_ERROR"


def load_sql(table: str, rows: int) -> str:
    """One ``INSERT … SELECT`` of ``rows`` realistic usage rows (hash-spread, deterministic)."""
    providers = "[" + ", ".join(f"'{p}'" for p, _, _, _ in _MODELS) + "]"
    models = "[" + ", ".join(f"'{m}'" for _, m, _, _ in _MODELS) + "]"
    inputs = "[" + ", ".join(f"toDecimal128('{i}', 10)" for _, _, i, _ in _MODELS) + "]"
    outputs = "[" + ", ".join(f"toDecimal128('{o}', 10)" for _, _, _, o in _MODELS) + "]"
    span_ms = DAYS * 86_400_000
    start_ms = int((END - timedelta(days=DAYS)).timestamp() * 1000)
    return f"""
        INSERT INTO {table} (event_id, timestamp, provider, model, organization_id, project_id, user_id,
            prompt_tokens, completion_tokens, total_tokens, latency_ms, tags, metadata, pricing_status,
            input_cost, output_cost, total_cost, currency, price_source, unpriced_reason, ingested_at, priced_at,
            written_at)
        SELECT event_id, ts, {providers}[m], {models}[m], org, project, user, prompt, completion,
            prompt + completion, latency, tags, map('team', concat('team-', toString(h % 7))), status,
            if(priced, {inputs}[m] * prompt, NULL), if(priced, {outputs}[m] * completion, NULL),
            if(priced, {inputs}[m] * prompt + {outputs}[m] * completion, NULL),
            if(org = 'org-3', 'EUR', 'USD'), if(priced, 'catalog', NULL),
            if(priced, NULL, 'no price'), ts + toIntervalSecond(1), ts + toIntervalMillisecond(1500),
            ts + toIntervalMillisecond(1800)
        FROM (
            SELECT concat('evt-', toString(number)) AS event_id, cityHash64(number) AS h,
                fromUnixTimestamp64Milli(toInt64({start_ms} + (h % {span_ms})), 'UTC') AS ts,
                concat('org-', toString(toUInt8(floor(sqrt(bitShiftRight(h, 20) % 144))))) AS org,
                1 + (bitShiftRight(h, 8) % {len(_MODELS)}) AS m,
                if(bitShiftRight(h, 12) % 10 = 0, NULL,
                   concat(org, '-p', toString(bitShiftRight(h, 16) % 5))) AS project,
                concat('u-', toString(bitShiftRight(h, 24) % 400)) AS user,
                toUInt64(50 + bitShiftRight(h, 32) % 4000) AS prompt,
                toUInt64(10 + bitShiftRight(h, 40) % 800) AS completion,
                if(bitShiftRight(h, 48) % 20 = 0, NULL, toUInt64(80 + bitShiftRight(h, 50) % 6000)) AS latency,
                if(bitShiftRight(h, 56) % 3 = 0, ['prod', 'chat'], ['batch']) AS tags,
                bitShiftRight(h, 44) % 50 != 0 AS priced, if(priced, 'priced', 'unpriced') AS status
            FROM numbers({rows})
        )
    """


def load(store: ClickHouseStore, rows: int) -> None:
    store.command(load_sql(store.table("usage_costs"), rows))
    # What the sink does after writing: mark the rows' hours for the rollup.
    store.command(
        f"INSERT INTO {store.table('rollup_marks')} (organization_id, hour) "
        f"SELECT DISTINCT organization_id, toStartOfHour(timestamp) FROM {store.table('usage_costs')}"
    )


@dataclass
class BenchContext:
    """What the query routes read from ``app.state.context``."""

    store: ClickHouseStore
    settings: Settings

    @property
    def queries(self) -> CostQueries:
        return CostQueries(self.store, self.settings.clickhouse.rollups)


def build_app(store: ClickHouseStore, settings: Settings, authenticator: Authenticator) -> FastAPI:
    app = FastAPI()
    register_error_handlers(app)
    reading = [Depends(permit_by_method("read:costs", "write:costs"))]
    for module in (usage, costs, analytics):
        app.include_router(module.router, dependencies=reading)
    app.state.context = BenchContext(store, settings)
    app.state.authenticator = authenticator
    return app


def endpoints() -> dict[str, tuple[str, dict[str, str]]]:
    """The requests measured: an organization's last 30 days (whole days)."""
    window = {"start_date": (END - timedelta(days=30)).date().isoformat(), "end_date": END.date().isoformat()}
    return {
        "costs list page": ("/api/v1/costs", {**window, "per_page": "50"}),
        "costs/summary": ("/api/v1/costs/summary", window),
        "costs/aggregate provider+model per day": (
            "/api/v1/costs/aggregate",
            {**window, "group_by": "provider,model", "granularity": "day"},
        ),
        "analytics/models": ("/api/v1/analytics/models", window),
        "costs/trends": ("/api/v1/costs/trends", {**window, "granularity": "day"}),
        "usage/stats": ("/api/v1/usage/stats", window),
    }


def comparable(name: str, answer: Any) -> Any:
    """An answer without what may differ between modes: the models' sampled p95 latency."""
    if name == "analytics/models":
        return [{k: v for k, v in row.items() if k != "p95_latency_ms"} for row in answer["data"]]
    return answer


async def _measure(
    client: httpx.AsyncClient, path: str, params: dict[str, str], keys: list[str], concurrency: int, duration: float
) -> dict[str, Any]:
    latencies: list[float] = []
    deadline = time.perf_counter() + duration

    async def worker(index: int) -> None:
        turn = index
        while time.perf_counter() < deadline:
            key = keys[turn % len(keys)]
            turn += 1
            started = time.perf_counter()
            response = await client.get(path, params=params, headers={"X-API-Key": key})
            if response.status_code != 200:
                raise QueryBenchmarkError(f"{path} answered {response.status_code}: {response.text[:200]}")
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    elapsed = time.perf_counter() - started
    ordered = sorted(latencies)
    return {
        "requests": len(ordered),
        "requests_per_s": round(len(ordered) / elapsed, 2),
        "p50_ms": round(statistics.median(ordered) * 1000, 2),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 2),
    }


async def _run(
    apps: dict[str, FastAPI], keys: list[str], concurrency: int, duration: float, progress: Progress
) -> tuple[dict[str, Any], dict[str, bool]]:
    clients = {
        mode: httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench", timeout=600)
        for mode, app in apps.items()
    }
    results: dict[str, Any] = {}
    agree: dict[str, bool] = {}
    try:
        for name, (path, params) in endpoints().items():
            seen = []
            for client in clients.values():
                response = await client.get(path, params=params, headers={"X-API-Key": keys[0]})
                if response.status_code != 200:
                    raise QueryBenchmarkError(f"{path} answered {response.status_code}: {response.text[:200]}")
                seen.append(comparable(name, response.json()))
            agree[name] = all(answer == seen[0] for answer in seen)
            for mode, client in clients.items():
                progress(f"{name} ({mode}): {concurrency} clients for {duration:g} s")
                figures = await _measure(client, path, params, keys, concurrency, duration)
                results.setdefault(name, {})[mode] = figures
                progress(f"  p50 {figures['p50_ms']} ms, p99 {figures['p99_ms']} ms, {figures['requests_per_s']} req/s")
    finally:
        for client in clients.values():
            await client.aclose()
    return results, agree


def run_query_benchmark(
    rows: int,
    concurrency: int,
    duration: float,
    progress: Progress,
    settings: Settings | None = None,
    client: Client | None = None,
    database: str = "costops",
) -> dict[str, Any]:
    """Load, roll up, check the modes agree, then measure every endpoint in both modes.

    ``client``: a chDB client to use (and leave open) instead of an engine in a temporary
    directory; chDB serves one data path per process, so a test passes its session's, with a
    ``database`` of its own."""
    # Rate limits off: the load measures queries, not the limiter.
    base_settings = settings or Settings(
        _env_file=None,  # type: ignore[call-arg]
        api={"rate_limit_per_second": 1e9, "rate_limit_burst": 1_000_000_000},  # type: ignore[arg-type]
    )
    with tempfile.TemporaryDirectory(prefix="costops-bench-queries-") as data_dir:
        owned = client is None
        engine = client or clickhouse_connect.get_client(interface="chdb", path=str(Path(data_dir) / "chdb"))
        control = ControlStore.open(f"sqlite:///{Path(data_dir) / 'control.db'}")
        store = ClickHouseStore(engine, database)
        try:
            store.migrate()
            progress(f"loading {rows:,} rows")
            started = time.perf_counter()
            load(store, rows)
            load_s = time.perf_counter() - started
            progress(f"loaded in {load_s:.1f} s; computing the hourly rollup")
            started = time.perf_counter()
            hours = RollupRefresher(store, max_hours=2_000).refresh()
            rollup_s = time.perf_counter() - started
            rollup_rows = store.query(f"SELECT count() FROM {store.table('usage_costs_hourly')} FINAL")[0][0]
            progress(f"rollup: {hours:,} organization-hours, {rollup_rows:,} rows, in {rollup_s:.1f} s")
            access = AccessStore(control)
            actor = Actor("bench")
            keys = []
            for org in ("org-11", "org-10", "org-9", "org-8"):  # the largest organizations
                access.create_organization(OrganizationInput(id=org, name=org), actor)
                keys.append(access.create_key(f"bench {org}", org, "analyst", actor).key)
            authenticator = Authenticator(base_settings, access, secrets.token_urlsafe(32))
            apps = {}
            for mode, rollups in (("base", False), ("rollup", True)):
                mode_settings = base_settings.model_copy(
                    update={"clickhouse": base_settings.clickhouse.model_copy(update={"rollups": rollups})}
                )
                apps[mode] = build_app(store, mode_settings, authenticator)
            results, agree = asyncio.run(_run(apps, keys, concurrency, duration, progress))
        finally:
            control.close()
            if owned:
                store.close()
            else:
                store.command(f"DROP DATABASE IF EXISTS {database}")
    return {
        "benchmark": "query endpoints, base table vs hourly rollup",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cores": _cores(), "python": platform.python_version()},
        "rows": rows,
        "organizations": ORGANIZATIONS,
        "days": DAYS,
        "concurrency": concurrency,
        "duration_s_per_endpoint_and_mode": duration,
        "load_s": round(load_s, 2),
        "rollup_build_s": round(rollup_s, 2),
        "rollup_rows": rollup_rows,
        "answers_agree": agree,
        "endpoints": results,
    }


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0))


def table(result: dict[str, Any]) -> str:
    """The human summary: one line per endpoint, both modes side by side."""
    lines = [
        f"{result['rows']:,} rows, {result['concurrency']} clients, {result['duration_s_per_endpoint_and_mode']:g} s "
        f"per endpoint and mode; rollup {result['rollup_rows']:,} rows built in {result['rollup_build_s']} s",
        f"{'endpoint':40} {'base p50/p99 ms':>20} {'req/s':>8} {'rollup p50/p99 ms':>20} {'req/s':>8}  agree",
    ]
    for name, modes in result["endpoints"].items():
        base, rolled = modes["base"], modes["rollup"]
        lines.append(
            f"{name:40} {base['p50_ms']:>9,.1f}/{base['p99_ms']:<10,.1f} {base['requests_per_s']:>8,.1f} "
            f"{rolled['p50_ms']:>9,.1f}/{rolled['p99_ms']:<10,.1f} {rolled['requests_per_s']:>8,.1f}  "
            f"{result['answers_agree'][name]}"
        )
    return "\n".join(lines)
