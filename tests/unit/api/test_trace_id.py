"""Each request's trace id: taken from ``traceparent`` or ``X-Request-ID``, else generated,
echoed in ``X-Request-ID`` and on every log record emitted while handling the request."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.app import create_app
from api.errors import register_error_handlers
from api.trace import TraceMiddleware
from llm_cost_ops.errors import NotFoundError
from llm_cost_ops.log_format import ContextFilter, JsonFormatter
from llm_cost_ops.settings import ApiSettings, Settings

log = logging.getLogger("tests.trace_id")


def small_app() -> FastAPI:
    app = FastAPI()
    register_error_handlers(app)

    @app.get("/work")
    def work() -> dict[str, str]:
        log.info("working", extra={"operation": "work"})
        return {"ok": "yes"}

    @app.get("/missing")
    def missing() -> None:
        raise NotFoundError("no such thing")

    @app.get("/bug")
    def bug() -> None:
        raise RuntimeError("a bug")

    app.add_middleware(TraceMiddleware)
    return app


@pytest.fixture
def records() -> Iterator[io.StringIO]:
    """JSON lines of every record of this test's loggers and api.errors."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(ContextFilter("api"))
    handler.setFormatter(JsonFormatter())
    loggers = [logging.getLogger(name) for name in ("tests.trace_id", "api.errors")]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    yield stream
    for logger in loggers:
        logger.removeHandler(handler)


def entries(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_trace_id_is_generated_returned_and_logged(records: io.StringIO) -> None:
    answer = TestClient(small_app()).get("/work")
    trace_id = answer.headers["X-Request-ID"]
    assert len(trace_id) == 32
    [entry] = entries(records)
    assert entry["trace_id"] == trace_id
    assert entry["operation"] == "work" and entry["role"] == "api"


def test_the_callers_request_id_is_echoed_and_logged(records: io.StringIO) -> None:
    answer = TestClient(small_app()).get("/work", headers={"X-Request-ID": "req-42"})
    assert answer.headers["X-Request-ID"] == "req-42"
    assert entries(records)[0]["trace_id"] == "req-42"


def test_a_traceparent_trace_id_wins(records: io.StringIO) -> None:
    headers = {
        "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "X-Request-ID": "req-42",
    }
    answer = TestClient(small_app()).get("/work", headers=headers)
    assert answer.headers["X-Request-ID"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert entries(records)[0]["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"


def test_requests_do_not_share_ids() -> None:
    client = TestClient(small_app())
    assert client.get("/work").headers["X-Request-ID"] != client.get("/work").headers["X-Request-ID"]


def test_errors_keep_their_shape_and_carry_the_id(records: io.StringIO) -> None:
    client = TestClient(small_app(), raise_server_exceptions=False)
    missing = client.get("/missing", headers={"X-Request-ID": "req-1"})
    assert missing.status_code == 404
    assert missing.headers["X-Request-ID"] == "req-1"
    assert missing.json() == {"error": {"code": "NOT_FOUND", "message": "no such thing"}}
    bug = client.get("/bug", headers={"X-Request-ID": "req-2"})
    assert bug.status_code == 500
    assert bug.headers["X-Request-ID"] == "req-2"
    assert bug.json()["error"]["code"] == "INTERNAL_ERROR"
    [logged] = [e for e in entries(records) if e["logger"] == "api.errors"]
    assert logged["trace_id"] == "req-2"
    assert "RuntimeError: a bug" in str(logged["exception"])


def test_the_real_app_answers_with_an_id_before_any_route() -> None:
    settings = Settings(_env_file=None, api=ApiSettings(max_request_mb=0.001))  # type: ignore[call-arg]
    answer = TestClient(create_app(settings, "all")).post(
        "/api/v1/usage", content=b"x" * 2000, headers={"Content-Type": "application/json", "X-Request-ID": "r-9"}
    )
    assert answer.status_code == 413
    assert answer.headers["X-Request-ID"] == "r-9"
