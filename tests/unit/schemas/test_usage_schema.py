"""Validation rules of the usage event (schemas/usage.py) and their error format."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from llm_cost_ops.errors import InvalidInputError
from schemas.errors import EventValidationError
from schemas.provider import KNOWN_PROVIDERS, allowed_providers
from schemas.usage import ModelRef, UsageEvent

UsageFactory = Callable[..., dict[str, Any]]

README_EXAMPLE: dict[str, Any] = {
    "id": "550e8400-e29b-41d4-a716-446655440001",
    "timestamp": "2025-01-15T10:00:00Z",
    "provider": "openai",
    "model": {"name": "gpt-4", "context_window": 8192},
    "organization_id": "org-example",
    "prompt_tokens": 1000,
    "completion_tokens": 500,
    "total_tokens": 1500,
}


def errors_of(data: dict[str, Any], **kwargs: Any) -> dict[str, str]:
    with pytest.raises(EventValidationError) as info:
        UsageEvent.parse(data, **kwargs)
    assert info.value.code == "VALIDATION_ERROR"
    return info.value.field_errors


def test_readme_example_validates() -> None:
    event = UsageEvent.parse(README_EXAMPLE)

    assert event.id == "550e8400-e29b-41d4-a716-446655440001"
    assert event.timestamp == datetime(2025, 1, 15, 10, 0, tzinfo=UTC)
    assert event.provider == "openai"
    assert event.model == ModelRef(name="gpt-4", version=None, context_window=8192)
    assert event.organization_id == "org-example"
    assert (event.prompt_tokens, event.completion_tokens, event.total_tokens) == (1000, 500, 1500)
    assert (event.cached_tokens, event.reasoning_tokens) == (0, 0)
    assert event.project_id is None
    assert event.user_id is None
    assert event.tags == []
    assert event.metadata == {}
    assert event.source is None
    assert event.tokens_total == 1500


def test_fixture_record_validates(usage_record: UsageFactory) -> None:
    record = usage_record(prompt_tokens=2000, completion_tokens=300)
    event = UsageEvent.parse(record)
    assert event.total_tokens == 2300
    assert event.cached_tokens == 100
    assert event.metadata == record["metadata"]


def test_model_as_plain_string() -> None:
    event = UsageEvent.parse({**README_EXAMPLE, "model": "gpt-4o"})
    assert event.model == ModelRef(name="gpt-4o")
    assert event.model.version is None
    assert event.model.context_window is None


def test_model_with_version() -> None:
    event = UsageEvent.parse({**README_EXAMPLE, "model": {"name": "gpt-4", "version": "gpt-4-0613"}})
    assert event.model.version == "gpt-4-0613"


def test_total_tokens_computed_when_absent() -> None:
    record = {k: v for k, v in README_EXAMPLE.items() if k != "total_tokens"}
    record.update(prompt_tokens=1234, completion_tokens=4321)
    event = UsageEvent.parse(record)
    assert event.total_tokens == 5555
    assert event.tokens_total == 5555


def test_generated_id_and_timestamps() -> None:
    record = {k: v for k, v in README_EXAMPLE.items() if k not in ("id", "timestamp")}
    before = datetime.now(UTC) - timedelta(seconds=1)
    event = UsageEvent.parse(record)
    after = datetime.now(UTC) + timedelta(seconds=1)
    assert len(event.id) == 36
    assert before <= event.timestamp <= after
    assert event.timestamp.microsecond % 1000 == 0
    assert event.ingested_at.microsecond % 1000 == 0
    assert UsageEvent.parse(record).id != event.id


def test_provider_lowercased() -> None:
    assert UsageEvent.parse({**README_EXAMPLE, "provider": "  OpenAI "}).provider == "openai"


@pytest.mark.parametrize("field", ["prompt_tokens", "completion_tokens", "cached_tokens", "reasoning_tokens"])
def test_negative_tokens_rejected(field: str) -> None:
    record = {**README_EXAMPLE, field: -1}
    record.pop("total_tokens")
    assert errors_of(record) == {field: "must be greater than or equal to 0"}


def test_token_count_upper_bound() -> None:
    record = {**README_EXAMPLE, "prompt_tokens": 10**12 + 1}
    record.pop("total_tokens")
    assert errors_of(record) == {"prompt_tokens": "must be less than or equal to 1000000000000"}


def test_non_integer_tokens_rejected() -> None:
    assert errors_of({**README_EXAMPLE, "completion_tokens": "many"}) == {"completion_tokens": "must be an integer"}


def test_total_tokens_inconsistent() -> None:
    assert errors_of({**README_EXAMPLE, "total_tokens": 1501}) == {
        "total_tokens": "must equal prompt_tokens + completion_tokens (1500)"
    }


def test_cached_tokens_above_prompt_tokens() -> None:
    assert errors_of({**README_EXAMPLE, "cached_tokens": 1001}) == {"cached_tokens": "must not exceed prompt_tokens"}


def test_cached_tokens_equal_to_prompt_tokens_accepted() -> None:
    assert UsageEvent.parse({**README_EXAMPLE, "cached_tokens": 1000}).cached_tokens == 1000


def test_reasoning_tokens_above_completion_tokens() -> None:
    assert errors_of({**README_EXAMPLE, "reasoning_tokens": 501}) == {
        "reasoning_tokens": "must not exceed completion_tokens"
    }


def test_reasoning_tokens_equal_to_completion_tokens_accepted() -> None:
    assert UsageEvent.parse({**README_EXAMPLE, "reasoning_tokens": 500}).reasoning_tokens == 500


def test_unknown_provider_lists_allowed_ones() -> None:
    errors = errors_of({**README_EXAMPLE, "provider": "acme"})
    assert errors == {"provider": "must be one of: anthropic, aws, azure, cohere, google, mistral, openai"}
    for provider in KNOWN_PROVIDERS:
        assert provider in errors["provider"]


def test_custom_provider_accepted_through_providers_argument() -> None:
    providers = allowed_providers(("Acme",))
    event = UsageEvent.parse({**README_EXAMPLE, "provider": "ACME"}, providers=providers)
    assert event.provider == "acme"
    # The built-in providers stay accepted alongside the custom one.
    assert UsageEvent.parse(README_EXAMPLE, providers=providers).provider == "openai"


def test_custom_provider_listed_in_error() -> None:
    errors = errors_of({**README_EXAMPLE, "provider": "other"}, providers=allowed_providers(("acme",)))
    assert errors == {"provider": "must be one of: acme, anthropic, aws, azure, cohere, google, mistral, openai"}


def test_naive_timestamp_rejected() -> None:
    assert errors_of({**README_EXAMPLE, "timestamp": "2025-01-15T10:00:00"}) == {
        "timestamp": "must include a time zone (e.g. Z or +00:00)"
    }


def test_unparseable_timestamp_rejected() -> None:
    assert errors_of({**README_EXAMPLE, "timestamp": "yesterday"}) == {
        "timestamp": "must be an ISO 8601 timestamp with a time zone"
    }


def test_timestamp_before_2000_rejected() -> None:
    assert errors_of({**README_EXAMPLE, "timestamp": "1999-12-31T23:59:59.999Z"}) == {
        "timestamp": "must not be before 2000-01-01"
    }


def test_timestamp_at_2000_accepted() -> None:
    event = UsageEvent.parse({**README_EXAMPLE, "timestamp": "2000-01-01T00:00:00Z"})
    assert event.timestamp == datetime(2000, 1, 1, tzinfo=UTC)


def test_timestamp_more_than_a_day_in_future_rejected() -> None:
    future = (datetime.now(UTC) + timedelta(days=1, minutes=5)).isoformat()
    assert errors_of({**README_EXAMPLE, "timestamp": future}) == {
        "timestamp": "must not be more than one day in the future"
    }


def test_timestamp_less_than_a_day_in_future_accepted() -> None:
    future = datetime.now(UTC) + timedelta(hours=23)
    event = UsageEvent.parse({**README_EXAMPLE, "timestamp": future.isoformat()})
    assert event.timestamp == future.replace(microsecond=future.microsecond // 1000 * 1000)


def test_timestamps_truncated_to_milliseconds_and_converted_to_utc() -> None:
    event = UsageEvent.parse(
        {
            **README_EXAMPLE,
            "timestamp": "2025-01-15T12:00:00.123999+02:00",
            "ingested_at": "2025-01-15T10:00:01.000999Z",
        }
    )
    assert event.timestamp == datetime(2025, 1, 15, 10, 0, 0, 123000, tzinfo=UTC)
    assert event.timestamp.utcoffset() == timedelta(0)
    assert event.ingested_at == datetime(2025, 1, 15, 10, 0, 1, tzinfo=UTC)


def test_too_many_tags() -> None:
    assert errors_of({**README_EXAMPLE, "tags": [f"t{i}" for i in range(51)]}) == {"tags": "must have at most 50 items"}


def test_fifty_tags_accepted() -> None:
    assert len(UsageEvent.parse({**README_EXAMPLE, "tags": [f"t{i}" for i in range(50)]}).tags) == 50


def test_too_long_tag_named_by_index() -> None:
    assert errors_of({**README_EXAMPLE, "tags": ["ok", "x" * 101]}) == {"tags[1]": "must be at most 100 characters"}


def test_too_long_id() -> None:
    assert errors_of({**README_EXAMPLE, "id": "x" * 129}) == {"id": "must be at most 128 characters"}


def test_id_of_128_characters_accepted() -> None:
    assert UsageEvent.parse({**README_EXAMPLE, "id": "x" * 128}).id == "x" * 128


def test_id_with_whitespace_rejected() -> None:
    errors = errors_of({**README_EXAMPLE, "id": "evt 1"})
    assert list(errors) == ["id"]
    assert errors["id"] == "must not be empty or contain whitespace"


def test_id_surrounding_whitespace_stripped() -> None:
    assert UsageEvent.parse({**README_EXAMPLE, "id": "  evt-1  "}).id == "evt-1"


def test_empty_organization_rejected() -> None:
    assert errors_of({**README_EXAMPLE, "organization_id": "  "}) == {"organization_id": "must not be empty"}


def test_missing_required_fields() -> None:
    assert errors_of({"prompt_tokens": 1, "completion_tokens": 1}) == {
        "provider": "is required",
        "model": "is required",
        "organization_id": "is required",
    }


def test_metadata_numbers_and_bools_become_strings() -> None:
    event = UsageEvent.parse({**README_EXAMPLE, "metadata": {"n": 3, "f": 1.5, "yes": True, "no": False, "s": "text"}})
    assert event.metadata == {"n": "3", "f": "1.5", "yes": "true", "no": "false", "s": "text"}


@pytest.mark.parametrize("value", [{"nested": "x"}, [1, 2], None])
def test_nested_metadata_values_rejected(value: Any) -> None:
    assert errors_of({**README_EXAMPLE, "metadata": {"key": value}}) == {
        "metadata": "value of 'key' must be a string, number or boolean"
    }


def test_metadata_too_many_keys() -> None:
    errors = errors_of({**README_EXAMPLE, "metadata": {f"k{i}": "v" for i in range(51)}})
    assert errors == {"metadata": "must have at most 50 keys"}


def test_metadata_value_too_long() -> None:
    errors = errors_of({**README_EXAMPLE, "metadata": {"k": "v" * 1001}})
    assert errors == {"metadata": "value of 'k' must be at most 1000 characters"}


def test_metadata_not_an_object() -> None:
    assert errors_of({**README_EXAMPLE, "metadata": "a=b"}) == {"metadata": "must be an object"}


def test_extra_unknown_field_rejected() -> None:
    assert errors_of({**README_EXAMPLE, "cost": 1.5}) == {"cost": "is not a known field"}


def test_extra_field_in_model_rejected() -> None:
    assert errors_of({**README_EXAMPLE, "model": {"name": "gpt-4", "size": 1}}) == {
        "model.size": "is not a known field"
    }


def test_several_bad_fields_reported_together() -> None:
    record = {
        **README_EXAMPLE,
        "provider": "acme",
        "model": {"name": ""},
        "prompt_tokens": -5,
        "tags": "not-a-list",
        "surprise": True,
    }
    with pytest.raises(EventValidationError) as info:
        UsageEvent.parse(record)
    assert info.value.field_errors == {
        "provider": "must be one of: anthropic, aws, azure, cohere, google, mistral, openai",
        "model.name": "must not be empty",
        "prompt_tokens": "must be greater than or equal to 0",
        "tags": "must be a list",
        "surprise": "is not a known field",
    }
    assert info.value.message == "invalid usage record: provider, model.name, prompt_tokens, tags, surprise"
    assert isinstance(info.value, InvalidInputError)


def test_field_prefix_used() -> None:
    errors = errors_of({**README_EXAMPLE, "total_tokens": 1, "prompt_tokens": -1}, field_prefix="records[3]")
    assert errors == {"records[3].prompt_tokens": "must be greater than or equal to 0"}
    errors = errors_of({**README_EXAMPLE, "total_tokens": 1}, field_prefix="records[3]")
    assert errors == {"records[3].total_tokens": "must equal prompt_tokens + completion_tokens (1500)"}


def test_field_prefix_in_message() -> None:
    with pytest.raises(EventValidationError) as info:
        UsageEvent.parse({**README_EXAMPLE, "model": {"context_window": 0}}, field_prefix="records[0]")
    assert info.value.field_errors == {
        "records[0].model.name": "is required",
        "records[0].model.context_window": "must be greater than or equal to 1",
    }
    assert info.value.message == "invalid usage record: records[0].model.name, records[0].model.context_window"


def test_not_an_object() -> None:
    errors = errors_of([1, 2, 3])  # type: ignore[arg-type]
    assert list(errors) == ["body"]
    assert errors["body"] == "must be a JSON object"


def test_event_is_frozen() -> None:
    event = UsageEvent.parse(README_EXAMPLE)
    with pytest.raises(ValueError, match="frozen"):
        event.prompt_tokens = 5
