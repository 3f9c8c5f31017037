"""The HTTP layer of ``create_app``: CORS preflights and the body limit answer before any
route (no lifespan is needed for them)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from api.app import create_app
from llm_cost_ops.settings import ApiSettings, Settings


def client(**api: object) -> TestClient:
    return TestClient(create_app(Settings(_env_file=None, api=ApiSettings(**api)), "all"))  # type: ignore[arg-type]


def preflight(test_client: TestClient, origin: str) -> dict[str, str]:
    answer = test_client.options(
        "/api/v1/costs",
        headers={"Origin": origin, "Access-Control-Request-Method": "GET",
                 "Access-Control-Request-Headers": "authorization"},
    )  # fmt: skip
    return dict(answer.headers)


def test_cors_allows_the_configured_origins_only() -> None:
    allowed = preflight(client(cors_origins=("https://dash.example.com",)), "https://dash.example.com")
    assert allowed["access-control-allow-origin"] == "https://dash.example.com"
    assert "authorization" in allowed["access-control-allow-headers"].lower()
    other = preflight(client(cors_origins=("https://dash.example.com",)), "https://evil.example.com")
    assert "access-control-allow-origin" not in other


def test_no_cors_by_default() -> None:
    assert "access-control-allow-origin" not in preflight(client(), "https://dash.example.com")


def test_cors_origins_from_a_comma_separated_variable() -> None:
    settings = ApiSettings.model_validate({"cors_origins": "https://a.example.com,https://b.example.com"})
    assert settings.cors_origins == ("https://a.example.com", "https://b.example.com")


def test_a_declared_oversized_body_is_refused_before_reading() -> None:
    answer = client(max_request_mb=0.001).post(
        "/api/v1/usage", content=b"x" * 2000, headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 413
    assert answer.json() == {
        "error": {"code": "REQUEST_TOO_LARGE", "message": "the request body is larger than 1048 bytes"}
    }
