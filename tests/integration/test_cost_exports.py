"""``GET /api/v1/costs/export`` on a real engine (chDB): every format reads back equal to the
JSON export (Decimals compared exactly), tenant isolation, and constant memory over a million
rows served by a real uvicorn server."""

from __future__ import annotations

import csv
import gc
import io
import json
import threading
import time
import tracemalloc
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import openpyxl
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from served_api import ServedApi, serve_api, tenant_key

from schemas.query import CostFilterParams
from sinks.export_queries import EXPORT_COLUMNS, MONEY_COLUMNS, CostExport
from sinks.store import ClickHouseStore

INTS = {"prompt_tokens", "completion_tokens", "total_tokens", "cached_tokens", "cache_write_tokens", "reasoning_tokens"}


def insert_rows(
    store: ClickHouseStore,
    rows: int,
    organizations: tuple[str, ...] = ("org-a", "org-b"),
    output_cost: str = "12345678901234567890.1234567891",
) -> None:
    """``rows`` priced events spread over the organizations, two a second from 2025-01-01,
    with awkward money (1E-10, by default 20 integer digits), nulls and text that needs quoting."""
    orgs = "[" + ", ".join(f"'{o}'" for o in organizations) + "]"
    store.client.command(
        f"""
        INSERT INTO {store.table("usage_costs")} (event_id, timestamp, provider, model, organization_id, project_id,
            user_id, prompt_tokens, completion_tokens, total_tokens, cached_tokens, reasoning_tokens, tags, metadata,
            pricing_status, input_cost, cached_cost, output_cost, total_cost, currency, price_source,
            unpriced_reason, ingested_at, priced_at)
        SELECT concat('evt-', leftPad(toString(number), 8, '0')),
            toDateTime64('2025-01-01 00:00:00', 3, 'UTC') + toIntervalMillisecond(intDiv(number, 2) * 1001),
            'openai', if(number % 3 = 0, 'gpt-4o', 'model "with", quotes'),
            {orgs}[number % {len(organizations)} + 1],
            if(number % 4 = 0, NULL, concat('proj-', toString(number % 7))),
            if(number % 5 = 0, '', 'user-1'),
            1000 + number, 200, 1200 + number, 0, 0, [], map(), 'priced',
            toDecimal128(number, 10) / 1000000, if(number % 2 = 0, NULL, toDecimal128('0.0000000001', 10)),
            toDecimal128('{output_cost}', 10),
            toDecimal128('{output_cost}', 10) + toDecimal128(number, 10) / 1000000,
            'USD', if(number % 6 = 0, NULL, 'catalog'), if(number % 9 = 0, 'line one\nline two', NULL),
            now64(3), now64(3)
        FROM numbers({rows})
        """
    )
    mark_rollup_hours(store)


def mark_rollup_hours(store: ClickHouseStore) -> None:
    """Mark every hour of the rows written here dirty, as every writer of ``usage_costs`` must
    (the rollups otherwise read those hours as clean, and empty)."""
    store.client.command(
        f"INSERT INTO {store.table('rollup_marks')} (organization_id, hour) "
        f"SELECT DISTINCT organization_id, toStartOfHour(timestamp) FROM {store.table('usage_costs')}"
    )


@pytest.fixture
def api(store: ClickHouseStore, tmp_path: Path) -> Iterator[ServedApi]:
    with serve_api(store, tmp_path, export_page_rows=7) as served:
        yield served


def export(client: TestClient | httpx.Client, fmt: str, **params: Any) -> httpx.Response:
    response = client.get("/api/v1/costs/export", params={"format": fmt, **params})
    assert response.status_code == 200, response.text
    return response


def test_every_format_reads_back_equal_to_json(store: ClickHouseStore, api: ServedApi) -> None:
    insert_rows(store, 40)
    params = {"start_date": "2025-01-01", "end_date": "2025-01-31"}
    with api.client() as client:
        response = export(client, "json", **params)
        expected: list[dict[str, Any]] = json.loads(response.text)
        assert response.headers["x-total-count"] == "40"
        assert response.headers["content-disposition"] == "attachment; filename=costs-2025-01-01-2025-01-31.json"
        assert len(expected) == 40 and len({r["id"] for r in expected}) == 40  # pages of 7: none lost, none twice
        assert list(expected[0]) == list(EXPORT_COLUMNS)
        by_id = {r["id"]: r for r in expected}
        first = by_id["evt-00000000"]
        assert first["total_cost"] == "12345678901234567890.1234567891"
        assert first["input_cost"] == "0.0000000000" and first["cached_cost"] is None
        assert by_id["evt-00000001"]["cached_cost"] == "0.0000000001"
        assert by_id["evt-00000001"]["total_cost"] == "12345678901234567890.1234577891"
        assert first["timestamp"] == by_id["evt-00000001"]["timestamp"] == "2025-01-01T00:00:00.000Z"
        assert by_id["evt-00000003"]["timestamp"] == "2025-01-01T00:00:01.001Z"
        # Two events share each timestamp: organization then id break the tie, across pages too.
        assert [r["id"] for r in expected[-2:]] == ["evt-00000000", "evt-00000001"]
        # Newest first, as GET /api/v1/costs lists them.
        listed = client.get("/api/v1/costs", params={**params, "per_page": 40}).json()["data"]
        assert [r["id"] for r in listed] == [r["id"] for r in expected]
        assert all(Decimal(a["total_cost"]) == Decimal(b["total_cost"]) for a, b in zip(listed, expected, strict=True))

        jsonl = export(client, "jsonl", **params).text
        assert [json.loads(line) for line in jsonl.splitlines()] == expected

        # CSV: text only, where a null and an empty string both read back as "".
        text = export(client, "csv", **params).text
        rows = list(csv.DictReader(io.StringIO(text)))
        as_text = [{k: "" if v is None else str(v) for k, v in r.items()} for r in expected]
        assert rows == as_text

        data = export(client, "parquet", **params).content
        table = pq.read_table(io.BytesIO(data))
        assert str(table.schema.field("total_cost").type) == "decimal128(38, 10)"
        assert table.num_rows == 40
        for got, want in zip(table.to_pylist(), expected, strict=True):
            for column in EXPORT_COLUMNS:
                value = got[column]
                if column in MONEY_COLUMNS:
                    assert value == (None if want[column] is None else Decimal(want[column])), column
                    assert value is None or value.as_tuple().exponent == -10
                elif column == "timestamp":
                    assert value.isoformat(timespec="milliseconds").replace("+00:00", "Z") == want[column]
                else:
                    assert value == want[column], column

        book = openpyxl.load_workbook(io.BytesIO(export(client, "xlsx", **params).content), read_only=True)
        sheet = book["costs"]
        cells = list(sheet.iter_rows(values_only=True))
        assert list(cells[0]) == list(EXPORT_COLUMNS)
        assert [dict(zip(EXPORT_COLUMNS, row, strict=True)) for row in cells[1:]] == expected
        book.close()


def test_empty_export_has_header_and_valid_documents(api: ServedApi) -> None:
    with api.client() as client:
        assert json.loads(export(client, "json").text) == []
        assert export(client, "jsonl").text == ""
        assert export(client, "csv").text.splitlines() == [",".join(f'"{c}"' for c in EXPORT_COLUMNS)]
        assert pq.read_table(io.BytesIO(export(client, "parquet").content)).column_names == list(EXPORT_COLUMNS)
        book = openpyxl.load_workbook(io.BytesIO(export(client, "xlsx").content), read_only=True)
        assert [list(r) for r in book["costs"].iter_rows(values_only=True)] == [list(EXPORT_COLUMNS)]
        book.close()
        bad = client.get("/api/v1/costs/export", params={"format": "pdf"})
        assert bad.status_code == 422 and "format" in bad.json()["error"]["field_errors"]


def test_export_is_scoped_to_the_callers_organization(store: ClickHouseStore, api: ServedApi) -> None:
    insert_rows(store, 20)
    key_a = tenant_key(api, "org-a", "analyst")
    with api.client(key_a) as client:
        denied = client.get("/api/v1/costs/export", params={"format": "json", "organization_id": "org-b"})
        assert denied.status_code == 403
        assert denied.json()["error"]["field_errors"]["organization_id"].startswith("must be org-a")
        rows = json.loads(export(client, "json").text)
        assert len(rows) == 10 and {r["organization_id"] for r in rows} == {"org-a"}
        assert json.loads(export(client, "json", organization_id="org-a").text) == rows
    with api.client(tenant_key(api, "org-a", "viewer")) as client:  # no export:data
        assert client.get("/api/v1/costs/export").status_code == 403
    with api.client() as admin:
        assert len(json.loads(export(admin, "json").text)) == 20


ROWS = 1_000_000


@pytest.mark.parametrize(("fmt", "traced"), [("csv", True), ("jsonl", False)])
def test_a_million_rows_stream_in_constant_memory(
    store: ClickHouseStore, tmp_path: Path, fmt: str, traced: bool
) -> None:
    """A million rows (about 240 MB of CSV, 610 MB of JSON Lines) through HTTP: memory grows by
    a few pages, not by the data; other queries run meanwhile. Python allocations are traced for
    CSV only (tracing makes the per-row JSON encoding several times slower)."""
    insert_rows(store, ROWS, ("org-a",))
    with serve_api(store, tmp_path) as served, served.client() as client:
        # The engine's first scan of the table takes its working memory (about 300 MB here, the
        # same for one page as for every page): measure the export's growth beyond it.
        next(iter(CostExport(store).pages(CostFilterParams())))
        gc.collect()
        rss_before = _reset_peak_rss()
        if traced:
            tracemalloc.start()
        started = time.monotonic()
        size = lines = 0
        interleaved: list[float] = []

        def other_query() -> None:
            begun = time.monotonic()
            assert store.query("SELECT 1") == [(1,)]
            interleaved.append(time.monotonic() - begun)

        with client.stream("GET", "/api/v1/costs/export", params={"format": fmt}) as response:
            assert response.status_code == 200
            assert response.headers["x-total-count"] == str(ROWS)
            for chunk in response.iter_bytes():
                size += len(chunk)
                lines += chunk.count(b"\n")
                if len(interleaved) < 3 and size > 50_000_000 * (len(interleaved) + 1):
                    thread = threading.Thread(target=other_query)
                    thread.start()
                    thread.join()
        peak = tracemalloc.get_traced_memory()[1] if traced else 0
        tracemalloc.stop()
        rss_growth = _status_kb("VmHWM") * 1024 - rss_before
        elapsed = time.monotonic() - started
    print(
        f"\nexported {ROWS:,} rows, {size / 1e6:.0f} MB of {fmt} in {elapsed:.1f} s; Python peak "
        f"{f'{peak / 1e6:.1f} MB' if traced else 'not traced'}, peak RSS growth {rss_growth / 1e6:.0f} MB "
        f"(engine included); other queries waited at most {max(interleaved) * 1000:.0f} ms"
    )
    if fmt == "csv":
        assert lines == ROWS + 1 + ROWS // 9 + (1 if ROWS % 9 else 0)  # header, rows, the embedded line breaks
        assert size > 200_000_000
        assert peak < size / 4, f"peak {peak / 1e6:.0f} MB of Python allocations for {size / 1e6:.0f} MB exported"
    else:
        assert lines == ROWS and size > 500_000_000
    # RSS also holds the engine's own buffers and the allocators' free lists: a coarse bound,
    # far below what holding the rows would take (the file, or the Arrow pages, ~2x a CSV).
    assert rss_growth < min(size * 3 / 4, 200_000_000), f"peak RSS grew by {rss_growth / 1e6:.0f} MB"
    assert len(interleaved) == 3 and max(interleaved) < 5.0  # a page, not the whole export, holds the store


def _status_kb(name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {name} in /proc/self/status")


def _reset_peak_rss() -> int:
    """Reset the process's peak resident size (VmHWM) to the current one; returns it in bytes."""
    Path("/proc/self/clear_refs").write_text("5")
    return _status_kb("VmRSS") * 1024
