"""``GET /api/v1/costs/export``: every cost record the filters match, streamed as a file."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from api.deps import ContextDep, FiltersDep
from api.export_writers import EXPORT_FORMATS, MEDIA_TYPES, ExportFormat, encode
from schemas.query import CostFilterParams, as_utc
from sinks.export_queries import CostExport

router = APIRouter(prefix="/api/v1/costs", tags=["exports"])

_FILE = {"schema": {"type": "string", "format": "binary"}}
_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {
        "description": "The records, newest first, as an attachment `costs-<from>-<to>.<ext>`; "
        "`X-Total-Count` is the number of records when the export started.",
        "content": {media: _FILE for media in MEDIA_TYPES.values()},
        "headers": {"X-Total-Count": {"schema": {"type": "integer"}, "description": "records matching the filters"}},
    }
}


@router.get("/export", response_class=StreamingResponse, responses=_RESPONSES)
async def export_costs(
    context: ContextDep,
    filters: FiltersDep,
    format: Annotated[ExportFormat, Query(description=f"one of {', '.join(EXPORT_FORMATS)}")] = "csv",
) -> StreamingResponse:
    """Every cost record the filters match, in any size: read in keyset pages of 50,000 rows
    (each its own statement) and written to the response page by page. Money is exact:
    strings with 10 places in CSV, JSON, JSON Lines and XLSX, ``decimal128(38, 10)`` in
    Parquet. Needs ``export:data``."""
    reader = CostExport(context.store, context.settings.api.export_page_rows)
    total = await asyncio.to_thread(reader.count, filters)
    pages = reader.pages(filters, "decimal" if format == "parquet" else "text")
    headers = {
        "Content-Disposition": f"attachment; filename={export_filename(filters, format)}",
        "X-Total-Count": str(total),
    }
    if format in ("parquet", "xlsx"):
        headers["Content-Encoding"] = "identity"  # compressed already: the compression middleware passes it by
    return StreamingResponse(
        encode(pages, format),  # a sync iterator: Starlette runs each step (one page) in a thread
        media_type=MEDIA_TYPES[format],
        headers=headers,
    )


def export_filename(filters: CostFilterParams, fmt: str, today: date | None = None) -> str:
    """``costs-<from>-<to>.<ext>``: the filters' dates (``beginning`` without a start, today
    without an end)."""
    start = _day(filters.start_date) if filters.start_date is not None else "beginning"
    end = _day(filters.end_date) if filters.end_date is not None else (today or datetime.now(UTC).date()).isoformat()
    return f"costs-{start}-{end}.{fmt}"


def _day(value: date | datetime) -> str:
    if isinstance(value, datetime):
        return as_utc(value).strftime("%Y-%m-%dT%H%M%SZ")
    return value.isoformat()
