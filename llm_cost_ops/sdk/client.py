"""``CostOpsClient``: the synchronous HTTP client, with retries (see :mod:`.retry`)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import IO, Any, TypeVar

import httpx

from llm_cost_ops.sdk.attempt import Connection, filename, retry_wait
from llm_cost_ops.sdk.calls import Call
from llm_cost_ops.sdk.errors import APIConnectionError
from llm_cost_ops.sdk.models import ExportResult
from llm_cost_ops.sdk.params import query
from llm_cost_ops.sdk.resources import Alerts, Budgets, Costs, Export, Forecasts, Pricing, Usage
from llm_cost_ops.sdk.retry import RetryPolicy

T = TypeVar("T")

Sleep = Callable[[float], None]
"""How the client waits between attempts (``time.sleep``; tests pass a recorder)."""

DOWNLOAD_READ_TIMEOUT_S = 300.0
"""A large export's first bytes come once its first page is read: allow more than ``timeout``."""


class CostOpsClient:
    """The LLM-CostOps API, synchronously.

    Args:
        api_key: an ``sk_…`` key; defaults to ``COSTOPS_API_KEY``. Missing, construction fails.
        base_url: the API's URL; defaults to ``COSTOPS_API_URL``, else ``http://127.0.0.1:8080``.
        timeout: seconds per request.
        max_retries: attempts after the first on 429, 502, 503, 504 and connection errors.
        transport: an ``httpx`` transport to use instead of the network (proxies, tests).
        sleep: how to wait between attempts.

    Example::

        with CostOpsClient() as client:
            client.usage.create(provider="openai", model="gpt-4o", prompt_tokens=1200, completion_tokens=300)
            for cost in client.costs.list_paginated(start_date="2025-01-01"):
                print(cost.id, cost.total_cost)
    """

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float = 30.0,
        max_retries: int = 3,
        *,
        transport: httpx.BaseTransport | None = None,
        sleep: Sleep = time.sleep,
    ) -> None:
        connection = Connection.resolve(api_key, base_url)
        self.base_url = connection.base_url
        self._retry = RetryPolicy(max_retries=max_retries)
        self._sleep = sleep
        self._http = httpx.Client(
            base_url=connection.base_url, headers=connection.headers, timeout=timeout, transport=transport
        )
        self.usage = Usage(self)
        self.costs = Costs(self)
        self.pricing = Pricing(self)
        self.forecast = Forecasts(self)
        self.export = Export(self)
        self.budgets = Budgets(self)
        self.alerts = Alerts(self)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> CostOpsClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def call(self, call: Call[T]) -> T:
        """Send ``call``, retrying as the policy allows, and parse its answer."""
        attempt = 0
        while True:
            try:
                response = self._http.request(call.method, call.path, params=call.params, json=call.body)
            except httpx.TransportError as exc:
                self._sleep(retry_wait(self._retry, attempt, exc, call.idempotent, self.base_url))
            else:
                if response.status_code < 400:
                    return call.parse(response.json() if response.content else None)
                self._sleep(retry_wait(self._retry, attempt, response, call.idempotent, self.base_url))
            attempt += 1

    def download(
        self, path: str, filters: Mapping[str, Any], fmt: str, target: str | os.PathLike[str] | IO[bytes]
    ) -> ExportResult:
        """Stream ``GET path`` into ``target`` chunk by chunk (constant memory). Error answers
        are retried like any read; a transfer that breaks off midway is not (the file holds
        part of it) and raises :class:`APIConnectionError`."""
        attempt = 0
        params = query({**filters, "format": fmt})
        timeout = httpx.Timeout(self._http.timeout.connect, read=DOWNLOAD_READ_TIMEOUT_S)
        while True:
            written: int | None = None
            try:
                with self._http.stream("GET", path, params=params, timeout=timeout) as response:
                    if response.status_code < 400:
                        written = 0
                        if isinstance(target, str | os.PathLike):
                            with open(target, "wb") as out:
                                for chunk in response.iter_bytes():
                                    written += out.write(chunk)
                        else:
                            for chunk in response.iter_bytes():
                                written += target.write(chunk)
                        total = response.headers.get("X-Total-Count")
                        return ExportResult(
                            path=os.fspath(target) if isinstance(target, str | os.PathLike) else None,
                            filename=filename(response),
                            format=fmt,
                            bytes_written=written,
                            total=int(total) if total is not None else None,
                        )
                    response.read()
                    wait = retry_wait(self._retry, attempt, response, True, self.base_url)
            except httpx.TransportError as exc:
                if written is not None:
                    raise APIConnectionError(
                        f"the export from {self.base_url} broke off after {written} bytes"
                    ) from exc
                wait = retry_wait(self._retry, attempt, exc, True, self.base_url)
            self._sleep(wait)
            attempt += 1
