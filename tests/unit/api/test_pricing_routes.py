"""The pricing routes (api/routes/pricing.py) over a real control store on SQLite."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from access_keys import admin_authenticator
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.errors import register_error_handlers
from api.routes import pricing
from sinks.control_store import ControlStore

SEED: dict[str, Any] = {
    "provider": "openai",
    "model": "gpt-4-turbo",
    "pricing_structure": {
        "type": "per_token",
        "input_price_per_million": 10.0,
        "output_price_per_million": 30.0,
        "cached_input_discount": 0.5,
    },
    "currency": "USD",
    "effective_date": "2025-01-01",
}


@dataclass
class PricingContext:
    """What the pricing routes read from ``app.state.context``, and a count of announcements."""

    control: ControlStore | None
    announced: int = 0

    async def control_changed(self) -> None:
        self.announced += 1


@pytest.fixture
def context(tmp_path: Path) -> Iterator[PricingContext]:
    store = ControlStore.open(f"sqlite:///{tmp_path / 'control.db'}")
    yield PricingContext(store)
    store.close()


@pytest.fixture
def client(context: PricingContext) -> Iterator[TestClient]:
    app = FastAPI()
    register_error_handlers(app)
    app.include_router(pricing.router)
    app.state.context = context
    assert context.control is not None
    app.state.authenticator, secret = admin_authenticator(context.control)
    with TestClient(app, headers={"Authorization": f"Bearer {secret}"}) as client:
        yield client


def seed(**overrides: Any) -> dict[str, Any]:
    return {**SEED, **overrides}


def stored(client: TestClient) -> list[dict[str, Any]]:
    body = client.get("/api/v1/pricing").json()
    assert body["total"] == len(body["data"])
    data: list[dict[str, Any]] = body["data"]
    return data


def test_create_the_seeds_example(client: TestClient, context: PricingContext) -> None:
    response = client.post("/api/v1/pricing", json=SEED)
    assert response.status_code == 201
    rule = response.json()
    assert rule["id"].startswith("price_")
    assert rule["pricing_structure"] == {
        "type": "per_token",
        "input_price_per_million": "10.0",
        "output_price_per_million": "30.0",
        "cached_input_discount": "0.5",
        "cached_input_price_per_million": None,
        "cache_write_price_per_million": None,
        "reasoning_price_per_million": None,
    }
    assert rule["currency"] == "USD"
    assert rule["scope"] == "global"
    assert rule["effective_date"] == "2025-01-01T00:00:00Z"
    assert rule["end_date"] is None
    assert rule["created_by"] == "key:key_admin"  # the caller's key
    assert rule["created_at"].endswith("Z")
    assert client.get(f"/api/v1/pricing/{rule['id']}").json() == rule
    assert context.announced == 1


def test_prices_keep_every_digit(client: TestClient) -> None:
    # Sent as JSON numbers: a float would turn the second into 123456789.12345679.
    body = (
        '{"provider": "openai", "model": "m", "pricing_structure": {"type": "per_token",'
        ' "input_price_per_million": 0.0000000001, "output_price_per_million": 123456789.1234567891}}'
    )
    response = client.post("/api/v1/pricing", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 201
    structure = response.json()["pricing_structure"]
    assert Decimal(structure["input_price_per_million"]) == Decimal("0.0000000001")
    assert structure["output_price_per_million"] == "123456789.1234567891"


@pytest.mark.parametrize(
    ("body", "field", "reason"),
    [
        (
            seed(pricing_structure={**SEED["pricing_structure"], "input_price_per_million": -1}),
            "pricing_structure.input_price_per_million",
            "must be greater than or equal to 0",
        ),
        (
            seed(pricing_structure={**SEED["pricing_structure"], "output_price_per_million": "thirty"}),
            "pricing_structure.output_price_per_million",
            "must be a number",
        ),
        (
            seed(
                pricing_structure={
                    "type": "tiered",
                    "tiers": [
                        {"threshold": 0, "input_price_per_million": 3, "output_price_per_million": 15},
                        {"threshold": 0, "input_price_per_million": 2, "output_price_per_million": 10},
                    ],
                }
            ),
            "pricing_structure.tiers",
            "tiers out of order: each threshold must be greater than the previous one",
        ),
        (seed(currency="XYZ"), "currency", "unknown currency; one of: "),
        (seed(provider=""), "provider", "must not be empty"),
    ],
)
def test_invalid_rule_is_422_and_not_stored(
    client: TestClient, context: PricingContext, body: dict[str, Any], field: str, reason: str
) -> None:
    response = client.post("/api/v1/pricing", json=body)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert error["field_errors"][field].startswith(reason)
    assert stored(client) == []
    assert context.announced == 0


def test_body_that_is_not_json(client: TestClient, context: PricingContext) -> None:
    response = client.post("/api/v1/pricing", content=b"{not json", headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    assert "body" in response.json()["error"]["field_errors"]
    assert context.announced == 0


def test_overlapping_range_is_422_and_not_stored(client: TestClient, context: PricingContext) -> None:
    first = client.post("/api/v1/pricing", json=SEED).json()
    response = client.post("/api/v1/pricing", json=seed(effective_date="2025-03-01T00:00:00Z"))
    assert response.status_code == 422
    assert response.json()["error"] == {
        "code": "VALIDATION_ERROR",
        "message": "invalid pricing: effective_date",
        "field_errors": {
            "effective_date": f"overlaps {first['id']} (from 2025-01-01T00:00:00Z to open); set its end_date first"
        },
    }
    assert [r["id"] for r in stored(client)] == [first["id"]]
    assert context.announced == 1


def test_unknown_rule_is_404(client: TestClient, context: PricingContext) -> None:
    for method, path in [
        ("GET", "/api/v1/pricing/price_nope"),
        ("PUT", "/api/v1/pricing/price_nope"),
        ("DELETE", "/api/v1/pricing/price_nope"),
        ("GET", "/api/v1/pricing/price_nope/history"),
    ]:
        response = client.request(method, path, json=SEED if method == "PUT" else None)
        assert response.status_code == 404, (method, path)
        assert response.json()["error"] == {"code": "NOT_FOUND", "message": "no pricing rule price_nope"}
    assert context.announced == 0


def test_put_replaces_the_rule(client: TestClient, context: PricingContext) -> None:
    created = client.post("/api/v1/pricing", json=SEED).json()
    replacement = seed(
        pricing_structure={"type": "per_request", "price_per_request": "0.01"},
        end_date="2025-07-01",
        description="contract",
    )
    response = client.put(f"/api/v1/pricing/{created['id']}", json=replacement)
    assert response.status_code == 200
    updated = response.json()
    assert updated["id"] == created["id"]
    assert updated["created_at"] == created["created_at"]
    assert updated["created_by"] == "key:key_admin"  # the creator, not the editor
    assert updated["pricing_structure"] == {
        "type": "per_request",
        "price_per_request": "0.01",
        "included_tokens": 0,
        "overage_price_per_million": "0",
    }
    assert updated["end_date"] == "2025-07-01T00:00:00Z"
    assert stored(client) == [updated]
    assert context.announced == 2


def test_put_invalid_changes_nothing(client: TestClient, context: PricingContext) -> None:
    created = client.post("/api/v1/pricing", json=SEED).json()
    response = client.put(f"/api/v1/pricing/{created['id']}", json=seed(end_date="2024-01-01"))
    assert response.status_code == 422
    assert response.json()["error"]["field_errors"] == {"end_date": "must be after effective_date"}
    assert stored(client) == [created]
    assert context.announced == 1


def test_delete_returns_the_rule(client: TestClient, context: PricingContext) -> None:
    created = client.post("/api/v1/pricing", json=SEED).json()
    response = client.delete(f"/api/v1/pricing/{created['id']}")
    assert response.status_code == 200
    assert response.json() == created
    assert stored(client) == []
    assert client.get(f"/api/v1/pricing/{created['id']}").status_code == 404
    assert context.announced == 2


def test_history(client: TestClient) -> None:
    created = client.post("/api/v1/pricing", json=SEED).json()
    updated = client.put(f"/api/v1/pricing/{created['id']}", json=seed(end_date="2025-02-01")).json()
    client.delete(f"/api/v1/pricing/{created['id']}")
    history = client.get(f"/api/v1/pricing/{created['id']}/history").json()
    assert [(e["action"], e["actor"]) for e in history] == [
        (a, "key:key_admin") for a in ("create", "update", "delete")
    ]
    assert {e["source"] for e in history} == {"testclient"}  # where the request came from
    assert [e["id"] for e in history] == sorted(e["id"] for e in history)
    assert (history[0]["before"], history[0]["after"]) == (None, created)
    assert (history[1]["before"], history[1]["after"]) == (created, updated)
    assert (history[2]["before"], history[2]["after"]) == (updated, None)
    assert all(e["entity_type"] == "pricing_rule" and e["entity_id"] == created["id"] for e in history)
    assert history[0]["at"].endswith("Z")


def test_list_filters(client: TestClient) -> None:
    old = client.post("/api/v1/pricing", json=seed(effective_date="2024-01-01", end_date="2024-06-01")).json()
    now = client.post("/api/v1/pricing", json=seed(effective_date="2024-06-01")).json()
    org = client.post("/api/v1/pricing", json=seed(organization_id="org-1")).json()
    other = client.post("/api/v1/pricing", json=seed(provider="anthropic", model="claude-3")).json()

    def ids(**params: Any) -> set[str]:
        response = client.get("/api/v1/pricing", params=params)
        assert response.status_code == 200
        return {r["id"] for r in response.json()["data"]}

    assert ids() == {old["id"], now["id"], org["id"], other["id"]}
    assert ids(provider="anthropic") == {other["id"]}
    assert ids(model="gpt-4-turbo", scope="global") == {old["id"], now["id"]}
    assert ids(organization_id="org-1") == {org["id"]}
    assert ids(active="true") == {now["id"], org["id"], other["id"]}


def test_list_rejects_an_unknown_scope(client: TestClient) -> None:
    response = client.get("/api/v1/pricing", params={"scope": "team"})
    assert response.status_code == 422
    assert "scope" in response.json()["error"]["field_errors"]


def test_no_store_is_503(context: PricingContext, client: TestClient) -> None:
    context.control = None
    response = client.post("/api/v1/pricing", json=SEED)
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert client.get("/api/v1/pricing").status_code == 503
    assert context.announced == 0
