"""``cost-ops ingest --file``: JSON array or JSON lines in the seeds' usage format.

Every record is validated locally first, so each bad one is reported with its line (JSON
lines) or position (JSON array) and reason; the good ones are sent to the API in batches.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tqdm import tqdm

from llm_cost_ops.cli.client import ApiClient
from llm_cost_ops.cli.console import err
from llm_cost_ops.errors import InvalidInputError, UnavailableError
from schemas.errors import EventValidationError
from schemas.provider import allowed_providers
from schemas.usage import UsageEvent

BATCH = 500


@dataclass
class IngestReport:
    read: int = 0
    sent: int = 0
    errors: list[str] = field(default_factory=list)


def _records(stream: IO[str]) -> Iterator[tuple[str, Any]]:
    """Yield ``(where, record)``; a line that is not JSON yields ``(where, error)``."""
    head = stream.read(1)
    while head.isspace():
        head = stream.read(1)
    if head == "[":
        try:
            items = json.loads(head + stream.read())
        except json.JSONDecodeError as exc:
            yield "file", ValueError(f"not a valid JSON array: {exc}")
            return
        for index, item in enumerate(items, start=1):
            yield f"record {index}", item
        return
    for number, line in enumerate(_prepend(head, stream), start=1):
        if not line.strip():
            continue
        try:
            yield f"line {number}", json.loads(line)
        except json.JSONDecodeError as exc:
            yield f"line {number}", ValueError(f"not valid JSON: {exc.msg} at column {exc.colno}")


def _prepend(head: str, stream: IO[str]) -> Iterator[str]:
    first = head + stream.readline()
    if first:
        yield first
    yield from stream


def ingest(path: str, client: ApiClient | None, custom_providers: tuple[str, ...], dry_run: bool) -> IngestReport:
    """Validate every record and send the valid ones (unless ``dry_run``)."""
    report = IngestReport()
    providers = allowed_providers(custom_providers)
    pending: list[tuple[str, dict[str, Any]]] = []
    source: IO[str] = sys.stdin if path == "-" else Path(path).open(encoding="utf-8")  # noqa: SIM115
    try:
        with tqdm(unit=" records", desc="ingest", file=sys.stderr, disable=None) as bar:
            for where, record in _records(source):
                report.read += 1
                bar.update(1)
                if isinstance(record, Exception):
                    report.errors.append(f"{where}: {record}")
                    continue
                try:
                    event = UsageEvent.parse(record, providers)
                except EventValidationError as exc:
                    report.errors.append(f"{where}: {_reasons(exc.field_errors)}")
                    continue
                pending.append((where, event.model_dump(mode="json")))
                if len(pending) >= BATCH:
                    _send(client, pending, dry_run, report)
            if pending:
                _send(client, pending, dry_run, report)
    except UnicodeDecodeError as exc:
        raise InvalidInputError("cannot read the file", {"file": f"must be UTF-8 text ({exc.reason})"}) from None
    finally:
        if source is not sys.stdin:
            source.close()
    for line in report.errors:
        err(f"rejected {line}")
    return report


def _reasons(field_errors: dict[str, str]) -> str:
    return "; ".join(f"{k}: {v}" for k, v in field_errors.items())


def _send(
    client: ApiClient | None,
    pending: list[tuple[str, dict[str, Any]]],
    dry_run: bool,
    report: IngestReport,
    attempts: int = 6,
) -> None:
    """Send one batch; a 503 (broker briefly unavailable) is retried as the API's Retry-After says.

    Every record carries its id (generated here when the file had none), so a retried batch
    cannot count a record twice: the pipeline counts each id once. Records the API refuses
    (its settings may differ from this machine's) are reported like local errors.
    """
    batch = list(pending)
    pending.clear()
    if dry_run or client is None:
        return
    for attempt in range(1, attempts + 1):
        try:
            answer = client.post("/api/v1/usage/batch", {"records": [record for _, record in batch]})
        except InvalidInputError as exc:
            # None of the batch was accepted: every record is named with its reason.
            for key, reason in exc.field_errors.items():
                report.errors.append(f"{_where(batch, key)}: {reason}")
            return
        except UnavailableError as exc:
            if attempt == attempts:
                raise
            wait = min(max(exc.retry_after, 1.0), 30.0)
            err(f"API unavailable ({exc.message}); retrying in {wait:.0f}s")
            time.sleep(wait)
            continue
        report.sent += int(answer["accepted"])
        for rejected in answer.get("rejected", []):
            report.errors.append(
                f"{batch[rejected['index']][0]}: refused by the API: {_reasons(rejected['field_errors'])}"
            )
        return


def _where(batch: list[tuple[str, dict[str, Any]]], key: str) -> str:
    """``records[3].provider`` -> the line of the batch's 4th record, and the field."""
    if key.startswith("records[") and "]" in key:
        index, _, field = key[len("records[") :].partition("]")
        if index.isdigit() and int(index) < len(batch):
            return f"{batch[int(index)][0]}: refused by the API: {field.lstrip('.')}"
    return f"batch: {key}"
