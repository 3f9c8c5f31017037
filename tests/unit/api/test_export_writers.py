"""The export encoders (api/export_writers.py): one chunk per page, valid documents whatever
the pages, exact money, and XLSX sheets that continue past Excel's row limit."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from decimal import Decimal

import openpyxl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from api import export_writers
from api.export_writers import as_text, encode
from api.routes.exports import export_filename
from schemas.query import CostFilterParams

MONEY = pa.decimal128(38, 10)


def page(start: int, rows: int) -> pa.Table:
    return pa.table(
        {
            "id": [f"evt-{n}" for n in range(start, start + rows)],
            "timestamp": pa.array(
                [datetime(2025, 1, 1, 0, 0, n % 60, 5000, tzinfo=UTC) for n in range(start, start + rows)],
                pa.timestamp("ms", tz="UTC"),
            ),
            "model": (['=HYPERLINK("x")', "https://example.com", 'a "quoted", value', None] + ["m"] * rows)[:rows],
            "tokens": pa.array(range(start, start + rows), pa.uint64()),
            "total_cost": pa.array([Decimal("0.0000000001")] * rows, MONEY),
        }
    )


def text_page(start: int, rows: int) -> pa.Table:
    table = page(start, rows)
    costs = pa.array(["0.0000000001"] * rows, pa.string())
    return table.set_column(4, "total_cost", costs)


def test_timestamps_become_iso_utc_with_milliseconds() -> None:
    naive = pa.table({"at": pa.array([datetime(2025, 1, 1, 10, 0, 0, 123000)], pa.timestamp("ms"))})
    assert as_text(naive).column("at").to_pylist() == ["2025-01-01T10:00:00.123Z"]
    assert as_text(page(0, 1)).column("timestamp").to_pylist() == ["2025-01-01T00:00:00.005Z"]


def test_csv_has_one_header_and_a_chunk_per_page() -> None:
    chunks = list(encode([text_page(0, 3), text_page(3, 0), text_page(3, 2)], "csv"))
    assert len(chunks) == 3
    rows = list(csv.DictReader(io.StringIO(b"".join(chunks).decode())))
    assert [r["id"] for r in rows] == [f"evt-{n}" for n in range(5)]
    assert rows[2]["model"] == 'a "quoted", value' and rows[0]["total_cost"] == "0.0000000001"


@pytest.mark.parametrize("pages", [[], [0], [3, 0, 2], [0, 0], [1]])
def test_json_is_one_valid_array_whatever_the_pages(pages: list[int]) -> None:
    tables = [text_page(sum(pages[:i]), n) for i, n in enumerate(pages)] or [text_page(0, 0)]
    data = json.loads(b"".join(encode(tables, "json")))
    assert [r["id"] for r in data] == [f"evt-{n}" for n in range(sum(pages))]
    lines = b"".join(encode(tables, "jsonl")).decode().splitlines()
    assert [json.loads(line) for line in lines] == data


def test_parquet_keeps_decimals_and_writes_a_row_group_per_page() -> None:
    chunks = list(encode([page(0, 3), page(3, 2)], "parquet"))
    assert len(chunks) >= 2  # handed on page by page, the footer last
    file = pq.ParquetFile(io.BytesIO(b"".join(chunks)))
    assert file.metadata.num_row_groups == 2
    table = file.read()
    assert table.schema.field("total_cost").type == MONEY
    assert table.column("total_cost").to_pylist() == [Decimal("0.0000000001")] * 5


def test_xlsx_continues_on_new_sheets_and_keeps_text_as_text(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(export_writers, "XLSX_MAX_ROWS", 4)  # a header and 3 rows a sheet
    book = openpyxl.load_workbook(io.BytesIO(b"".join(encode([text_page(0, 5), text_page(5, 3)], "xlsx"))))
    assert book.sheetnames == ["costs", "costs-2", "costs-3"]
    sheets = [list(ws.iter_rows(values_only=True)) for ws in book.worksheets]
    assert all(rows[0] == ("id", "timestamp", "model", "tokens", "total_cost") for rows in sheets)
    body = [row for rows in sheets for row in rows[1:]]
    assert [row[0] for row in body] == [f"evt-{n}" for n in range(8)]
    assert body[0][2] == '=HYPERLINK("x")' and body[1][2] == "https://example.com" and body[3][2] is None
    assert body[0][3] == 0 and body[0][4] == "0.0000000001"
    assert book["costs"].cell(row=2, column=3).data_type == "s"  # a string, not a formula


def test_export_filename() -> None:
    assert export_filename(CostFilterParams(start_date="2025-01-01", end_date="2025-01-31"), "csv") == (
        "costs-2025-01-01-2025-01-31.csv"
    )
    instant = CostFilterParams(start_date="2025-01-01T10:30:00Z")
    today = datetime(2025, 2, 1, tzinfo=UTC).date()
    assert export_filename(instant, "parquet", today) == "costs-2025-01-01T103000Z-2025-02-01.parquet"
    assert export_filename(CostFilterParams(), "xlsx", today) == "costs-beginning-2025-02-01.xlsx"
