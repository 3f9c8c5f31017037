"""HTTP statuses and error bodies (api/errors.py)."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from fastapi import Request
from fastapi.responses import JSONResponse

from api.errors import STATUS, error_body, pipeline_error_handler, status_for
from llm_cost_ops.errors import (
    AuthenticationError,
    BudgetExceededError,
    ConflictError,
    InvalidInputError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    PipelineError,
    RateLimitedError,
    UnavailableError,
)
from llm_cost_ops.kafka import BrokerUnavailableError
from llm_cost_ops.producer import PublishError
from schemas.errors import DecodeError, EventValidationError, SchemaRegistryError, SchemaRegistryUnavailableError
from schemas.registry import RegistrySchemaTable
from sinks.errors import QueryError, StoreUnavailableError


class CustomNotFound(NotFoundError):
    code = "NO_SUCH_THING"


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (InvalidInputError("bad"), 422),
        (EventValidationError("invalid usage record: x", {"x": "is required"}), 422),
        (DecodeError("empty message"), 422),
        (SchemaRegistryError("refused"), 500),
        (SchemaRegistryUnavailableError("registry down"), 503),
        (QueryError("bad query"), 500),
        (NotFoundError("nothing"), 404),
        (ConflictError("report still running"), 409),
        (CustomNotFound("nothing"), 404),
        (UnavailableError("down"), 503),
        (StoreUnavailableError("clickhouse down"), 503),
        (BrokerUnavailableError("kafka down"), 503),
        (PublishError("not acknowledged"), 503),
        (PipelineError("boom"), 500),
    ],
)
def test_status_for(error: PipelineError, status: int) -> None:
    assert status_for(error) == status


def test_status_table_covers_every_kind() -> None:
    expected = {
        InvalidInputError: 422, NotFoundError: 404, BudgetExceededError: 429, UnavailableError: 503, PipelineError: 500,
        AuthenticationError: 401, PermissionDeniedError: 403, RateLimitedError: 429, PayloadTooLargeError: 413,
        ConflictError: 409,
    }  # fmt: skip
    assert dict(STATUS) == expected


def test_status_for_unlisted_subclass_of_root() -> None:
    class Odd(PipelineError):
        code = "ODD"

    assert status_for(Odd("x")) == 500


def test_error_codes() -> None:
    assert EventValidationError("x").code == "VALIDATION_ERROR"
    assert DecodeError("x").code == "DECODE_ERROR"
    assert SchemaRegistryError("x").code == "SCHEMA_ERROR"
    assert NotFoundError("x").code == "NOT_FOUND"
    assert UnavailableError("x").code == "SERVICE_UNAVAILABLE"
    assert PipelineError("x").code == "INTERNAL_ERROR"


def test_error_body_with_field_errors() -> None:
    body = error_body("VALIDATION_ERROR", "invalid usage record: prompt_tokens", {"prompt_tokens": "must be >= 0"})
    assert body == {
        "error": {
            "code": "VALIDATION_ERROR",
            "message": "invalid usage record: prompt_tokens",
            "field_errors": {"prompt_tokens": "must be >= 0"},
        }
    }


@pytest.mark.parametrize("fields", [None, {}])
def test_error_body_omits_empty_field_errors(fields: dict[str, str] | None) -> None:
    body = error_body("NOT_FOUND", "no such record", fields)
    assert body == {"error": {"code": "NOT_FOUND", "message": "no such record"}}
    assert "field_errors" not in body["error"]  # type: ignore[operator]


def _request() -> Request:
    return Request({"type": "http", "method": "POST", "path": "/api/v1/usage", "headers": [], "query_string": b""})


def _handle(exc: PipelineError) -> JSONResponse:
    return asyncio.run(pipeline_error_handler(_request(), exc))


def test_handler_validation_error() -> None:
    response = _handle(EventValidationError("invalid usage record: total_tokens", {"total_tokens": "must equal 3"}))
    assert response.status_code == 422
    assert json.loads(bytes(response.body)) == {
        "error": {
            "code": "VALIDATION_ERROR",
            "message": "invalid usage record: total_tokens",
            "field_errors": {"total_tokens": "must equal 3"},
        }
    }
    assert "retry-after" not in response.headers


def test_handler_unavailable_sets_retry_after() -> None:
    response = _handle(StoreUnavailableError("clickhouse down", retry_after=2.2))
    assert response.status_code == 503
    assert response.headers["retry-after"] == "3"
    assert json.loads(bytes(response.body)) == {"error": {"code": "STORE_UNAVAILABLE", "message": "clickhouse down"}}


def test_handler_retry_after_at_least_one_second() -> None:
    assert _handle(UnavailableError("down", retry_after=0.01)).headers["retry-after"] == "1"


def test_handler_not_found_and_internal() -> None:
    not_found = _handle(NotFoundError("no such event"))
    assert not_found.status_code == 404
    assert json.loads(bytes(not_found.body)) == {"error": {"code": "NOT_FOUND", "message": "no such event"}}
    internal = _handle(PipelineError("boom"))
    assert internal.status_code == 500
    assert json.loads(bytes(internal.body)) == {"error": {"code": "INTERNAL_ERROR", "message": "boom"}}


def test_unreachable_schema_registry_is_unavailable() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        table = RegistrySchemaTable("http://registry.test", client)
        with pytest.raises(PipelineError) as info:
            table.id_for("usage_event", "usage-events-value")
    assert status_for(info.value) == 503
