"""The SDK's retry logic on ``httpx.MockTransport`` (pure logic: no server, no real waiting),
and the encodings that need no API: filters, client-side ids, error classes."""

from __future__ import annotations

import asyncio
import inspect
import json
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest

from llm_cost_ops import (
    APIError,
    AsyncCostOpsClient,
    AuthenticationError,
    CostOpsClient,
    RateLimitError,
    ValidationError,
)
from llm_cost_ops.sdk import async_resources, resources
from llm_cost_ops.sdk.errors import APIConnectionError, BudgetExceededError, CostOpsError, ServiceUnavailableError
from llm_cost_ops.sdk.params import query
from llm_cost_ops.sdk.retry import RetryPolicy

ACCEPTED = {"id": "evt-1", "status": "accepted", "organization_id": "org-1", "timestamp": "2025-01-01T00:00:00+00:00"}


def error(status: int, code: str, headers: dict[str, str] | None = None, **fields: str) -> httpx.Response:
    body = {"error": {"code": code, "message": code.lower(), **({"field_errors": fields} if fields else {})}}
    return httpx.Response(status, json=body, headers=headers)


class Script:
    """Answers in order; records each request and each wait."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []
        self.waits: list[float] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)

    def client(self, max_retries: int = 3) -> CostOpsClient:
        return CostOpsClient(
            "sk_test_unit", "http://costops.test", max_retries=max_retries,
            transport=httpx.MockTransport(self), sleep=self.sleep,
        )  # fmt: skip


def test_429_with_retry_after_is_retried_once_after_at_least_that_long() -> None:
    script = Script(error(429, "RATE_LIMIT_EXCEEDED", {"Retry-After": "1"}), httpx.Response(202, json=ACCEPTED))
    with script.client() as client:
        accepted = client.usage.create(provider="openai", model="gpt-4o", prompt_tokens=1, completion_tokens=1)
    assert accepted.id == "evt-1"
    assert len(script.requests) == 2 and len(script.waits) == 1
    assert script.waits[0] >= 1
    # The retry sent the same record, id included: the pipeline deduplicates it.
    first, second = (json.loads(r.content) for r in script.requests)
    assert first == second and first["id"]


def test_503_until_the_retries_are_spent_raises_with_retry_after() -> None:
    script = Script(*[error(503, "BROKER_UNAVAILABLE", {"Retry-After": "2"}) for _ in range(3)])
    with script.client(max_retries=2) as client, pytest.raises(ServiceUnavailableError) as raised:
        client.costs.list()
    assert raised.value.status_code == 503 and raised.value.retry_after == 2.0
    assert len(script.requests) == 3 and all(wait >= 2 for wait in script.waits)


def test_backoff_grows_exponentially_with_jitter_and_respects_its_cap() -> None:
    policy = RetryPolicy(backoff_s=0.5, max_backoff_s=3.0, jitter=lambda: 0.999)
    assert [round(policy.delay(n, None), 2) for n in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    low = RetryPolicy(backoff_s=0.5, jitter=lambda: 0.0)
    assert low.delay(2, None) == 1.0  # half of 2.0 at the bottom of the jitter
    assert low.delay(0, 7.0) == 7.0  # never sooner than Retry-After


@pytest.mark.parametrize(
    ("answer", "kind"),
    [
        (error(422, "VALIDATION_ERROR", prompt_tokens="must be greater than or equal to 0"), ValidationError),
        (error(401, "AUTH_001"), AuthenticationError),
        (error(404, "NOT_FOUND"), APIError),
        (error(429, "BUDGET_001", {"Retry-After": "3600"}, **{"budget.b1": "spent"}), BudgetExceededError),
    ],
)
def test_other_4xx_and_budget_429_are_never_retried(answer: httpx.Response, kind: type[APIError]) -> None:
    script = Script(answer, httpx.Response(200, json={}))
    with script.client() as client, pytest.raises(kind) as raised:
        client.usage.create(provider="openai", model="gpt-4o", prompt_tokens=-1, completion_tokens=1)
    assert len(script.requests) == 1 and script.waits == []
    assert raised.value.code == answer.json()["error"]["code"]
    if kind is ValidationError:
        assert raised.value.field_errors == {"prompt_tokens": "must be greater than or equal to 0"}


def test_a_write_without_idempotence_is_retried_on_429_only() -> None:
    script = Script(error(429, "RATE_LIMIT_EXCEEDED", {"Retry-After": "1"}), error(502, "BAD_GATEWAY"))
    with script.client() as client, pytest.raises(APIError) as raised:
        client.pricing.create(provider="openai", model="gpt-4o", pricing_structure={"type": "per_token"})
    assert raised.value.status_code == 502 and len(script.requests) == 2


def test_connection_errors_are_retried_then_raised() -> None:
    refused = httpx.ConnectError("refused")
    script = Script(refused, httpx.Response(200, json={"data": [], "per_page": 100, "total": 0, "has_more": False}))
    with script.client() as client:
        assert client.costs.list().total == 0
    script = Script(refused, refused)
    with script.client(max_retries=1) as client, pytest.raises(APIConnectionError, match=r"http://costops\.test"):
        client.costs.summary()


def test_async_client_retries_the_same_way() -> None:
    script = Script(error(429, "RATE_LIMIT_EXCEEDED", {"Retry-After": "1"}), httpx.Response(202, json=ACCEPTED))
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    async def run() -> str:
        transport = httpx.MockTransport(script)
        async with AsyncCostOpsClient("sk_test_unit", "http://costops.test", transport=transport, sleep=sleep) as c:
            return (await c.usage.create(provider="openai", model="gpt-4o")).id

    assert asyncio.run(run()) == "evt-1"
    assert len(script.requests) == 2 and waits[0] >= 1
    with pytest.raises(RateLimitError):
        raise RateLimitError(429, "RATE_LIMIT_EXCEEDED", "slow down", retry_after=1.0)


def test_money_is_decimal_and_times_are_datetimes() -> None:
    row = {"id": "e", "timestamp": "2025-01-01T10:00:00Z", "provider": "openai", "model": "gpt-4o",
           "organization_id": "o", "pricing_status": "priced", "total_cost": "0.0000000001", "currency": "USD",
           "extra_field": "kept"}  # fmt: skip
    page = {"data": [row], "page": 1, "per_page": 1, "total": 1, "has_more": False, "next_cursor": None}
    script = Script(httpx.Response(200, json=page))
    with script.client() as client:
        record = client.costs.list().data[0]
    assert record.total_cost == Decimal("0.0000000001") and isinstance(record.total_cost, Decimal)
    assert record.timestamp == datetime(2025, 1, 1, 10, tzinfo=UTC)
    assert record.model_extra == {"extra_field": "kept"}


def test_filters_become_the_query_parameters_the_api_reads() -> None:
    params = query(
        {"start_date": date(2025, 1, 1), "end_date": datetime(2025, 2, 1, tzinfo=UTC), "tags": ["prod", "eu"],
         "group_by": ("provider", "metadata.team"), "metadata": {"team": "search"}, "project_id": None,
         "fill_gaps": False}
    )  # fmt: skip
    assert params == (
        ("start_date", "2025-01-01"),
        ("end_date", "2025-02-01T00:00:00+00:00"),
        ("tags", "prod,eu"),
        ("group_by", "provider,metadata.team"),
        ("metadata.team", "search"),
        ("fill_gaps", "false"),
    )


def test_a_missing_key_is_a_clear_error_at_construction(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COSTOPS_API_KEY", raising=False)
    with pytest.raises(CostOpsError, match="COSTOPS_API_KEY"):
        CostOpsClient()
    monkeypatch.setenv("COSTOPS_API_KEY", "sk_test_env")
    monkeypatch.setenv("COSTOPS_API_URL", "http://from-env:9000/")
    with CostOpsClient() as client:
        assert client.base_url == "http://from-env:9000"


def _surface(module: Any) -> dict[str, dict[str, object]]:
    return {
        name: {m: list(inspect.signature(f).parameters.values()) for m, f in vars(cls).items() if not m.startswith("_")}
        for name, cls in vars(module).items()
        if isinstance(cls, type) and issubclass(cls, module.Resource) and cls is not module.Resource
    }


def test_the_async_resources_mirror_the_sync_ones() -> None:
    """The same methods with the same parameters (the results differ only by being awaited)."""
    sync, asynchronous = _surface(resources), _surface(async_resources)
    assert sync == asynchronous and set(sync) >= {"Usage", "Costs", "Pricing", "Forecasts", "Export"}
