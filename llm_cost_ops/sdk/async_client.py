"""``AsyncCostOpsClient``: the same surface as ``CostOpsClient``, awaited."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import IO, Any, TypeVar

import httpx

from llm_cost_ops.sdk.async_resources import Alerts, Budgets, Costs, Export, Forecasts, Pricing, Usage
from llm_cost_ops.sdk.attempt import Connection, filename, retry_wait
from llm_cost_ops.sdk.calls import Call
from llm_cost_ops.sdk.client import DOWNLOAD_READ_TIMEOUT_S
from llm_cost_ops.sdk.errors import APIConnectionError
from llm_cost_ops.sdk.models import ExportResult
from llm_cost_ops.sdk.params import query
from llm_cost_ops.sdk.retry import RetryPolicy

T = TypeVar("T")

AsyncSleep = Callable[[float], Awaitable[None]]


class AsyncCostOpsClient:
    """The LLM-CostOps API for asyncio: the arguments of :class:`~.client.CostOpsClient`, and
    ``async with``, ``await client.usage.create(...)``, ``async for c in client.costs.list_paginated()``.

    An export is written to its file from the event loop, chunk by chunk: local writes of a
    chunk are short, and a thread per chunk would cost more than it saves.
    """

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float = 30.0,
        max_retries: int = 3,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: AsyncSleep = asyncio.sleep,
    ) -> None:
        connection = Connection.resolve(api_key, base_url)
        self.base_url = connection.base_url
        self._retry = RetryPolicy(max_retries=max_retries)
        self._sleep = sleep
        self._http = httpx.AsyncClient(
            base_url=connection.base_url, headers=connection.headers, timeout=timeout, transport=transport
        )
        self.usage = Usage(self)
        self.costs = Costs(self)
        self.pricing = Pricing(self)
        self.forecast = Forecasts(self)
        self.export = Export(self)
        self.budgets = Budgets(self)
        self.alerts = Alerts(self)

    async def close(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncCostOpsClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self.close()

    async def call(self, call: Call[T]) -> T:
        """Send ``call``, retrying as the policy allows, and parse its answer."""
        attempt = 0
        while True:
            try:
                response = await self._http.request(call.method, call.path, params=call.params, json=call.body)
            except httpx.TransportError as exc:
                await self._sleep(retry_wait(self._retry, attempt, exc, call.idempotent, self.base_url))
            else:
                if response.status_code < 400:
                    return call.parse(response.json() if response.content else None)
                await self._sleep(retry_wait(self._retry, attempt, response, call.idempotent, self.base_url))
            attempt += 1

    async def download(
        self, path: str, filters: Mapping[str, Any], fmt: str, target: str | os.PathLike[str] | IO[bytes]
    ) -> ExportResult:
        """As :meth:`CostOpsClient.download`."""
        attempt = 0
        params = query({**filters, "format": fmt})
        timeout = httpx.Timeout(self._http.timeout.connect, read=DOWNLOAD_READ_TIMEOUT_S)
        while True:
            written: int | None = None
            try:
                async with self._http.stream("GET", path, params=params, timeout=timeout) as response:
                    if response.status_code < 400:
                        written = 0
                        if isinstance(target, str | os.PathLike):
                            with open(target, "wb") as out:
                                async for chunk in response.aiter_bytes():
                                    written += out.write(chunk)
                        else:
                            async for chunk in response.aiter_bytes():
                                written += target.write(chunk)
                        total = response.headers.get("X-Total-Count")
                        return ExportResult(
                            path=os.fspath(target) if isinstance(target, str | os.PathLike) else None,
                            filename=filename(response),
                            format=fmt,
                            bytes_written=written,
                            total=int(total) if total is not None else None,
                        )
                    await response.aread()
                    wait = retry_wait(self._retry, attempt, response, True, self.base_url)
            except httpx.TransportError as exc:
                if written is not None:
                    raise APIConnectionError(
                        f"the export from {self.base_url} broke off after {written} bytes"
                    ) from exc
                wait = retry_wait(self._retry, attempt, exc, True, self.base_url)
            await self._sleep(wait)
            attempt += 1
