"""Usage records from recorded provider responses (llm_cost_ops.providers), priced as the pipeline prices them."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from llm_cost_ops.errors import InvalidInputError
from llm_cost_ops.providers import (
    AsyncTrackingTransport,
    StreamAccumulator,
    Tracker,
    TrackingTransport,
    UsageMissingError,
    track,
    tracked,
    usage_from_response,
    usage_from_stream,
)
from schemas.columns import millis, table_from_events
from schemas.usage import UsageEvent
from streams.pricing import PriceCatalog

FIXTURES = Path(__file__).parents[2] / "fixtures" / "providers"
AT = "2025-06-15T12:00:00+00:00"
BEDROCK_MODEL = "anthropic.claude-3-5-sonnet-20241022-v2:0"
TOKENS = (
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
)


def load(name: str) -> Any:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def tokens(record: dict[str, Any]) -> tuple[int, ...]:
    return tuple(record[name] for name in TOKENS)


def event(record: dict[str, Any]) -> UsageEvent:
    return UsageEvent.parse({"organization_id": "org-test", "timestamp": AT, **record})


# (fixture, extra fields, provider, model, prompt, completion, total, cached, cache writes, reasoning)
CASES = [
    ("openai_chat", {}, "openai", "gpt-4o-2024-08-06", (2006, 300, 2306, 1920, 0, 0)),
    ("openai_chat_reasoning", {}, "openai", "o3-mini-2025-01-31", (1500, 900, 2400, 1024, 0, 640)),
    ("openai_responses", {}, "openai", "o4-mini-2025-04-16", (3000, 1200, 4200, 2048, 0, 1024)),
    # Anthropic's input_tokens (50) excludes cache reads and writes: prompt = 50 + 10000 + 2000.
    ("anthropic_message", {}, "anthropic", "claude-sonnet-4-20250514", (12050, 500, 12550, 10000, 2000, 0)),
    # Gemini's candidatesTokenCount (300) excludes thoughts (700), which are billed as output.
    ("gemini", {}, "google", "gemini-2.5-flash", (5000, 1000, 6000, 4000, 0, 700)),
    ("bedrock_converse", {"model": BEDROCK_MODEL}, "aws", BEDROCK_MODEL, (3600, 200, 3800, 3000, 500, 0)),
    (
        "bedrock_invoke_anthropic",
        {"provider": "aws", "model": BEDROCK_MODEL},
        "aws",
        BEDROCK_MODEL,
        (3600, 200, 3800, 3000, 500, 0),
    ),
]

STREAMS = [
    ("openai_chat_stream", {}, "openai", "gpt-4o-2024-08-06", (2006, 300, 2306, 1920, 0, 0)),
    ("openai_responses_stream", {}, "openai", "o4-mini-2025-04-16", (3000, 1200, 4200, 2048, 0, 1024)),
    ("anthropic_stream", {}, "anthropic", "claude-sonnet-4-20250514", (12050, 500, 12550, 10000, 2000, 0)),
    ("gemini_stream", {}, "google", "gemini-2.5-flash", (5000, 1000, 6000, 4000, 0, 700)),
    ("bedrock_converse_stream", {"model": BEDROCK_MODEL}, "aws", BEDROCK_MODEL, (3600, 200, 3800, 3000, 500, 0)),
]


@pytest.mark.parametrize(("name", "fields", "provider", "model", "expected"), CASES)
def test_response_tokens(
    name: str, fields: dict[str, Any], provider: str, model: str, expected: tuple[int, ...]
) -> None:
    record = usage_from_response(load(name), **fields)
    assert (record["provider"], record["model"]) == (provider, model)
    assert tokens(record) == expected
    parsed = event(record)
    assert parsed.total_tokens == expected[2]


@pytest.mark.parametrize(("name", "fields", "provider", "model", "expected"), STREAMS)
def test_stream_tokens(name: str, fields: dict[str, Any], provider: str, model: str, expected: tuple[int, ...]) -> None:
    record = usage_from_stream(load(name), **fields)
    assert (record["provider"], record["model"]) == (provider, model)
    assert tokens(record) == expected
    event(record)


def test_stream_matches_its_response() -> None:
    for stream, response in [("openai_chat_stream", "openai_chat"), ("anthropic_stream", "anthropic_message")]:
        streamed, whole = usage_from_stream(load(stream)), usage_from_response(load(response))
        assert tokens(streamed) == tokens(whole)


def test_request_id_and_fields() -> None:
    record = usage_from_response(
        load("openai_chat"), organization_id="acme", project_id="chat", metadata={"team": "support"}, tags=["prod"]
    )
    assert record["metadata"] == {"request_id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG", "team": "support"}
    assert (record["organization_id"], record["project_id"], record["tags"]) == ("acme", "chat", ["prod"])
    assert usage_from_response(load("gemini"))["metadata"] == {"request_id": "mKdGaOvbBsK2nvgPl9TCuAQ"}
    bedrock = usage_from_response(load("bedrock_converse"), model=BEDROCK_MODEL)
    assert bedrock["metadata"] == {"request_id": "5d2c4a2e-3f6b-4c1e-9a8d-0b7e6f5a4c3d"}
    assert bedrock["latency_ms"] == 1234


def test_sdk_objects_read_duck_typed() -> None:
    class Dumped:  # a pydantic SDK object (openai, anthropic)
        def __init__(self, data: dict[str, Any]) -> None:
            self._data = data

        def model_dump(self) -> dict[str, Any]:
            return self._data

    assert tokens(usage_from_response(Dumped(load("openai_responses")))) == (3000, 1200, 4200, 2048, 0, 1024)
    attrs = SimpleNamespace(
        id="msg_1",
        model="claude-sonnet-4-20250514",
        type="message",
        usage=SimpleNamespace(input_tokens=5, output_tokens=7, cache_read_input_tokens=None),
    )
    assert tokens(usage_from_response(attrs)) == (5, 7, 12, 0, 0, 0)


def test_gemini_sdk_snake_case() -> None:
    # google-genai's model_dump(): snake_case keys, model_version, None for absent counts.
    response = {
        "model_version": "models/gemini-2.5-flash",
        "response_id": "r-1",
        "usage_metadata": {
            "prompt_token_count": 5000,
            "candidates_token_count": 300,
            "cached_content_token_count": 4000,
            "thoughts_token_count": 700,
            "tool_use_prompt_token_count": None,
            "total_token_count": 6000,
        },
    }
    record = usage_from_response(response)
    assert record["model"] == "gemini-2.5-flash"
    assert tokens(record) == (5000, 1000, 6000, 4000, 0, 700)


def test_provider_override_for_azure() -> None:
    assert usage_from_response(load("openai_chat"), provider="azure")["provider"] == "azure"


def test_missing_usage_is_named() -> None:
    with pytest.raises(UsageMissingError) as caught:
        usage_from_response({"id": "chatcmpl-1", "model": "gpt-4o", "choices": [], "usage": None})
    assert isinstance(caught.value, InvalidInputError)
    assert caught.value.missing == "usage"
    assert "include_usage" in caught.value.message
    with pytest.raises(UsageMissingError, match=r"usage\.completion_tokens"):
        usage_from_response({"model": "gpt-4o", "usage": {"prompt_tokens": 3}})
    with pytest.raises(UsageMissingError) as no_model:
        usage_from_response(load("bedrock_converse"))
    assert no_model.value.missing == "model"


def test_stream_without_usage_chunk() -> None:
    chunks = [chunk for chunk in load("openai_chat_stream") if chunk["usage"] is None]
    accumulator = StreamAccumulator()
    for chunk in chunks:
        accumulator.add(chunk)
    assert not accumulator.complete
    with pytest.raises(UsageMissingError, match="include_usage"):
        accumulator.record()


# Hand-computed from the providers' list prices (USD per million tokens) at AT.
COSTS = [
    # gpt-4o: 2.50 input, 1.25 cached, 10 output: 86 x 2.5 + 1920 x 1.25 + 300 x 10.
    ("openai_chat", {}, Decimal("0.0056150000")),
    # o4-mini: 1.10 input, 0.275 cached, 4.40 output, reasoning at the output rate:
    # 952 x 1.1 + 2048 x 0.275 + 1200 x 4.4.
    ("openai_responses", {}, Decimal("0.0068904000")),
    # claude-sonnet-4: 3 input, 0.30 cache read, 3.75 cache write (5 min), 15 output.
    ("anthropic_message", {}, Decimal("0.0181500000")),
    # gemini-2.5-flash: 0.30 input, 0.03 cached, 2.50 output (thinking included): 1000 x 0.3 + 4000 x 0.03 + 1000 x 2.5.
    ("gemini", {}, Decimal("0.0029200000")),
    # claude-3.5-sonnet v2 on Bedrock: 100 x 3 + 3000 x 0.3 + 500 x 3.75 + 200 x 15.
    ("bedrock_converse", {"model": BEDROCK_MODEL}, Decimal("0.0060750000")),
]


@pytest.fixture(scope="module")
def catalog() -> PriceCatalog:
    return PriceCatalog()


@pytest.mark.parametrize(("name", "fields", "expected"), COSTS)
def test_pipeline_cost_matches_list_prices(
    catalog: PriceCatalog, name: str, fields: dict[str, Any], expected: Decimal
) -> None:
    ev = event(usage_from_response(load(name), **fields))
    (row,) = catalog.price(table_from_events([ev]), millis(datetime(2025, 6, 15, 13, tzinfo=UTC))).to_pylist()
    assert row["unpriced_reason"] is None
    assert row["total_cost"] == expected


class Sink:
    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def send(self, record: dict[str, Any]) -> None:
        self.records.append(record)


def test_track_one_line_and_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    sink = Sink()
    record = track(load("anthropic_message"), sender=sink, organization_id="acme", project_id="p1")
    assert sink.records == [record]
    assert record is not None
    event(record)

    def broken(record: dict[str, Any]) -> None:
        raise ConnectionError("cost-ops is down")

    assert track(load("openai_chat"), sender=broken, organization_id="acme") is None
    assert track({"no": "usage"}, sender=sink, organization_id="acme") is None
    assert len(sink.records) == 1
    assert [r.message for r in caplog.records] == ["usage not tracked", "usage not tracked"]


def test_tracker_counts_and_times_a_call() -> None:
    sink = Sink()
    tracker = Tracker(sink, organization_id="acme", user_id="u-1")
    with tracker.call(tags=["chat"]) as call:
        call.response = load("openai_chat")
    with pytest.raises(RuntimeError), tracker.call() as failed:
        raise RuntimeError("the LLM call failed")
    assert failed.record is None
    tracker.track({"usage": None})
    assert (tracker.sent, tracker.failed) == (1, 1)
    (record,) = sink.records
    assert record["latency_ms"] >= 0 and record["user_id"] == "u-1" and record["tags"] == ["chat"]
    assert event(record).latency_ms == record["latency_ms"]


def test_tracker_stream_passes_chunks_through() -> None:
    sink = Sink()
    tracker = Tracker(sink, organization_id="acme")
    chunks = load("anthropic_stream")
    assert list(tracker.stream(iter(chunks))) == chunks
    (record,) = sink.records
    assert tokens(record) == (12050, 500, 12550, 10000, 2000, 0)


def test_tracked_decorator_sync_and_async() -> None:
    sent: list[dict[str, Any]] = []

    async def async_sender(record: dict[str, Any]) -> None:
        sent.append(record)

    @tracked(sender=sent.append, organization_id="acme", project_id="p1")
    def ask() -> Any:
        return load("gemini")

    @tracked(sender=async_sender, organization_id="acme", provider="aws", model=BEDROCK_MODEL)
    async def aask() -> Any:
        return load("bedrock_converse")

    assert ask() == load("gemini")
    assert asyncio.run(aask()) == load("bedrock_converse")
    assert [(r["provider"], r.get("project_id")) for r in sent] == [
        ("google", "p1"),
        ("aws", None),
    ]
    for record in sent:
        event(record)


def _sse(events: list[dict[str, Any]]) -> bytes:
    return b"".join(b"event: x\ndata: " + json.dumps(e).encode() + b"\n\n" for e in events) + b"data: [DONE]\n\n"


def _provider_api(request: httpx.Request) -> httpx.Response:
    if request.url.host == "api.anthropic.com":
        body = _sse(load("anthropic_stream"))
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body)
    if request.url.host.startswith("bedrock-runtime."):
        return httpx.Response(200, json=load("bedrock_converse"))
    return httpx.Response(200, json=load("openai_chat"))


def test_transport_tracks_json_and_sse() -> None:
    sink = Sink()
    transport = TrackingTransport(Tracker(sink, organization_id="acme"), transport=httpx.MockTransport(_provider_api))
    with httpx.Client(transport=transport) as client:
        assert client.post("https://api.openai.com/v1/chat/completions").json() == load("openai_chat")
        url = f"https://bedrock-runtime.us-east-1.amazonaws.com/model/{BEDROCK_MODEL}/converse"
        client.post(url)
        with client.stream("POST", "https://api.anthropic.com/v1/messages") as response:
            assert b"message_delta" in response.read()
        client.get("https://example.com/v1/chat/completions")  # not a provider host: untouched
    assert [(r["provider"], r["model"]) for r in sink.records] == [
        ("openai", "gpt-4o-2024-08-06"),
        ("aws", BEDROCK_MODEL),
        ("anthropic", "claude-sonnet-4-20250514"),
    ]
    for record in sink.records:
        event(record)


def test_async_transport() -> None:
    sent: list[dict[str, Any]] = []

    async def main() -> None:
        transport = AsyncTrackingTransport(
            Tracker(sent.append, organization_id="acme"), transport=httpx.MockTransport(_provider_api)
        )
        async with httpx.AsyncClient(transport=transport) as client:
            await client.post("https://api.openai.com/v1/chat/completions")
            async with client.stream("POST", "https://api.anthropic.com/v1/messages") as response:
                assert [chunk async for chunk in response.aiter_bytes()]

    asyncio.run(main())
    assert [tokens(r) for r in sent] == [(2006, 300, 2306, 1920, 0, 0), (12050, 500, 12550, 10000, 2000, 0)]
