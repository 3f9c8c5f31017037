"""``cost-ops export``: download ``GET /api/v1/costs/export`` to a file, with a progress bar.

The download goes to a temporary file next to the output, renamed over it only once complete:
an interrupted export never leaves a truncated file under the requested name.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from tqdm import tqdm

from llm_cost_ops.cli.client import ApiClient
from llm_cost_ops.cli.console import out
from llm_cost_ops.cli.report import RANGES, Window
from llm_cost_ops.errors import InvalidInputError
from llm_cost_ops.settings import Settings

FORMATS = ("csv", "json", "jsonl", "parquet", "xlsx")
LINE_FORMATS = ("csv", "json", "jsonl")
"""Formats with one record per line: the progress bar counts records; else bytes."""


@dataclass(frozen=True)
class ExportResult:
    path: Path
    records: int | None
    """``X-Total-Count``: the records the export holds."""
    size: int


def export_format(output: Path, given: str | None) -> str:
    """``--format``, else the output's extension, else csv."""
    if given is not None:
        return given
    suffix = output.suffix.lower().lstrip(".")
    if suffix in FORMATS:
        return suffix
    if suffix == "ndjson":
        return "jsonl"
    if suffix:
        raise InvalidInputError(
            f"cannot tell the format from {output.name}", {"--format": f"one of {', '.join(FORMATS)}"}
        )
    return "csv"


def download(
    client: ApiClient,
    output: Path,
    fmt: str,
    params: dict[str, Any],
    progress: bool | None = None,
    bar_file: TextIO | None = None,
) -> ExportResult:
    """Stream the export to ``output``. ``progress``: None shows the bar on a terminal only;
    ``bar_file``: where it goes (stderr)."""
    if output.is_dir():
        raise InvalidInputError(f"{output} is a directory", {"--output": "must be a file path"})
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(f".{output.name}.{os.getpid()}.part")
    size = 0
    try:
        with client.stream("/api/v1/costs/export", {**params, "format": fmt}) as response:
            header = response.headers.get("x-total-count")
            total = int(header) if header and header.isdigit() else None
            by_line = fmt in LINE_FORMATS
            bar = tqdm(
                total=total if by_line else None,
                unit="records" if by_line else "B",
                unit_scale=not by_line,
                disable=None if progress is None else not progress,
                file=bar_file or sys.stderr,
                desc=output.name,
            )
            with bar, partial.open("wb") as file:
                lines = 0
                for chunk in response.iter_bytes():
                    file.write(chunk)
                    size += len(chunk)
                    if by_line:
                        # Lines approximate records (a CSV header, a value with a line break).
                        seen = min(lines + chunk.count(b"\n"), total or sys.maxsize)
                        bar.update(seen - lines)
                        lines = seen
                    else:
                        bar.update(len(chunk))
                if by_line and total is not None:
                    bar.update(total - lines)
        os.replace(partial, output)
    finally:
        partial.unlink(missing_ok=True)
    return ExportResult(path=output, records=total, size=size)


def filters(args: argparse.Namespace) -> dict[str, Any]:
    params: dict[str, Any] = Window(args.period, args.start_date, args.end_date).params()
    for key, value in (("organization_id", args.organization), ("provider", args.provider), ("model", args.model)):
        if value:
            params[key] = value
    return params


def cmd_export(args: argparse.Namespace, settings: Settings) -> int:
    output = Path(args.output)
    fmt = export_format(output, args.format)
    with ApiClient.for_settings(settings) as client:
        result = download(client, output, fmt, filters(args), progress=False if args.quiet else None)
    records = f"{result.records:,} records" if result.records is not None else "the export"
    out(f"wrote {records} ({_size(result.size)}) to {result.path}")
    return 0


def _size(size: int) -> str:
    if size < 1000:
        return f"{size} B"
    for unit, scale in (("KB", 1e3), ("MB", 1e6)):
        if size < scale * 1000:
            return f"{size / scale:.1f} {unit}"
    return f"{size / 1e9:.1f} GB"


def add_export_command(sub: Any) -> None:
    parser = sub.add_parser("export", help="download cost records to a file (CSV, JSON, JSON Lines, Parquet, XLSX)")
    parser.add_argument("--output", "-o", required=True, help="the file to write (replaced once complete)")
    parser.add_argument("--format", choices=FORMATS, help="default: from the output's extension, else csv")
    parser.add_argument("--period", default="last-30-days", choices=list(RANGES))
    parser.add_argument("--start-date", help="ISO 8601 date or timestamp (overrides the period)")
    parser.add_argument("--end-date", help="ISO 8601; a date includes that whole day")
    parser.add_argument("--organization")
    parser.add_argument("--provider")
    parser.add_argument("--model")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    parser.set_defaults(func=cmd_export)
