"""Encoders of exports and reports: Arrow pages in, bytes out, one page at a time.

Memory holds one page (and its encoding), never the whole result:

* CSV, JSON, JSON Lines: each page is encoded and handed on as it arrives; JSON is one array
  whose elements are written one per line.
* Parquet: a ``ParquetWriter`` writes one row group per page into a drain the encoder empties
  after each page (the footer comes with the last chunk); money is ``decimal128(38, 10)``.
* XLSX: xlsxwriter in ``constant_memory`` mode (each row is flushed to its temporary file as it
  is written) builds the workbook in a temporary file, streamed once it is complete (a ZIP's
  directory is written last). A sheet holds 1,048,576 rows: longer exports continue on
  ``costs-2``, ``costs-3``...

Values in the text formats are those of the API: money a string with 10 places, timestamps
ISO 8601 in UTC with milliseconds (``2025-01-15T10:00:00.000Z``). XLSX cells hold the same
text for money and timestamps, not numbers: an Excel number is a binary float that cannot
hold every 10-place amount exactly (and Excel dates have no time zone); counts are numbers.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import xlsxwriter

ExportFormat = Literal["csv", "json", "jsonl", "parquet", "xlsx"]
EXPORT_FORMATS: tuple[ExportFormat, ...] = ("csv", "json", "jsonl", "parquet", "xlsx")
MEDIA_TYPES: dict[ExportFormat, str] = {
    "csv": "text/csv; charset=utf-8",
    "json": "application/json",
    "jsonl": "application/x-ndjson",
    "parquet": "application/vnd.apache.parquet",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
XLSX_MAX_ROWS = 1_048_576
"""Rows of one Excel sheet, its header included."""
_CHUNK = 1 << 20
_SLICE_ROWS = 2_000


def encode(pages: Iterable[pa.Table], fmt: ExportFormat, sheet: str = "costs") -> Iterator[bytes]:
    """The bytes of ``pages`` in ``fmt``, in chunks. ``pages`` holds at least one table (it may
    be empty: it names the columns)."""
    if fmt == "csv":
        return _csv(pages)
    if fmt == "json":
        return _json(pages)
    if fmt == "jsonl":
        return _jsonl(pages)
    if fmt == "parquet":
        return _parquet(pages)
    return _xlsx(pages, sheet)


def as_text(page: pa.Table) -> pa.Table:
    """Timestamps as ISO 8601 text in UTC with milliseconds; every other column as it is."""
    columns = []
    for field in page.schema:
        column = page.column(field.name)
        if pa.types.is_timestamp(field.type):
            if field.type.tz is None:
                column = pc.assume_timezone(column, "UTC")
            # %S of a millisecond timestamp prints its fraction: 00.000
            column = pc.strftime(column, format="%Y-%m-%dT%H:%M:%SZ")
        columns.append(column)
    return pa.table(columns, names=page.column_names)


def _csv(pages: Iterable[pa.Table]) -> Iterator[bytes]:
    header = True
    for page in pages:
        sink = io.BytesIO()
        pa_csv.write_csv(as_text(page), sink, pa_csv.WriteOptions(include_header=header))
        header = False
        yield sink.getvalue()


def _row_slices(page: pa.Table) -> Iterator[list[dict[str, Any]]]:
    """The page's rows as dicts, a slice at a time: 50,000 rows of Python objects would take
    about 150 MB; a slice of 2,000 takes a few."""
    text = as_text(page)
    for offset in range(0, text.num_rows, _SLICE_ROWS):
        rows: list[dict[str, Any]] = text.slice(offset, _SLICE_ROWS).to_pylist()
        yield rows


def _dumps(row: dict[str, Any]) -> str:
    return json.dumps(row, ensure_ascii=False, separators=(",", ":"))


def _json(pages: Iterable[pa.Table]) -> Iterator[bytes]:
    yield b"["
    first = True
    for page in pages:
        for rows in _row_slices(page):
            lead = "\n" if first else ",\n"
            first = False
            yield (lead + ",\n".join(map(_dumps, rows))).encode()
    yield b"]\n" if first else b"\n]\n"


def _jsonl(pages: Iterable[pa.Table]) -> Iterator[bytes]:
    for page in pages:
        for rows in _row_slices(page):
            yield ("\n".join(map(_dumps, rows)) + "\n").encode()


class _Drain:
    """A write-only file that keeps what was written until :meth:`take`."""

    closed = False

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._size = 0

    def write(self, data: bytes) -> int:
        self._chunks.append(bytes(data))
        self._size += len(data)
        return len(data)

    def tell(self) -> int:
        return self._size

    def flush(self) -> None:
        return None

    def close(self) -> None:
        self.closed = True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def take(self) -> bytes:
        data = b"".join(self._chunks)
        self._chunks.clear()
        return data


def _parquet(pages: Iterable[pa.Table]) -> Iterator[bytes]:
    drain = _Drain()
    writer: pq.ParquetWriter | None = None
    try:
        for page in pages:
            if writer is None:
                writer = pq.ParquetWriter(drain, page.schema, compression="zstd")
            writer.write_table(page)  # one row group per page
            if chunk := drain.take():
                yield chunk
    finally:
        if writer is not None:
            writer.close()
    yield drain.take()


def _xlsx(pages: Iterable[pa.Table], sheet: str) -> Iterator[bytes]:
    handle, name = tempfile.mkstemp(prefix="costops-", suffix=".xlsx")
    os.close(handle)
    try:
        _write_workbook(pages, name, sheet)
        with open(name, "rb") as file:
            while chunk := file.read(_CHUNK):
                yield chunk
    finally:
        os.unlink(name)


def _write_workbook(pages: Iterable[pa.Table], path: str, sheet: str) -> None:
    workbook = xlsxwriter.Workbook(path, {"constant_memory": True})
    try:
        header_format = workbook.add_format({"bold": True})
        worksheet: Any = None
        names: list[str] = []
        row_index = XLSX_MAX_ROWS
        sheets = 0
        for page in pages:
            names = page.column_names
            if worksheet is None:
                worksheet, sheets, row_index = _new_sheet(workbook, sheet, sheets, names, header_format)
            for rows in _row_slices(page):
                for row in rows:
                    if row_index >= XLSX_MAX_ROWS:
                        worksheet, sheets, row_index = _new_sheet(workbook, sheet, sheets, names, header_format)
                    for col, value in enumerate(row.values()):
                        _cell(worksheet, row_index, col, value)
                    row_index += 1
    finally:
        workbook.close()


def _new_sheet(workbook: Any, sheet: str, sheets: int, names: list[str], header_format: Any) -> tuple[Any, int, int]:
    sheets += 1
    worksheet = workbook.add_worksheet(sheet if sheets == 1 else f"{sheet}-{sheets}")
    for col, name in enumerate(names):
        worksheet.write_string(0, col, name, header_format)
    worksheet.freeze_panes(1, 0)
    return worksheet, sheets, 1


def _cell(worksheet: Any, row: int, col: int, value: Any) -> None:
    # Explicit writers: the generic write() would turn "=..." into a formula and URLs into links.
    if value is None:
        return
    if isinstance(value, bool):
        worksheet.write_boolean(row, col, value)
    elif isinstance(value, int | float):
        worksheet.write_number(row, col, value)
    else:
        worksheet.write_string(row, col, str(value))
