"""Request examples of the OpenAPI document (the seeds' own where they give one)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

USAGE = {
    "provider": "openai",
    "model": "gpt-4",
    "organization_id": "org-123",
    "project_id": "proj-checkout",
    "user_id": "user-42",
    "prompt_tokens": 1500,
    "completion_tokens": 500,
    "cached_tokens": 200,
    "latency_ms": 1200,
    "tags": ["production"],
    "metadata": {"team": "search"},
}
BUDGET = {
    "name": "Checkout monthly",
    "organization_id": "org-123",
    "project_id": "proj-checkout",
    "amount": "5000.00",
    "currency": "USD",
    "period": "monthly",
    "thresholds": [50, 80, 100],
    "hard": False,
}
PRICING_RULE = {
    "provider": "openai",
    "model": "gpt-4-turbo",
    "pricing_structure": {
        "type": "per_token",
        "input_price_per_million": "10.00",
        "output_price_per_million": "30.00",
        "cached_input_discount": "0.5",
    },
    "currency": "USD",
    "effective_date": "2025-01-01",
}
WEBHOOK = {"url": "https://hooks.example.com/costops", "events": ["cost.anomaly", "budget.threshold"]}
ORGANIZATION = {"id": "org-123", "name": "Acme"}
API_KEY = {"name": "checkout service", "organization_id": "org-123", "role": "developer", "environment": "live"}
USER = {"email": "ana@acme.com", "name": "Ana", "password": "a long passphrase", "roles": ["analyst"]}
ROLE = {"name": "finops", "description": "Budgets and exports", "permissions": ["read:costs", "write:budgets"]}
LOGIN = {"username": "ana@acme.com", "password": "a long passphrase"}


def body(model: type[BaseModel] | dict[str, Any], example: object) -> dict[str, Any]:
    """An ``openapi_extra`` request body: the model's JSON schema (or a schema) and an example."""
    schema = model if isinstance(model, dict) else model.model_json_schema()
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema, "example": example}}}}
