"""``/api/v1/reports`` on a real engine (chDB) and control store (SQLite), served by uvicorn:
every type in every format from pending to completed, download, list, delete (audited),
tenant isolation, the size cap, and reports a stopped process left unfinished."""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import openpyxl
import pytest
from served_api import ServedApi, serve_api, tenant_key
from test_cost_exports import insert_rows, mark_rollup_hours

from schemas.auth import AuditQuery
from schemas.budget import BudgetInput
from schemas.control import Actor
from schemas.report import ReportRequest
from sinks.access_store import AccessStore
from sinks.budget_store import BudgetStore
from sinks.report_store import ReportStore
from sinks.store import ClickHouseStore

TYPES = ("cost", "usage", "forecast", "audit", "budget", "summary")


def insert_daily(store: ClickHouseStore, days: int, organization_id: str = "org-a") -> None:
    """One event a day for ``days`` days from 2025-02-01 (a forecast needs a history)."""
    store.client.command(
        f"""
        INSERT INTO {store.table("usage_costs")} (event_id, timestamp, provider, model, organization_id,
            prompt_tokens, completion_tokens, total_tokens, cached_tokens, reasoning_tokens, tags, metadata,
            pricing_status, input_cost, output_cost, total_cost, currency, ingested_at, priced_at)
        SELECT concat('day-', toString(number)), toDateTime64('2025-02-01 12:00:00', 3, 'UTC') + toIntervalDay(number),
            'anthropic', 'claude-3-5-sonnet', '{organization_id}', 100, 10, 110, 0, 0, [], map(), 'priced',
            toDecimal128('1.5', 10), toDecimal128('0.25', 10),
            toDecimal128('1.75', 10) + toDecimal128(number, 10) / 100,
            'USD', now64(3), now64(3)
        FROM numbers({days})
        """
    )
    mark_rollup_hours(store)


@pytest.fixture
def api(store: ClickHouseStore, tmp_path: Path) -> Iterator[ServedApi]:
    # Sums over 10^18 overflow the API's 28-digit Decimal context (costs/summary): smaller amounts.
    insert_rows(store, 30, output_cost="1.2345678901")  # org-a and org-b, 2025-01-01
    insert_daily(store, 20)
    with serve_api(store, tmp_path, export_page_rows=4) as served:
        BudgetStore(served.control).create(
            BudgetInput(name="monthly", organization_id="org-a", amount=Decimal("100.5")), Actor("test")
        )
        yield served


def create(client: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/api/v1/reports", json=body)
    assert response.status_code == 202, response.text
    report: dict[str, Any] = response.json()
    assert report["status"] == "pending"
    return report


def finished(client: httpx.Client, report_id: str, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        report: dict[str, Any] = client.get(f"/api/v1/reports/{report_id}").json()
        if report["status"] in ("completed", "failed"):
            return report
        assert time.monotonic() < deadline, f"report still {report['status']}"
        time.sleep(0.05)


def rows_of(response: httpx.Response, fmt: str) -> list[dict[str, Any]]:
    if fmt == "json":
        data: list[dict[str, Any]] = response.json()
        return data
    if fmt == "csv":
        return list(csv.DictReader(io.StringIO(response.text)))
    book = openpyxl.load_workbook(io.BytesIO(response.content), read_only=True)
    cells = list(book.worksheets[0].iter_rows(values_only=True))
    book.close()
    return [dict(zip(cells[0], row, strict=True)) for row in cells[1:]]


MEDIA = {"csv": "text/csv", "json": "application/json", "xlsx": "application/vnd.openxmlformats"}


@pytest.mark.parametrize("fmt", ["json", "csv", "xlsx"])
def test_each_type_from_pending_to_download_and_delete(api: ServedApi, fmt: str) -> None:
    key = tenant_key(api, "org-a", "analyst")
    with api.client(key) as client:
        filters = {"start_date": "2025-01-01", "end_date": "2025-03-31"}
        # The dates filter the audit entries' own time too: those are from today.
        created = {
            kind: create(client, {"report_type": kind, "format": fmt, "filters": {} if kind == "audit" else filters})
            for kind in TYPES
        }
        contents: dict[str, list[dict[str, Any]]] = {}
        for kind, report in created.items():
            done = finished(client, report["id"])
            assert done["status"] == "completed", done
            assert (done["organization_id"], done["report_type"], done["format"]) == ("org-a", kind, fmt)
            assert done["created_by"].startswith("key:") and done["completed_at"] is not None
            assert done["params"]["filters"]["start_date"] == (None if kind == "audit" else "2025-01-01")
            response = client.get(f"/api/v1/reports/{report['id']}/download")
            assert response.status_code == 200
            assert response.headers["content-type"].startswith(MEDIA[fmt])
            assert response.headers["content-disposition"] == (
                f"attachment; filename={kind}-report-{report['id']}.{fmt}"
            )
            assert len(response.content) == done["size"]
            contents[kind] = rows_of(response, fmt)
            assert len(contents[kind]) == done["row_count"], kind

        costs = contents["cost"]
        assert len(costs) == 15 + 20 and {r["organization_id"] for r in costs} == {"org-a"}
        expected = client.get("/api/v1/costs/export", params={"format": "json", **filters})
        if fmt != "csv":  # CSV reads nulls back as ""
            assert costs == expected.json()  # analysts hold export:data
        usage = {(r["provider"], r["model"]): r for r in contents["usage"]}
        assert usage[("anthropic", "claude-3-5-sonnet")]["request_count"] in (20, "20")
        assert Decimal(usage[("anthropic", "claude-3-5-sonnet")]["total_cost"]) == Decimal("36.9")
        summary = {(r["scope"], r["name"]): r for r in contents["summary"]}
        total = client.get("/api/v1/costs/summary", params=filters).json()
        assert summary[("total", None if fmt != "csv" else "")]["total_cost"] == total["total_cost"]
        assert Decimal(summary[("provider", "anthropic")]["total_cost"]) == Decimal("36.9000000000")
        [budget] = contents["budget"]
        # As GET /api/v1/budgets shows it; lists are JSON text in their cell.
        assert (budget["name"], budget["amount"], budget["spend"]) == ("monthly", "100.5", "0")
        assert budget["thresholds"] == '["50","80","100"]'
        audit = contents["audit"]
        assert audit and {r["entity_type"] for r in audit} >= {"report"}
        assert all(r["organization_id"] == "org-a" for r in audit)
        forecast = contents["forecast"]
        assert len(forecast) == 30 and all(Decimal(r["value"]) > 0 for r in forecast)

        listed = client.get("/api/v1/reports").json()["data"]
        assert {r["id"] for r in listed} == {r["id"] for r in created.values()}
        gone = created["cost"]["id"]
        deleted = client.delete(f"/api/v1/reports/{gone}")
        assert deleted.status_code == 200 and deleted.json()["id"] == gone
        assert client.get(f"/api/v1/reports/{gone}").status_code == 404
        assert client.get(f"/api/v1/reports/{gone}/download").status_code == 404
    entries = AccessStore(api.control).audit(AuditQuery(entity_id=gone)).data
    assert [(e.action, e.entity_type, e.organization_id) for e in entries] == [
        ("delete", "report", "org-a"),
        ("create", "report", "org-a"),
    ]
    assert entries[0].actor.startswith("key:")


def test_usage_group_by_and_validation(api: ServedApi) -> None:
    with api.client() as client:
        report = create(
            client,
            {"report_type": "usage", "format": "json", "organization_id": "org-a", "group_by": ["project_id"]},
        )
        done = finished(client, report["id"])
        rows = client.get(f"/api/v1/reports/{report['id']}/download").json()
        assert done["row_count"] == len(rows) and list(rows[0])[:2] == ["project_id", "currency"]
        for body, field in (
            ({"report_type": "weekly"}, "report_type"),
            ({"report_type": "cost", "format": "pdf"}, "format"),
            ({"report_type": "cost", "filters": {"start_date": "yesterday"}}, "filters.start_date"),
            ({"report_type": "cost", "group_by": ["provider"]}, "group_by"),
            ({"report_type": "usage", "group_by": ["colour"]}, "group_by"),
        ):
            answer = client.post("/api/v1/reports", json=body)
            assert answer.status_code == 422, body
            assert any(k.startswith(field) for k in answer.json()["error"]["field_errors"]), answer.json()


def test_reports_are_isolated_by_organization(api: ServedApi) -> None:
    key_a = tenant_key(api, "org-a", "analyst")
    with api.client() as admin:
        theirs = create(admin, {"report_type": "cost", "format": "json", "organization_id": "org-b"})
        everyone = create(admin, {"report_type": "summary", "format": "json"})
        assert finished(admin, theirs["id"])["status"] == "completed"
        rows = admin.get(f"/api/v1/reports/{theirs['id']}/download").json()
        assert len(rows) == 15 and {r["organization_id"] for r in rows} == {"org-b"}
    with api.client(key_a) as client:
        denied = client.post("/api/v1/reports", json={"report_type": "cost", "organization_id": "org-b"})
        assert denied.status_code == 403
        for report in (theirs, everyone):
            assert client.get(f"/api/v1/reports/{report['id']}").status_code == 404
            assert client.get(f"/api/v1/reports/{report['id']}/download").status_code == 404
            assert client.delete(f"/api/v1/reports/{report['id']}").status_code == 404
        mine = create(client, {"report_type": "cost", "format": "json"})
        assert [r["id"] for r in client.get("/api/v1/reports").json()["data"]] == [mine["id"]]
    with api.client(tenant_key(api, "org-a", "viewer")) as viewer:  # read:reports only
        assert viewer.get("/api/v1/reports").status_code == 200
        assert viewer.post("/api/v1/reports", json={"report_type": "cost"}).status_code == 403
        assert viewer.delete(f"/api/v1/reports/{mine['id']}").status_code == 403


def test_download_before_completion_is_a_conflict_and_abandoned_reports_fail(
    store: ClickHouseStore, tmp_path: Path
) -> None:
    with serve_api(store, tmp_path, report_stale_s=0.5) as api, api.client() as client:
        # As a process that stopped before generating it would leave it: pending, never submitted.
        request = ReportRequest(report_type="cost")
        report = ReportStore(api.control).create(request, "default", Actor("crashed process"))
        answer = client.get(f"/api/v1/reports/{report.id}/download")
        assert answer.status_code == 409
        assert answer.json()["error"]["code"] == "CONFLICT" and "pending" in answer.json()["error"]["message"]
        done = finished(client, report.id, timeout=10)
        assert done["status"] == "failed" and "stopped" in done["error"]
        assert client.get(f"/api/v1/reports/{report.id}/download").status_code == 409
        # A live report is confirmed by its process and is not failed by the sweep.
        insert_rows(store, 10)
        live = create(client, {"report_type": "cost", "format": "xlsx"})
        assert finished(client, live["id"])["status"] == "completed"


def test_a_report_over_the_size_cap_fails_saying_so(store: ClickHouseStore, tmp_path: Path) -> None:
    insert_rows(store, 200)
    with serve_api(store, tmp_path, max_report_mb=0.01) as api, api.client() as client:
        report = create(client, {"report_type": "cost", "format": "csv"})
        done = finished(client, report["id"])
        assert done["status"] == "failed" and "max_report_mb" in done["error"] and done["size"] is None
        answer = client.get(f"/api/v1/reports/{report['id']}/download")
        assert answer.status_code == 409 and "max_report_mb" in answer.json()["error"]["message"]
        assert json.loads(answer.text)["error"]["code"] == "CONFLICT"
