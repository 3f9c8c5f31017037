"""Auth failures and rate-limited requests are counted, through the real ``authenticate``."""

from __future__ import annotations

from types import SimpleNamespace

from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.auth import PrincipalDep
from api.errors import register_error_handlers
from api.rate_limit import RateLimiter
from llm_cost_ops.errors import AuthenticationError
from llm_cost_ops.metrics import PipelineMetrics


class OneKeyAuthenticator:
    """Knows the key ``good`` only; one request a caller, then rate limited."""

    limiter = RateLimiter(rate=0.001, burst=1)

    def principal(self, credential: str, source: str | None) -> SimpleNamespace:
        if credential != "good":
            raise AuthenticationError("Invalid API key")
        return SimpleNamespace(kind="key", id="k1")


def test_auth_failures_and_rate_limits_are_counted() -> None:
    app = FastAPI()
    register_error_handlers(app)
    metrics = PipelineMetrics()
    app.state.context = SimpleNamespace(metrics=metrics)
    app.state.authenticator = OneKeyAuthenticator()

    @app.get("/private")
    def private(principal: PrincipalDep) -> dict[str, str]:
        return {"ok": "yes"}

    client = TestClient(app)
    assert client.get("/private").status_code == 401
    assert client.get("/private", headers={"X-API-Key": "bad"}).status_code == 401
    assert client.get("/private", headers={"X-API-Key": "good"}).status_code == 200
    assert client.get("/private", headers={"X-API-Key": "good"}).status_code == 429

    value = metrics.registry.get_sample_value
    assert value("costops_http_auth_failures_total", {"reason": "missing"}) == 1
    assert value("costops_http_auth_failures_total", {"reason": "invalid"}) == 1
    assert value("costops_http_rate_limited_total", {"limiter": "api"}) == 1
