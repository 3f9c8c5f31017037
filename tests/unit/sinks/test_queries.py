"""Golden SQL of the cost query builders (sinks/queries.py) and the filter parameters."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from schemas.cursor import decode_cursor, encode_cursor
from schemas.query import AggregateParams, CostFilterParams, CostSummary, PageParams, Period, SortKey, as_utc
from sinks.queries import (
    Query,
    aggregate_query,
    count_query,
    detail_query,
    list_query,
    summary_query,
    where_clause,
)

TABLE = "costops.usage_costs"
RECORD_COLUMNS = (
    "event_id AS id, timestamp, provider, model, organization_id, project_id, user_id, prompt_tokens, "
    "completion_tokens, total_tokens, cached_tokens, cache_write_tokens, reasoning_tokens, pricing_status, "
    "input_cost, cached_cost, cache_write_cost, output_cost, reasoning_cost, request_cost, total_cost, currency, "
    "price_source, unpriced_reason"
)
TOTALS = (
    "sum(total_cost) AS total_cost, count() AS request_count, "
    "countIf(pricing_status = 'unpriced') AS unpriced_requests, sum(total_tokens) AS total_tokens, "
    "sum(prompt_tokens) AS prompt_tokens, sum(completion_tokens) AS completion_tokens"
)


def filters(**values: Any) -> CostFilterParams:
    """Query parameters as the API receives them: strings, validated by the model."""
    return CostFilterParams.model_validate(values)


JAN_1 = datetime(2025, 1, 1, tzinfo=UTC)
FEB_1 = datetime(2025, 2, 1, tzinfo=UTC)


@pytest.fixture
def january() -> CostFilterParams:
    return filters(organization_id="org-1", provider="openai", start_date="2025-01-01", end_date="2025-01-31")


def test_where_clause_empty() -> None:
    assert where_clause(filters()) == ("", {})


def test_where_clause_all_filters() -> None:
    params = filters(
        organization_id="org-1",
        project_id="proj-1",
        provider="openai",
        model="gpt-4o",
        start_date="2025-01-01",
        end_date="2025-01-31",
    )
    sql, bound = where_clause(params)
    assert sql == (
        " WHERE organization_id = {organization_id:String} AND project_id = {project_id:String}"
        " AND provider = {provider:String} AND model = {model:String}"
        " AND timestamp >= {start:DateTime64(3, 'UTC')} AND timestamp < {end:DateTime64(3, 'UTC')}"
    )
    assert bound == {
        "organization_id": "org-1",
        "project_id": "proj-1",
        "provider": "openai",
        "model": "gpt-4o",
        "start": JAN_1,
        "end": FEB_1,
    }


def test_where_clause_values_are_bound_not_spliced() -> None:
    hostile = "x' OR 1=1 --"
    sql, params = where_clause(filters(organization_id=hostile))
    assert hostile not in sql
    assert sql == " WHERE organization_id = {organization_id:String}"
    assert params == {"organization_id": hostile}


def test_where_clause_only_end() -> None:
    assert where_clause(filters(end_date="2025-01-15T12:30:00Z")) == (
        " WHERE timestamp < {end:DateTime64(3, 'UTC')}",
        {"end": datetime(2025, 1, 15, 12, 30, tzinfo=UTC)},
    )


def test_list_query(january: CostFilterParams) -> None:
    query = list_query(TABLE, january, PageParams(page=3, per_page=50))
    assert query == Query(
        f"SELECT {RECORD_COLUMNS}, count() OVER () AS total FROM {TABLE} FINAL"
        " WHERE organization_id = {organization_id:String}"
        " AND provider = {provider:String} AND timestamp >= {start:DateTime64(3, 'UTC')}"
        " AND timestamp < {end:DateTime64(3, 'UTC')} ORDER BY timestamp DESC, organization_id, event_id"
        " LIMIT {limit:UInt32} OFFSET {offset:UInt64}",
        {
            "organization_id": "org-1",
            "provider": "openai",
            "start": JAN_1,
            "end": FEB_1,
            "limit": 50,
            "offset": 100,
        },
    )


def test_list_query_first_page_without_filters() -> None:
    query = list_query(TABLE, filters(), PageParams())
    assert query.sql == (
        f"SELECT {RECORD_COLUMNS}, count() OVER () AS total FROM {TABLE} FINAL"
        " ORDER BY timestamp DESC, organization_id, event_id"
        " LIMIT {limit:UInt32} OFFSET {offset:UInt64}"
    )
    assert query.parameters == {"limit": 100, "offset": 0}


def test_count_query(january: CostFilterParams) -> None:
    assert count_query(TABLE, filters()) == Query(f"SELECT count() FROM {TABLE} FINAL", {})
    query = count_query(TABLE, january)
    assert query.sql == (
        f"SELECT count() FROM {TABLE} FINAL WHERE organization_id = {{organization_id:String}}"
        " AND provider = {provider:String} AND timestamp >= {start:DateTime64(3, 'UTC')}"
        " AND timestamp < {end:DateTime64(3, 'UTC')}"
    )
    assert query.parameters == {"organization_id": "org-1", "provider": "openai", "start": JAN_1, "end": FEB_1}


def test_aggregate_query_no_group() -> None:
    # Even ungrouped, amounts of different currencies are never added.
    assert aggregate_query(TABLE, filters(), AggregateParams()) == Query(
        f"SELECT currency, {TOTALS} FROM {TABLE} FINAL GROUP BY currency ORDER BY currency", {}
    )


def test_aggregate_query_group_by_provider_and_model() -> None:
    query = aggregate_query(TABLE, filters(organization_id="org-1"), AggregateParams(group_by=("provider", "model")))
    assert query == Query(
        f"SELECT provider, model, currency, {TOTALS} FROM {TABLE} FINAL"
        " WHERE organization_id = {organization_id:String}"
        " GROUP BY provider, model, currency ORDER BY provider, model, currency",
        {"organization_id": "org-1"},
    )


def test_aggregate_query_granularity_day() -> None:
    query = aggregate_query(TABLE, filters(), AggregateParams(granularity="day"))
    assert query == Query(
        f"SELECT toStartOfDay(timestamp) AS period_start, currency, {TOTALS} FROM {TABLE} FINAL"
        " GROUP BY period_start, currency ORDER BY period_start, currency",
        {},
    )


def test_aggregate_query_granularity_hour_and_group() -> None:
    query = aggregate_query(TABLE, filters(), AggregateParams(group_by=("project_id",), granularity="hour"))
    assert query.sql == (
        f"SELECT toStartOfHour(timestamp) AS period_start, project_id, currency, {TOTALS} FROM {TABLE} FINAL"
        " GROUP BY period_start, project_id, currency ORDER BY period_start, project_id, currency"
    )


def test_aggregate_params_whitelist() -> None:
    with pytest.raises(ValidationError):
        AggregateParams(group_by=("provider; DROP TABLE x",))  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        AggregateParams(granularity="year")  # type: ignore[arg-type]


def test_summary_query(january: CostFilterParams) -> None:
    query = summary_query(TABLE, january)
    assert query == Query(
        "SELECT currency, provider, model, sum(total_cost) AS cost, count() AS requests, "
        "countIf(pricing_status = 'unpriced') AS unpriced, sum(total_tokens) AS tokens "
        f"FROM {TABLE} FINAL"
        " WHERE organization_id = {organization_id:String} AND provider = {provider:String}"
        " AND timestamp >= {start:DateTime64(3, 'UTC')} AND timestamp < {end:DateTime64(3, 'UTC')}"
        " GROUP BY GROUPING SETS ((currency), (currency, provider), (currency, model))"
        " ORDER BY cost DESC, currency, provider, model",
        {"organization_id": "org-1", "provider": "openai", "start": JAN_1, "end": FEB_1},
    )


# --- CostFilterParams -----------------------------------------------------------------------


def test_bare_end_date_includes_whole_day() -> None:
    params = filters(start_date="2025-01-31", end_date="2025-01-31")
    assert params.start_date == date(2025, 1, 31)
    assert params.end_date == date(2025, 1, 31)
    assert params.start == datetime(2025, 1, 31, tzinfo=UTC)
    assert params.end == datetime(2025, 2, 1, tzinfo=UTC)


def test_timestamp_with_z_parses() -> None:
    params = filters(start_date="2025-01-15T10:00:00Z", end_date="2025-01-15T11:30:00.500Z")
    assert params.start_date == datetime(2025, 1, 15, 10, tzinfo=UTC)
    assert params.start == datetime(2025, 1, 15, 10, tzinfo=UTC)
    # A timestamp end is exclusive as given: no whole-day widening.
    assert params.end == datetime(2025, 1, 15, 11, 30, 0, 500000, tzinfo=UTC)


def test_timestamp_with_offset_kept() -> None:
    params = filters(start_date="2025-01-15T10:00:00+02:00")
    assert params.start == datetime(2025, 1, 15, 8, tzinfo=UTC)
    assert params.start is not None
    assert params.start.utcoffset() == timedelta(hours=2)
    assert params.start.tzinfo == timezone(timedelta(hours=2))


def test_naive_timestamp_taken_as_utc() -> None:
    assert filters(start_date="2025-01-15T10:00:00").start == datetime(2025, 1, 15, 10, tzinfo=UTC)


def test_no_dates() -> None:
    params = filters()
    assert params.start is None
    assert params.end is None


@pytest.mark.parametrize("field", ["start_date", "end_date"])
@pytest.mark.parametrize("value", ["2025-13-01", "garbage", "31/01/2025", "2025-01-15T25:00:00Z"])
def test_bad_date_string_readable_error(field: str, value: str) -> None:
    with pytest.raises(ValidationError) as info:
        filters(**{field: value})
    errors = info.value.errors()
    assert len(errors) == 1
    assert errors[0]["loc"] == (field,)
    assert "must be in ISO 8601 format (YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ)" in errors[0]["msg"]


@pytest.mark.parametrize(
    ("start", "end"),
    [
        ("2025-01-31", "2025-01-01"),
        ("2025-01-15T10:00:00Z", "2025-01-15T10:00:00Z"),
        ("2025-01-15T10:00:00Z", "2025-01-15T09:59:59Z"),
        ("2025-01-02", "2025-01-01T12:00:00Z"),
    ],
)
def test_end_before_start_rejected(start: str, end: str) -> None:
    with pytest.raises(ValidationError) as info:
        filters(start_date=start, end_date=end)
    errors = info.value.errors()
    assert [e["loc"] for e in errors] == [("end_date",)]
    assert "must be after start_date" in errors[0]["msg"]


def test_end_just_after_start_accepted() -> None:
    params = filters(start_date="2025-01-15T10:00:00Z", end_date="2025-01-15T10:00:00.001Z")
    assert params.end is not None
    assert params.start is not None
    assert params.end - params.start == timedelta(milliseconds=1)


def test_unknown_filter_rejected() -> None:
    with pytest.raises(ValidationError):
        filters(team="x")


def test_page_params_bounds() -> None:
    with pytest.raises(ValidationError):
        PageParams(page=0)
    with pytest.raises(ValidationError):
        PageParams(per_page=0)


# --- response models -----------------------------------------------------------------------


def test_money_is_a_plain_decimal_string_in_json() -> None:
    summary = CostSummary(
        period=Period(start=None, end=None), organization_id=None, total_cost=Decimal("0E-10"),
        total_requests=0, priced_requests=0, unpriced_requests=0, avg_cost_per_request=Decimal("4.500E-7"),
        total_tokens=0, by_provider=[], by_model=[],
    )  # fmt: skip
    body = summary.model_dump(mode="json")
    assert body["total_cost"] == "0.0000000000"
    assert body["avg_cost_per_request"] == "0.0000004500"
    assert summary.total_cost == Decimal(0)  # still a Decimal in Python


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (datetime(2025, 1, 15, 10, 0), datetime(2025, 1, 15, 10, 0, tzinfo=UTC)),
        (datetime(2025, 1, 15, 5, 0, tzinfo=timezone(timedelta(hours=-5))), datetime(2025, 1, 15, 10, 0, tzinfo=UTC)),
    ],
)
def test_timestamps_are_normalised_to_utc_not_relabelled(value: datetime, expected: datetime) -> None:
    assert as_utc(value) == expected and as_utc(value).utcoffset() == timedelta(0)


@pytest.mark.parametrize("value", ["0001-01-01", "9999-12-31", "1899-12-31T00:00:00Z"])
def test_dates_outside_what_clickhouse_stores_are_refused(value: str) -> None:
    with pytest.raises(ValidationError, match="must be between 1900-01-01 and 2299-12-30"):
        CostFilterParams(start_date=value)  # type: ignore[arg-type]


# --- filters, keyset paging, grouping of the query endpoints ---------------------------------


def test_where_clause_user_tags_and_metadata_are_bound() -> None:
    sql, params = where_clause(
        filters(user_id="u1", tags=["prod", "api"], metadata={"team": "x' OR 1=1", "env": "prod"})
    )
    assert sql == (
        " WHERE user_id = {user_id:String} AND hasAll(tags, {tags:Array(String)})"
        " AND metadata[{metadata_key_0:String}] = {metadata_value_0:String}"
        " AND metadata[{metadata_key_1:String}] = {metadata_value_1:String}"
    )
    assert params == {
        "user_id": "u1",
        "tags": ["prod", "api"],
        "metadata_key_0": "env",
        "metadata_value_0": "prod",
        "metadata_key_1": "team",
        "metadata_value_1": "x' OR 1=1",
    }


@pytest.mark.parametrize("metadata", [{"bad key": "x"}, {"team": ""}, {"": "x"}])
def test_metadata_filter_keys_and_values_are_checked(metadata: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        filters(metadata=metadata)


def test_list_query_after_a_cursor() -> None:
    after = SortKey(timestamp=JAN_1, organization_id="org-1", event_id="evt-9")
    query = list_query(TABLE, filters(organization_id="org-1"), PageParams(page=1, per_page=10, after=after))
    assert query.sql == (
        f"SELECT {RECORD_COLUMNS}, count() OVER () AS total FROM {TABLE} FINAL"
        " WHERE organization_id = {organization_id:String} AND"
        " (timestamp < {after_timestamp:DateTime64(3, 'UTC')} OR (timestamp = {after_timestamp:DateTime64(3, 'UTC')}"
        " AND (organization_id, event_id) > ({after_organization_id:String}, {after_event_id:String})))"
        " ORDER BY timestamp DESC, organization_id, event_id LIMIT {limit:UInt32} OFFSET {offset:UInt64}"
    )
    assert query.parameters == {
        "organization_id": "org-1",
        "after_timestamp": JAN_1,
        "after_organization_id": "org-1",
        "after_event_id": "evt-9",
        "limit": 10,
        "offset": 0,
    }


def test_cursor_round_trip_and_garbage() -> None:
    key = SortKey(timestamp=datetime(2025, 1, 15, 10, 0, 0, 123000, tzinfo=UTC), organization_id="o", event_id="e")
    assert decode_cursor(encode_cursor(key)) == key
    for bad in ("", "abc", "W10", encode_cursor(key)[:-4], "WyJ4IiwibyIsImUiXQ"):
        with pytest.raises(ValueError, match="is not a cursor"):
            decode_cursor(bad)


def test_detail_query_applies_the_filters() -> None:
    query = detail_query(TABLE, "evt-1", filters(organization_id="org-1"), "event_id AS id")
    assert query == Query(
        f"SELECT event_id AS id FROM {TABLE} FINAL WHERE organization_id = {{organization_id:String}}"
        " AND event_id = {event_id:String} LIMIT 1",
        {"organization_id": "org-1", "event_id": "evt-1"},
    )


@pytest.mark.parametrize(
    ("granularity", "timezone", "expression"),
    [
        ("minute", "UTC", "toStartOfMinute(timestamp)"),
        ("day", "Asia/Tokyo", "toStartOfDay(timestamp, {timezone:String})"),
        ("week", "UTC", "toDateTime(toStartOfWeek(timestamp, 1, {timezone:String}), {timezone:String})"),
        ("month", "Europe/Paris", "toDateTime(toStartOfMonth(timestamp, {timezone:String}), {timezone:String})"),
    ],
)
def test_aggregate_query_periods_in_a_time_zone(granularity: str, timezone: str, expression: str) -> None:
    agg = AggregateParams(granularity=granularity, timezone=timezone)  # type: ignore[arg-type]
    query = aggregate_query(TABLE, filters(), agg)
    assert query.sql == (
        f"SELECT {expression} AS period_start, currency, {TOTALS} FROM {TABLE} FINAL"
        " GROUP BY period_start, currency ORDER BY period_start, currency"
    )
    assert query.parameters == ({} if expression.endswith("(timestamp)") else {"timezone": timezone})


def test_aggregate_query_by_tag_user_and_metadata() -> None:
    agg = AggregateParams(group_by=("tag", "user_id", "metadata.team"))
    query = aggregate_query(TABLE, filters(tags=["prod"]), agg)
    assert query == Query(
        "SELECT arrayJoin(if(empty(tags), [''], arrayDistinct(tags))) AS tag, user_id,"
        f" metadata[{{group_key_2:String}}] AS group_2, currency, {TOTALS} FROM {TABLE} FINAL"
        " WHERE hasAll(tags, {tags:Array(String)})"
        " GROUP BY tag, user_id, group_2, currency ORDER BY tag, user_id, group_2, currency",
        {"tags": ["prod"], "group_key_2": "team"},
    )


@pytest.mark.parametrize("key", ["metadata.", "metadata.a b", "tags", "event_id", "metadata.x;DROP"])
def test_group_by_outside_the_whitelist_is_refused(key: str) -> None:
    with pytest.raises(ValidationError):
        AggregateParams(group_by=(key,))


@pytest.mark.parametrize("zone", ["Mars/Olympus", "../etc/passwd", "utc+1"])
def test_unknown_time_zone_is_refused(zone: str) -> None:
    with pytest.raises(ValidationError):
        AggregateParams(timezone=zone)
