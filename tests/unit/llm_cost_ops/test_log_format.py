"""``LOG_FORMAT=json``: one JSON object a record, with the fields log aggregation keys on."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import datetime

import pytest

from llm_cost_ops.cli.console import configure_logging
from llm_cost_ops.log_format import ContextFilter, JsonFormatter
from llm_cost_ops.settings import Settings
from llm_cost_ops.trace import TRACE_ID, trace_id_from


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(ContextFilter("sink"))
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("tests.log_format")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, stream
    logger.removeHandler(handler)
    logger.propagate = True


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_record_is_one_json_object_with_its_fields(captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = captured
    logger.warning("insert failed, retrying in %.1fs: %s", 0.4, "boom", extra={"operation": "flush", "rows": 500})
    [entry] = lines(stream)
    assert entry["level"] == "WARNING"
    assert entry["logger"] == "tests.log_format"
    assert entry["message"] == "insert failed, retrying in 0.4s: boom"
    assert entry["role"] == "sink"
    assert entry["operation"] == "flush" and entry["rows"] == 500
    assert "trace_id" not in entry  # not in a request
    stamp = str(entry["timestamp"])
    assert stamp.endswith("Z")
    assert datetime.fromisoformat(stamp).utcoffset() is not None


def test_an_exception_is_one_string_and_the_line_stays_one_line(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = captured
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        logger.exception("failed", extra={"offset": 7, "when": datetime(2025, 1, 1)})
    assert len(stream.getvalue().splitlines()) == 1
    [entry] = lines(stream)
    assert isinstance(entry["exception"], str)
    assert "ValueError: bad" in entry["exception"]
    assert entry["level"] == "ERROR" and entry["offset"] == 7
    assert entry["when"] == "2025-01-01 00:00:00"  # not JSON: written as str()


def test_the_trace_id_of_the_current_request_is_on_the_record(captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = captured
    token = TRACE_ID.set("abc123")
    try:
        logger.info("handled")
    finally:
        TRACE_ID.reset(token)
    logger.info("after")
    first, second = lines(stream)
    assert first["trace_id"] == "abc123"
    assert "trace_id" not in second


def test_trace_id_sources() -> None:
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    assert trace_id_from(traceparent, "req-1") == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert trace_id_from("00-" + "0" * 32 + "-00f067aa0ba902b7-01", "req-1") == "req-1"  # invalid: all zeros
    assert trace_id_from("garbage", "req-1") == "req-1"
    generated = trace_id_from(None, 'evil"\nFAKE LOG LINE')  # not a plain token: not taken
    assert len(generated) == 32 and int(generated, 16) >= 0
    assert trace_id_from(None, None) != trace_id_from(None, None)


def test_configure_logging_json_replaces_the_root_handler(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure_logging("info", "json", "worker")
        logging.getLogger("tests.configured").info("started", extra={"topic": "usage-events"})
        err = capsys.readouterr().err.strip().splitlines()[-1]
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
    entry = json.loads(err)
    assert entry["role"] == "worker" and entry["topic"] == "usage-events" and entry["message"] == "started"


def test_log_format_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings(_env_file=None).log_format == "text"  # type: ignore[call-arg]
    monkeypatch.setenv("LOG_FORMAT", "json")
    assert Settings(_env_file=None).log_format == "json"  # type: ignore[call-arg]
