"""``cost-ops ingest --file``: usage records from a JSON array, JSON lines or CSV file (or stdin).

The file is read, validated and sent in batches, never held whole: memory stays about one
batch whatever the file's size. Every record is validated locally first, so each bad one is
reported as it is met, with its line (and, in a JSON array, its index) and the reason naming
the field; the good ones are sent to the API in batches of at most ``--batch-size``.
"""

from __future__ import annotations

import io
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from tqdm import tqdm

from llm_cost_ops.cli.client import ApiClient
from llm_cost_ops.errors import InvalidInputError, UnavailableError
from llm_cost_ops.ingest.records import read_records
from llm_cost_ops.ingest.source import CountingReader, Format, detect_format
from schemas.errors import EventValidationError
from schemas.provider import allowed_providers
from schemas.usage import UsageEvent

BATCH = 500
MAX_BATCH = 1000
"""The API's limit on one ``POST /api/v1/usage/batch`` (``api.max_batch``'s default)."""

Reject = Callable[[str], None]
"""Told each rejected record as ``"<where>: <reason>"``, when it is rejected."""


@dataclass
class IngestReport:
    read: int = 0
    sent: int = 0
    rejected: int = 0


@dataclass(frozen=True)
class IngestParams:
    """What to read and how.

    Args:
        path: a file, or ``-`` for stdin.
        fmt: the format; None: the extension's, else sniffed from the first non-space byte.
        dry_run: validate only (nothing is sent).
        batch_size: records per API request (at most :data:`MAX_BATCH`).
        progress: show a progress bar on stderr (only when it is a terminal).
    """

    path: str
    fmt: Format | None = None
    dry_run: bool = False
    batch_size: int = BATCH
    progress: bool = True

    def __post_init__(self) -> None:
        if not 1 <= self.batch_size <= MAX_BATCH:
            raise InvalidInputError("invalid --batch-size", {"batch_size": f"must be between 1 and {MAX_BATCH}"})


def ingest(
    params: IngestParams, client: ApiClient | None, custom_providers: tuple[str, ...], reject: Reject
) -> IngestReport:
    """Validate every record and send the valid ones (unless ``params.dry_run``)."""
    report = IngestReport()
    providers = allowed_providers(custom_providers)
    pending: list[tuple[str, dict[str, Any]]] = []

    def rejected(line: str) -> None:
        report.rejected += 1
        reject(line)

    with _opened(params.path) as (binary, counter, size):
        fmt = params.fmt or detect_format(params.path, binary.peek(4096))
        # A file's progress is bytes of its size; stdin's (no size) is records.
        total, unit = (size, "B") if size is not None else (None, " records")
        with tqdm(
            total=total, unit=unit, unit_scale=unit == "B", desc="ingest", file=sys.stderr,
            disable=None if params.progress else True, mininterval=0.5,
        ) as bar:  # fmt: skip
            try:
                for located in read_records(binary, fmt):
                    report.read += 1
                    bar.update(counter.consumed - bar.n if size is not None else 1)
                    if located.error is not None:
                        rejected(f"{located.where}: {located.error}")
                        continue
                    if not isinstance(located.record, dict):
                        rejected(f"{located.where}: must be a JSON object, not {type(located.record).__name__}")
                        continue
                    try:
                        event = UsageEvent.parse(located.record, providers)
                    except EventValidationError as exc:
                        rejected(f"{located.where}: {_reasons(exc.field_errors)}")
                        continue
                    if params.dry_run:
                        continue  # validated: nothing to keep
                    pending.append((located.where, event.model_dump(mode="json")))
                    if len(pending) >= params.batch_size:
                        _send(client, pending, report, rejected)
            except UnicodeDecodeError as exc:
                raise InvalidInputError(
                    "cannot read the file", {"file": f"must be UTF-8 text ({exc.reason})"}
                ) from None
            if pending:
                _send(client, pending, report, rejected)
    return report


@contextmanager
def _opened(path: str) -> Iterator[tuple[io.BufferedReader, CountingReader, int | None]]:
    """The input as a buffered binary stream, its byte counter, and its size (None: stdin)."""
    raw: IO[bytes]
    if path == "-":
        raw, size = sys.stdin.buffer, None
    else:
        file = Path(path)
        if file.is_dir():
            raise InvalidInputError("cannot read the file", {"file": f"{path} is a directory"})
        raw = file.open("rb")
        size = file.stat().st_size
    counter = CountingReader(raw)
    try:
        yield io.BufferedReader(counter, buffer_size=64 * 1024), counter, size
    finally:
        if raw is not sys.stdin.buffer:
            raw.close()


def _reasons(field_errors: dict[str, str]) -> str:
    return "; ".join(f"{k}: {v}" for k, v in field_errors.items())


def _send(
    client: ApiClient | None,
    pending: list[tuple[str, dict[str, Any]]],
    report: IngestReport,
    rejected: Reject,
    attempts: int = 6,
) -> None:
    """Send one batch; a 503 (broker briefly unavailable) is retried as the API's Retry-After says.

    Every record carries its id (generated here when the file had none), so a retried batch
    cannot count a record twice: the pipeline counts each id once. Records the API refuses
    (its settings may differ from this machine's) are reported like local errors.
    """
    batch = list(pending)
    pending.clear()
    if client is None:
        return
    for attempt in range(1, attempts + 1):
        try:
            answer = client.post("/api/v1/usage/batch", {"records": [record for _, record in batch]})
        except InvalidInputError as exc:
            # None of the batch was accepted: every record is named with its reason.
            for key, reason in exc.field_errors.items():
                rejected(f"{_where(batch, key)}: {reason}")
            return
        except UnavailableError as exc:
            if attempt == attempts:
                raise
            wait = min(max(exc.retry_after, 1.0), 30.0)
            tqdm.write(f"API unavailable ({exc.message}); retrying in {wait:.0f}s", file=sys.stderr)
            time.sleep(wait)
            continue
        report.sent += int(answer["accepted"])
        for refused in answer.get("rejected", []):
            rejected(f"{batch[refused['index']][0]}: refused by the API: {_reasons(refused['field_errors'])}")
        return


def _where(batch: list[tuple[str, dict[str, Any]]], key: str) -> str:
    """``records[3].provider`` -> the line of the batch's 4th record, and the field."""
    if key.startswith("records[") and "]" in key:
        index, _, field = key[len("records[") :].partition("]")
        if index.isdigit() and int(index) < len(batch):
            return f"{batch[int(index)][0]}: refused by the API: {field.lstrip('.')}"
    return f"batch: {key}"
