"""The Python SDK against a running pipeline (API + sink process, a pricing worker): what it
sends is accepted, priced and listed back with exact Decimal money; errors arrive as the
SDK's classes; a key of one organization sees only its data; exports stream to a file."""

from __future__ import annotations

import asyncio
import csv
import json
import time
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import pytest

from llm_cost_ops import (
    AsyncCostOpsClient,
    AuthenticationError,
    CostOpsClient,
    NotFoundError,
    PermissionDeniedError,
    ValidationError,
)

from processes import ADMIN_KEY, ApiPipeline

pytestmark = pytest.mark.integration

T = TypeVar("T")

README_EXAMPLE = """\
from llm_cost_ops import CostOpsClient
client = CostOpsClient()  # COSTOPS_API_KEY, COSTOPS_API_URL
client.usage.create(provider="openai", model="gpt-4o", organization_id="org-123", prompt_tokens=1200, completion_tokens=300)
"""  # noqa: E501 (the README's line, verbatim)
"""The README's three-line example, run as is by ``test_the_readme_example_runs``."""


README_TRACK = """\
from llm_cost_ops import CostOpsClient
client = CostOpsClient()  # COSTOPS_API_KEY, COSTOPS_API_URL
client.usage.track(response, organization_id="org-123", project_id="chat")  # response = openai/anthropic/... result
"""
"""The README's example of tracking a provider response, run as is (with ``response`` given)."""


@pytest.fixture(scope="module")
def worker(pipeline: ApiPipeline) -> Iterator[None]:
    with pipeline.worker("sdk-worker"):
        yield


@pytest.fixture
def client(pipeline: ApiPipeline) -> Iterator[CostOpsClient]:
    with CostOpsClient(api_key=ADMIN_KEY, base_url=pipeline.env["COSTOPS_API_URL"]) as admin:
        yield admin


def new_org() -> str:
    return f"org-sdk-{uuid.uuid4().hex[:8]}"


def org_key(pipeline: ApiPipeline, org: str, role: str = "analyst") -> str:
    """A key of ``org`` (created with the admin key, as an operator would)."""
    pipeline.api.post("/api/v1/admin/organizations", json={"id": org, "name": org})
    response = pipeline.api.post("/api/v1/admin/api-keys", json={"name": f"{role} of {org}", "organization_id": org,
                                                                  "role": role})  # fmt: skip
    assert response.status_code == 201, response.text
    key: str = response.json()["key"]
    return key


def eventually(read: Callable[[], T], done: Callable[[T], bool], what: str, timeout_s: float = 90) -> T:
    deadline = time.monotonic() + timeout_s
    while True:
        found = read()
        if done(found):
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}: last {found!r}")
        time.sleep(0.5)


def record(org: str, **fields: Any) -> dict[str, Any]:
    return {"provider": "openai", "model": "gpt-4o-mini", "organization_id": org, "prompt_tokens": 1000,
            "completion_tokens": 250} | fields  # fmt: skip


def test_created_usage_is_priced_and_listed_with_exact_decimal_money(
    pipeline: ApiPipeline, worker: None, client: CostOpsClient
) -> None:
    org = new_org()
    one = client.usage.create(provider="openai", model="gpt-4o", organization_id=org, prompt_tokens=1200,
                              completion_tokens=300, tags=["sdk"], metadata={"team": "search"})  # fmt: skip
    assert (one.status, one.organization_id) == ("accepted", org) and one.id  # the SDK gave it an id
    batch = client.usage.batch_create(
        [record(org), record(org, id=f"evt-{uuid.uuid4().hex}"), record(org, prompt_tokens=-1)]
    )
    assert batch.accepted == 2 and len(batch.ids) == 2
    assert [r.index for r in batch.rejected] == [2] and "prompt_tokens" in batch.rejected[0].field_errors
    ids = {one.id, *batch.ids}

    page = eventually(lambda: client.costs.list(organization_id=org), lambda p: p.total == 3, "3 priced records")
    assert {r.id for r in page.data} == ids and page.has_more is False
    listed = list(client.costs.list_paginated(organization_id=org, per_page=1))  # three pages, by next_cursor
    assert sorted(r.id for r in listed) == sorted(ids)
    for found in listed:
        assert found.pricing_status == "priced" and isinstance(found.total_cost, Decimal)
        raw = pipeline.api.get(f"/api/v1/costs/{found.id}").json()  # the API's decimal string, exactly
        assert found.total_cost == Decimal(raw["total_cost"]) and str(found.total_cost) == raw["total_cost"]
        assert client.costs.get(found.id).input_cost == Decimal(raw["input_cost"])
    total = sum((r.total_cost for r in listed if r.total_cost is not None), Decimal(0))

    summary = client.costs.summary(organization_id=org)
    assert (summary.total_requests, summary.total_cost) == (3, total)
    groups = client.costs.aggregate(group_by=["model", "metadata.team"], granularity="day", organization_id=org)
    assert sum((g.total_cost or Decimal(0) for g in groups.data), Decimal(0)) == total
    assert {(g.key("model"), g.key("metadata.team"), g.request_count) for g in groups.data} == {
        ("gpt-4o", "search", 1),
        ("gpt-4o-mini", None, 2),
    }
    tagged = client.costs.list(organization_id=org, tags=["sdk"], metadata={"team": "search"})
    assert [r.id for r in tagged.data] == [one.id]
    assert client.usage.get(one.id).metadata == {"team": "search"}
    assert client.usage.stats(organization_id=org).events == 3


def test_errors_arrive_as_the_sdk_classes(pipeline: ApiPipeline, client: CostOpsClient) -> None:
    with pytest.raises(ValidationError) as invalid:
        client.usage.create(provider="openai", model="gpt-4o", organization_id=new_org(), prompt_tokens=-5,
                            completion_tokens=1)  # fmt: skip
    assert invalid.value.status_code == 422 and "prompt_tokens" in invalid.value.field_errors
    with pytest.raises(NotFoundError):
        client.costs.get("no-such-event")
    bad = CostOpsClient(api_key="sk_test_not_a_key_0000000000000000", base_url=pipeline.env["COSTOPS_API_URL"])
    with bad, pytest.raises(AuthenticationError) as refused:
        bad.costs.summary()
    assert refused.value.code == "AUTH_001"


def test_pricing_rules_round_trip(client: CostOpsClient) -> None:
    org = new_org()
    rule = client.pricing.create(provider="openai", model="sdk-model", organization_id=org,
                                 pricing_structure={"type": "per_token", "input_price_per_million": Decimal("1.25"),
                                                    "output_price_per_million": "2"})  # fmt: skip
    assert rule.pricing_structure.input_price_per_million == Decimal("1.25")
    assert client.pricing.get(rule.id).id == rule.id
    assert [r.id for r in client.pricing.list(organization_id=org).data] == [rule.id]
    changed = client.pricing.update(rule.id, provider="openai", model="sdk-model", organization_id=org,
                                    pricing_structure={"type": "per_request", "price_per_request": "0.01"})  # fmt: skip
    assert changed.pricing_structure.price_per_request == Decimal("0.01")
    client.pricing.delete(rule.id)
    with pytest.raises(NotFoundError):
        client.pricing.get(rule.id)


def test_a_key_sees_its_organization_only_and_exports_it(
    pipeline: ApiPipeline, worker: None, client: CostOpsClient, tmp_path: Path
) -> None:
    mine, theirs = new_org(), new_org()
    key = org_key(pipeline, mine)
    client.usage.batch_create([record(mine), record(mine, model="gpt-4o"), record(theirs)])
    with CostOpsClient(api_key=key, base_url=pipeline.env["COSTOPS_API_URL"]) as tenant:
        page = eventually(tenant.costs.list, lambda p: p.total == 2, f"the 2 records of {mine}")
        assert {r.organization_id for r in page.data} == {mine}
        with pytest.raises(PermissionDeniedError) as denied:
            tenant.costs.list(organization_id=theirs)
        assert "organization_id" in denied.value.field_errors

        exported = tenant.export.create(tmp_path / "costs.csv", format="csv")
        assert exported.total == 2 and exported.bytes_written == (tmp_path / "costs.csv").stat().st_size
        with (tmp_path / "costs.csv").open(newline="") as file:
            rows = list(csv.DictReader(file))
        assert sorted(r["id"] for r in rows) == sorted(r.id for r in page.data)
        by_id = {r.id: r for r in page.data}
        assert all(Decimal(r["total_cost"]) == by_id[r["id"]].total_cost for r in rows)


def test_the_async_client_does_the_same(pipeline: ApiPipeline, worker: None, tmp_path: Path) -> None:
    org = new_org()

    async def run() -> None:
        async with AsyncCostOpsClient(api_key=ADMIN_KEY, base_url=pipeline.env["COSTOPS_API_URL"]) as client:
            one = await client.usage.create(**record(org))
            batch = await client.usage.batch_create([record(org), record(org, model="gpt-4o")])
            deadline = time.monotonic() + 90
            while (await client.costs.list(organization_id=org)).total < 3:
                assert time.monotonic() < deadline, f"the records of {org} were never priced"
                await asyncio.sleep(0.5)
            listed = [r async for r in client.costs.list_paginated(organization_id=org, per_page=2)]
            assert sorted(r.id for r in listed) == sorted([one.id, *batch.ids])
            summary = await client.costs.summary(organization_id=org)
            assert summary.total_cost == sum((r.total_cost or Decimal(0) for r in listed), Decimal(0))
            with pytest.raises(ValidationError):
                await client.usage.create(**record(org, completion_tokens=-1))
            exported = await client.export.create(tmp_path / "costs.jsonl", format="jsonl", organization_id=org)
            assert exported.total == 3 and len((tmp_path / "costs.jsonl").read_text().splitlines()) == 3

    asyncio.run(run())


def test_the_readme_example_runs(pipeline: ApiPipeline, worker: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COSTOPS_API_KEY", ADMIN_KEY)
    monkeypatch.setenv("COSTOPS_API_URL", pipeline.env["COSTOPS_API_URL"])
    scope: dict[str, Any] = {}
    exec(README_EXAMPLE, scope)
    client = scope["client"]
    assert isinstance(client, CostOpsClient)
    with client:
        found = eventually(lambda: client.usage.list(organization_id="org-123"), lambda p: p.total == 1, "the record")
    assert (found.data[0].model, found.data[0].prompt_tokens, found.data[0].completion_tokens) == ("gpt-4o", 1200, 300)


def test_the_usage_of_a_provider_response_in_one_call(pipeline: ApiPipeline, worker: None) -> None:
    org = new_org()
    response = json.loads((Path(__file__).parents[1] / "fixtures/providers/anthropic_message.json").read_text())
    with CostOpsClient(api_key=org_key(pipeline, org, "developer"), base_url=pipeline.env["COSTOPS_API_URL"]) as svc:
        accepted = svc.usage.track(response, project_id="chat")  # the key's organization
        assert accepted.organization_id == org
        stored = eventually(lambda: svc.usage.list(), lambda page: len(page.data) == 1, "the tracked event stored")
    (event,) = stored.data
    usage = response["usage"]
    cache_read, cache_write = usage["cache_read_input_tokens"], usage["cache_creation_input_tokens"]
    assert (event.provider, event.model, event.project_id) == ("anthropic", response["model"], "chat")
    assert event.prompt_tokens == usage["input_tokens"] + cache_read + cache_write
    assert (event.cached_tokens, event.cache_write_tokens) == (cache_read, cache_write)
    assert event.completion_tokens == usage["output_tokens"]


def test_the_readme_track_example_runs(pipeline: ApiPipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COSTOPS_API_KEY", ADMIN_KEY)
    monkeypatch.setenv("COSTOPS_API_URL", pipeline.env["COSTOPS_API_URL"])
    response = json.loads((Path(__file__).parents[1] / "fixtures/providers/openai_chat.json").read_text())
    scope: dict[str, Any] = {"response": response}
    exec(README_TRACK, scope)
    scope["client"].close()
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    assert README_TRACK in readme and README_EXAMPLE in readme
