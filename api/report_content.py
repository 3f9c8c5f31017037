"""What each report type holds, as Arrow pages for :func:`api.export_writers.encode`.

Every type is a table, so one file format fits all: ``cost`` the cost records (as the export),
``usage`` totals grouped by provider and model (or ``group_by``), ``summary`` the
``costs/summary`` figures (one row for the total, then one per provider, model and other
currency), ``budget`` each budget with its spend now, ``audit`` the organization's audit
entries, ``forecast`` the daily cost forecast. Values are the API's JSON values (money as
10-place strings); nested ones (lists, objects) are JSON text in their cell.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
from pydantic import BaseModel

from api.budget_view import status
from api.context import ApiContext
from api.routes.alerts import _forecast
from schemas.auth import AuditQuery
from schemas.budget import BudgetStatus
from schemas.control import AuditEntry
from schemas.forecast import ForecastPoint, ForecastRequest
from schemas.query import AggregateParams, CostFilterParams
from schemas.report import Report, ReportFilters
from sinks.export_queries import CostExport

_AUDIT_PAGE = 1000


def report_pages(context: ApiContext, report: Report) -> tuple[Iterable[pa.Table], str]:
    """The report's pages and the name of its (first) sheet. Runs the queries: call in a thread."""
    filters = ReportFilters.model_validate(report.params.get("filters") or {}).cost_filters(report.organization_id)
    kind = report.report_type
    if kind == "cost":
        return CostExport(context.store, context.settings.api.export_page_rows).pages(filters, "text"), "costs"
    if kind == "usage":
        group_by = tuple(report.params.get("group_by") or ("provider", "model"))
        aggregate = context.queries.aggregate(filters, AggregateParams(group_by=group_by))
        columns = [*group_by, "currency", *_TOTALS]
        return [rows_table([g.model_dump(mode="json") for g in aggregate.data], columns)], "usage"
    if kind == "summary":
        return [_summary(context, filters)], "summary"
    if kind == "budget":
        return [_budgets(context, report.organization_id)], "budgets"
    if kind == "audit":
        return [_audit(context, report.organization_id, filters)], "audit"
    return [_forecast_table(context, report.organization_id, filters)], "forecast"


_TOTALS = ("total_cost", "request_count", "unpriced_requests", "total_tokens", "prompt_tokens", "completion_tokens")


def rows_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> pa.Table:
    """A table of ``columns`` from JSON-mode rows; lists and objects become JSON text."""
    return pa.table({c: pa.array([_flat(row.get(c)) for row in rows]) for c in columns})


def _flat(value: Any) -> Any:
    return json.dumps(value, separators=(",", ":")) if isinstance(value, list | dict) else value


def _fields(model: type[BaseModel]) -> list[str]:
    return list(model.model_fields)


_SUMMARY_COLUMNS = ("scope", "name", "currency", "total_cost", "requests", "unpriced_requests",
                    "avg_cost_per_request", "total_tokens")  # fmt: skip


def _summary(context: ApiContext, filters: CostFilterParams) -> pa.Table:
    s = context.queries.summary(filters).model_dump(mode="json")
    total = {"scope": "total", "name": None, "requests": s["total_requests"]}
    rows = [{**s, **total}]
    for scope, key in (("provider", "by_provider"), ("model", "by_model"), ("currency", "other_currencies")):
        rows += [{"scope": scope, **item} for item in s[key]]
    return rows_table(rows, _SUMMARY_COLUMNS)


def _budgets(context: ApiContext, organization_id: str | None) -> pa.Table:
    board = context.spend
    now = datetime.now(UTC)
    rows = [status(b, board, now).model_dump(mode="json") for b in context.budgets.all(organization_id)]
    return rows_table(rows, _fields(BudgetStatus))


def _audit(context: ApiContext, organization_id: str | None, filters: CostFilterParams) -> pa.Table:
    rows = [e.model_dump(mode="json") for e in _audit_entries(context, organization_id, filters)]
    return rows_table(rows, _fields(AuditEntry))


def _audit_entries(context: ApiContext, organization_id: str | None, filters: CostFilterParams) -> Iterator[AuditEntry]:
    before: int | None = None
    while True:
        page = context.access.audit(
            AuditQuery(
                organization_id=organization_id,
                since=filters.start,
                until=filters.end,
                cursor=before,
                limit=_AUDIT_PAGE,
            )
        )
        yield from page.data
        if page.next_cursor is None:
            return
        before = page.next_cursor


def _forecast_table(context: ApiContext, organization_id: str | None, filters: CostFilterParams) -> pa.Table:
    params = ForecastRequest(organization_id=organization_id, currency=filters.currency or "USD")
    forecast = _forecast(context, params, "cost")
    rows = [
        {**p.model_dump(mode="json"), "currency": forecast.currency, "model": forecast.model}
        for p in forecast.predictions
    ]
    return rows_table(rows, [*_fields(ForecastPoint), "currency", "model"])
