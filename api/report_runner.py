"""Generates reports in the background of the API process that accepted them.

Each report is one asyncio task that runs the queries and the encoding in a thread of the
runner's own pool (``api.report_workers``), then stores the file (at most ``api.max_report_mb``)
in the control store. A process that stops leaves its reports unfinished: every process confirms
its own reports every few seconds (``heartbeat_ms``) and fails those nobody has confirmed for
``api.report_stale_s``, at start-up and then periodically, so a report never stays ``running``
forever, whichever replica restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pyarrow as pa

from api.context import ApiContext
from api.export_writers import encode
from api.report_content import report_pages
from llm_cost_ops.errors import PipelineError, UnavailableError
from llm_cost_ops.kafka import sleep_until
from schemas.report import Report
from sinks.report_store import ReportStore

logger = logging.getLogger(__name__)


class ReportTooLargeError(PipelineError):
    code = "REPORT_TOO_LARGE"


class ReportRunner:
    """Background generation of reports.

    Args:
        context: the API's context (store, control store, settings).
        store: where reports live.
    """

    def __init__(self, context: ApiContext, store: ReportStore) -> None:
        self._context = context
        self._store = store
        self._tasks: dict[str, asyncio.Task[None]] = {}
        settings = context.settings.api
        self._max_bytes = int(settings.max_report_mb * 1024 * 1024)
        self._stale = timedelta(seconds=settings.report_stale_s)
        self._pool = ThreadPoolExecutor(max_workers=settings.report_workers, thread_name_prefix="report")

    def submit(self, report: Report) -> None:
        task = asyncio.create_task(self._generate(report), name=f"report-{report.id}")
        self._tasks[report.id] = task
        task.add_done_callback(lambda _: self._tasks.pop(report.id, None))

    async def run(self, stop: asyncio.Event) -> None:
        """Confirm this process's reports and fail the abandoned ones, until ``stop``."""
        every = max(0.05, self._stale.total_seconds() / 4)
        while True:
            try:
                await asyncio.to_thread(self._store.heartbeat, list(self._tasks))
                failed = await asyncio.to_thread(self._store.fail_stale, self._stale)
                if failed:
                    logger.warning("failed %d abandoned reports", failed, extra={"operation": "reports"})
            except UnavailableError as exc:
                logger.warning("could not check reports: %s", exc.message)
            await sleep_until(stop, every)
            if stop.is_set():
                return

    async def close(self) -> None:
        """Stop generating: what is unfinished fails now rather than after ``report_stale_s``."""
        tasks = dict(self._tasks)
        for task in tasks.values():
            task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)
        self._pool.shutdown(wait=False, cancel_futures=True)
        for report_id in tasks:
            with contextlib.suppress(UnavailableError):  # else the next process's sweep fails it
                await asyncio.to_thread(self._store.fail, report_id, "the API process stopped; generate it again")

    async def _generate(self, report: Report) -> None:
        loop = asyncio.get_running_loop()
        try:
            # A pool of its own: long reports must not take the threads every other route's
            # asyncio.to_thread shares. A report waiting for a thread stays pending.
            done = await loop.run_in_executor(self._pool, self._start_and_render, report)
        except asyncio.CancelledError:
            raise
        except PipelineError as exc:
            await asyncio.to_thread(self._store.fail, report.id, exc.message)
        except Exception as exc:
            logger.error("report %s failed", report.id, exc_info=exc)
            await asyncio.to_thread(self._store.fail, report.id, f"internal error: {exc.__class__.__name__}")
        else:
            if done is not None:
                await asyncio.to_thread(self._store.complete, report.id, *done)

    def _start_and_render(self, report: Report) -> tuple[bytes, int] | None:
        if not self._store.start(report.id):
            return None  # deleted before it started
        return self.render(report)

    def render(self, report: Report) -> tuple[bytes, int]:
        """The report's file and its row count (blocking: queries and encoding)."""
        pages, sheet = report_pages(self._context, report)
        counted = _Counted(pages)
        chunks: list[bytes] = []
        size = 0
        for chunk in encode(counted, report.format, sheet):
            size += len(chunk)
            if size > self._max_bytes:
                raise ReportTooLargeError(
                    f"the report is larger than {self._context.settings.api.max_report_mb:g} MB "
                    "(api.max_report_mb): narrow its filters, or use GET /api/v1/costs/export"
                )
            chunks.append(chunk)
        return b"".join(chunks), counted.rows


class _Counted:
    """Pages, counting their rows as they pass."""

    def __init__(self, pages: Iterable[pa.Table]) -> None:
        self._pages = pages
        self.rows = 0

    def __iter__(self) -> Iterator[pa.Table]:
        for page in self._pages:
            self.rows += page.num_rows
            yield page
