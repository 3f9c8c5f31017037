"""Who may call what, through the running API: every operation of the OpenAPI document for
each of the seeds' roles, and a key of one organization against another's data through
every filter."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from schemas.auth import PERMISSIONS, PLATFORM_PERMISSIONS

from processes import ApiPipeline, wait_for

ROLES = ("admin", "manager", "analyst", "developer", "viewer")
ANY = "(any key)"
PUBLIC = "(no key)"

# The permission each operation needs: a decision per endpoint, written down independently of
# the code. An endpoint added without an entry here fails test_every_operation_has_a_decision.
EXPECTED: dict[str, str] = {
    "GET /health": PUBLIC,
    "GET /ready": PUBLIC,
    "GET /metrics": PUBLIC,
    "POST /api/v1/auth/login": PUBLIC,
    "POST /api/v1/auth/refresh": PUBLIC,
    "POST /api/v1/auth/logout": PUBLIC,
    "GET /api/v1/auth/me": ANY,
    "GET /api/v1/usage": "read:costs",
    "POST /api/v1/usage": "write:costs",
    "POST /api/v1/usage/batch": "write:costs",
    "GET /api/v1/usage/stats": "read:costs",
    "GET /api/v1/usage/{event_id}": "read:costs",
    "DELETE /api/v1/usage/{event_id}": "delete:costs",
    "GET /api/v1/costs/export": "export:data",
    "GET /api/v1/reports": "read:reports",
    "POST /api/v1/reports": "write:reports",
    "GET /api/v1/reports/{report_id}": "read:reports",
    "DELETE /api/v1/reports/{report_id}": "write:reports",
    "GET /api/v1/reports/{report_id}/download": "read:reports",
    "GET /api/v1/costs": "read:costs",
    "GET /api/v1/costs/aggregate": "read:costs",
    "GET /api/v1/costs/summary": "read:costs",
    "GET /api/v1/costs/trends": "read:costs",
    "GET /api/v1/costs/{event_id}": "read:costs",
    "GET /api/v1/analytics/usage": "read:costs",
    "GET /api/v1/analytics/costs": "read:costs",
    "GET /api/v1/analytics/providers": "read:costs",
    "GET /api/v1/analytics/models": "read:costs",
    "GET /api/v1/alerts": "read:alerts",
    "GET /api/v1/forecast/anomalies": "read:costs",
    "POST /api/v1/forecast/cost": "read:costs",
    "POST /api/v1/forecast/usage": "read:costs",
    "GET /api/v1/pricing": "read:pricing",
    "POST /api/v1/pricing": "write:pricing",
    "GET /api/v1/pricing/missing": "read:pricing",
    "POST /api/v1/pricing/reprice": "write:pricing",
    "GET /api/v1/pricing/{rule_id}": "read:pricing",
    "PUT /api/v1/pricing/{rule_id}": "write:pricing",
    "DELETE /api/v1/pricing/{rule_id}": "write:pricing",
    "GET /api/v1/pricing/{rule_id}/history": "read:pricing",
    "GET /api/v1/dlq": "admin:dlq",
    "POST /api/v1/dlq/replay": "admin:dlq",
    "GET /api/v1/webhooks": "read:webhooks",
    "POST /api/v1/webhooks": "write:webhooks",
    "GET /api/v1/webhooks/{webhook_id}": "read:webhooks",
    "DELETE /api/v1/webhooks/{webhook_id}": "write:webhooks",
    "GET /api/v1/webhooks/{webhook_id}/deliveries": "read:webhooks",
    "GET /api/v1/budgets": "read:budgets",
    "POST /api/v1/budgets": "write:budgets",
    "GET /api/v1/budgets/{budget_id}": "read:budgets",
    "PUT /api/v1/budgets/{budget_id}": "write:budgets",
    "DELETE /api/v1/budgets/{budget_id}": "write:budgets",
    "GET /api/v1/budgets/{budget_id}/history": "read:budgets",
    "GET /api/v1/admin/organizations": "admin:organizations",
    "POST /api/v1/admin/organizations": "admin:organizations",
    "GET /api/v1/admin/organizations/{organization_id}": ANY,
    "GET /api/v1/admin/users": "read:users",
    "POST /api/v1/admin/users": "write:users",
    "PUT /api/v1/admin/users/{user_id}/roles": "write:users",
    "GET /api/v1/admin/roles": ANY,
    "POST /api/v1/admin/roles": "admin:roles",
    "GET /api/v1/admin/api-keys": "read:api_keys",
    "POST /api/v1/admin/api-keys": "write:api_keys",
    "GET /api/v1/admin/api-keys/{key_id}": "read:api_keys",
    "DELETE /api/v1/admin/api-keys/{key_id}": "write:api_keys",
    "POST /api/v1/admin/api-keys/{key_id}/rotate": "write:api_keys",
    "GET /api/v1/audit": "read:audit",
}

# The seeds' rbac.yaml, plus the reads this platform added (alerts, pricing, webhooks).
ROLE_PERMISSIONS: dict[str, set[str]] = {
    "manager": {"read:costs", "read:budgets", "write:budgets", "read:reports", "write:reports", "read:teams",
                "write:teams", "read:users", "read:alerts", "read:webhooks", "write:webhooks", "read:pricing"},
    "analyst": {"read:costs", "read:budgets", "read:reports", "write:reports", "export:data", "read:alerts",
                "read:pricing"},
    "developer": {"write:costs", "read:costs", "read:api_keys", "read:alerts", "read:pricing"},
    "viewer": {"read:costs", "read:budgets", "read:reports", "read:alerts"},
}  # fmt: skip


def operations(api: httpx.Client) -> list[tuple[str, str]]:
    document = api.get("/openapi.json").json()
    return [
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method in ("get", "post", "put", "delete")
    ]


def allowed(role: str, permission: str) -> bool:
    return role == "admin" or permission in (ANY, PUBLIC) or permission in ROLE_PERMISSIONS[role]


@pytest.fixture(scope="module")
def keys(pipeline: ApiPipeline) -> dict[str, str]:
    """A key of each role in organization org-a, and a viewer of org-b."""
    api = pipeline.api
    for org in ("org-a", "org-b"):
        assert api.post("/api/v1/admin/organizations", json={"id": org, "name": org.upper()}).status_code == 201
    found = {}
    for role in ROLES:
        body = {"name": f"{role} of org-a", "role": role, "organization_id": "org-a"}
        found[role] = api.post("/api/v1/admin/api-keys", json=body).json()["key"]
    # A custom role with every permission a role of one organization may hold.
    everything = sorted(set(PERMISSIONS) - PLATFORM_PERMISSIONS)
    assert api.post("/api/v1/admin/roles", json={"name": "org-owner", "permissions": everything}).status_code == 201
    found["org-owner"] = api.post(
        "/api/v1/admin/api-keys", json={"name": "owner of org-a", "role": "org-owner", "organization_id": "org-a"}
    ).json()["key"]
    found["viewer-b"] = api.post(
        "/api/v1/admin/api-keys", json={"name": "viewer of org-b", "role": "viewer", "organization_id": "org-b"}
    ).json()["key"]
    return found


def call(api: httpx.Client, method: str, path: str, key: str | None, **kwargs: Any) -> httpx.Response:
    concrete = re.sub(r"\{[^}]+\}", "no-such-id", path)
    headers = {"Authorization": f"Bearer {key}"} if key else {"Authorization": ""}
    if method in ("POST", "PUT") and "json" not in kwargs:
        kwargs["json"] = {}
    return api.request(method, concrete, headers=headers, **kwargs)


def test_every_operation_has_a_decision(pipeline: ApiPipeline) -> None:
    listed = {f"{method} {path}" for method, path in operations(pipeline.api)}
    assert listed - set(EXPECTED) == set(), "operations without a permission decision in EXPECTED"
    assert set(EXPECTED) - listed - {"GET /health", "GET /ready", "GET /metrics"} == set(), "stale entries"


def test_without_a_key_only_health_ready_metrics_and_sign_in_answer(pipeline: ApiPipeline) -> None:
    for method, path in operations(pipeline.api):
        answer = call(pipeline.api, method, path, None)
        if EXPECTED[f"{method} {path}"] == PUBLIC:
            assert answer.status_code != 401, f"{method} {path}"
        else:
            assert answer.status_code == 401, f"{method} {path}: {answer.status_code} {answer.text[:200]}"
            assert answer.json()["error"]["code"] == "AUTH_001"
    for path in ("/health", "/ready", "/metrics"):
        assert pipeline.api.get(path, headers={"Authorization": ""}).status_code == 200
    assert pipeline.api.get("/openapi.json", headers={"Authorization": ""}).status_code == 401


@pytest.mark.parametrize("role", ROLES)
def test_each_role_on_every_operation(pipeline: ApiPipeline, keys: dict[str, str], role: str) -> None:
    wrong = []
    for method, path in operations(pipeline.api):
        permission = EXPECTED[f"{method} {path}"]
        answer = call(pipeline.api, method, path, keys[role])
        denied = answer.status_code == 403 and answer.json()["error"]["code"] == "AUTH_002"
        if allowed(role, permission) == denied or answer.status_code in (401, 500):
            wrong.append(f"{method} {path} ({permission}): {answer.status_code} {answer.text[:160]}")
    assert wrong == []


@pytest.fixture(scope="module")
def two_tenants(pipeline: ApiPipeline, keys: dict[str, str], usage_record_module: Callable[..., Any]) -> Iterator[None]:
    """Events of org-a and org-b (the same projects, tags and metadata), stored."""
    records = [
        usage_record_module(organization_id=org, project_id="shared", tags=["prod"], metadata={"team": "search"})
        for org in ("org-a", "org-b")
        for _ in range(5)
    ]
    with pipeline.worker("access-worker"):
        assert pipeline.api.post("/api/v1/usage/batch", json={"records": records}).status_code == 202
        wait_for(
            lambda: pipeline.api.get("/api/v1/usage/stats", params={"start_date": "2025-01-01"}).json()["events"] >= 10,
            "both organizations' events stored",
        )
    yield


@pytest.fixture(scope="module")
def usage_record_module() -> Callable[..., dict[str, Any]]:
    counter = iter(range(10**6))

    def build(**overrides: Any) -> dict[str, Any]:
        n = next(counter)
        return {
            "id": f"evt-access-{n}-{overrides.get('organization_id')}",
            "timestamp": f"2025-01-15T10:00:{n % 60:02d}Z",
            "provider": "openai",
            "model": "gpt-4o",
            "prompt_tokens": 1000 + n,
            "completion_tokens": 100,
            **overrides,
        }

    return build


def test_a_key_never_reaches_another_organization(
    pipeline: ApiPipeline, keys: dict[str, str], two_tenants: None
) -> None:
    api = pipeline.api
    a = {"Authorization": f"Bearer {keys['analyst']}"}
    owner = {"Authorization": f"Bearer {keys['org-owner']}"}
    # Every GET that takes organization_id refuses org-b, naming the parameter (to a key that
    # holds every permission of its organization, so the refusal is the tenancy's).
    document = api.get("/openapi.json").json()
    named = [
        path
        for path, item in document["paths"].items()
        if "get" in item
        and any(p["name"] == "organization_id" and p["in"] == "query" for p in item["get"].get("parameters", []))
    ]
    assert len(named) >= 10
    for path in named:
        params = {"organization_id": "org-b", "start_date": "2025-01-01", "end_date": "2025-01-31"}
        answer = api.get(re.sub(r"\{[^}]+\}", "x", path), params=params, headers=owner)
        assert answer.status_code == 403, path
        assert "organization_id" in answer.json()["error"]["field_errors"], path

    # Without it, every answer is org-a's alone, whatever the other filters.
    everything = {"start_date": "2025-01-01", "end_date": "2025-12-31"}
    listed = api.get("/api/v1/costs", params=everything, headers=a).json()["data"]
    assert len(listed) == 5 and {r["organization_id"] for r in listed} == {"org-a"}
    usage = api.get("/api/v1/usage", params={**everything, "tags": "prod"}, headers=a).json()["data"]
    assert {r["organization_id"] for r in usage} == {"org-a"}
    by_org = api.get("/api/v1/costs/aggregate", params={**everything, "group_by": "organization_id"}, headers=a).json()[
        "data"
    ]
    assert [g["organization_id"] for g in by_org] == ["org-a"]
    summary = api.get("/api/v1/costs/summary", params=everything, headers=a).json()
    assert summary["total_requests"] == 5
    meta = api.get("/api/v1/costs", params={**everything, "metadata.team": "search"}, headers=a).json()["data"]
    assert {r["organization_id"] for r in meta} == {"org-a"}
    models = api.get("/api/v1/analytics/models", params=everything, headers=a).json()
    assert sum(m["requests"] for m in models["data"]) == 5
    stats = api.get("/api/v1/usage/stats", params=everything, headers=a).json()
    assert stats["events"] == 5

    # Another organization's event id is not found, as if it did not exist.
    theirs = next(
        r["id"] for r in api.get("/api/v1/costs", params={**everything, "organization_id": "org-b"}).json()["data"]
    )
    assert api.get(f"/api/v1/costs/{theirs}", headers=a).status_code == 404
    assert api.get(f"/api/v1/usage/{theirs}", headers=a).status_code == 404
    mine = listed[0]["id"]
    assert api.get(f"/api/v1/costs/{mine}", headers=a).status_code == 200

    # Writing for another organization is refused; the key's own is filled in.
    developer = {"Authorization": f"Bearer {keys['developer']}"}
    record = {"provider": "openai", "model": "gpt-4o", "prompt_tokens": 1, "completion_tokens": 1}
    refused = api.post("/api/v1/usage", json={**record, "organization_id": "org-b"}, headers=developer)
    assert refused.status_code == 403 and "organization_id" in refused.json()["error"]["field_errors"]
    accepted = api.post("/api/v1/usage", json=record, headers=developer)
    assert accepted.status_code == 202 and accepted.json()["organization_id"] == "org-a"
    batch = api.post(
        "/api/v1/usage/batch", json={"records": [record, {**record, "organization_id": "org-b"}]}, headers=developer
    ).json()
    assert batch["accepted"] == 1 and batch["rejected"][0]["code"] == "AUTH_002"

    # Budgets and webhooks of org-b are invisible to org-a's manager.
    budget = api.post(
        "/api/v1/budgets",
        json={"name": "b", "organization_id": "org-b", "amount": "10", "period": "monthly", "currency": "USD"},
    )
    assert budget.status_code == 201, budget.text
    manager = {"Authorization": f"Bearer {keys['manager']}"}
    assert api.get(f"/api/v1/budgets/{budget.json()['id']}", headers=manager).status_code == 404
    assert api.delete(f"/api/v1/budgets/{budget.json()['id']}", headers=manager).status_code == 404
    assert all(b["organization_id"] == "org-a" for b in api.get("/api/v1/budgets", headers=manager).json()["data"])
    b_viewer = {"Authorization": f"Bearer {keys['viewer-b']}"}
    assert api.get("/api/v1/costs/summary", params=everything, headers=b_viewer).json()["total_requests"] == 5


def test_responses_are_compressed_as_the_client_accepts(pipeline: ApiPipeline) -> None:
    for encoding in ("br", "gzip"):
        answer = pipeline.api.get("/openapi.json", headers={"Accept-Encoding": encoding})
        assert answer.status_code == 200 and answer.headers["content-encoding"] == encoding
        assert answer.json()["paths"]  # httpx decoded it


def test_request_size_limit(pipeline: ApiPipeline) -> None:
    big = {"records": [{"provider": "openai", "padding": "x" * 1000}] * 12_000}  # over 10 MB
    answer = pipeline.api.post("/api/v1/usage/batch", json=big)
    assert answer.status_code == 413 and answer.json()["error"]["code"] == "REQUEST_TOO_LARGE"
