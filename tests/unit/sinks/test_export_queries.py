"""Golden SQL of the export's keyset pages (sinks/export_queries.py)."""

from __future__ import annotations

from datetime import UTC, datetime

from schemas.query import CostFilterParams, CostRecord, SortKey
from sinks.export_queries import EXPORT_COLUMNS, MONEY_COLUMNS, export_page_query

TABLE = "costops.usage_costs"
MONEY_AS_TEXT = (
    "event_id AS id, timestamp, provider, model, organization_id, project_id, user_id, prompt_tokens, "
    "completion_tokens, total_tokens, cached_tokens, cache_write_tokens, reasoning_tokens, pricing_status, "
    "toDecimalString(input_cost, 10) AS input_cost, toDecimalString(cached_cost, 10) AS cached_cost, "
    "toDecimalString(cache_write_cost, 10) AS cache_write_cost, toDecimalString(output_cost, 10) AS output_cost, "
    "toDecimalString(reasoning_cost, 10) AS reasoning_cost, toDecimalString(request_cost, 10) AS request_cost, "
    "toDecimalString(total_cost, 10) AS total_cost, currency, price_source, unpriced_reason"
)


def test_money_columns_are_every_decimal_of_a_record() -> None:
    decimals = {name for name, f in CostRecord.model_fields.items() if "Decimal" in str(f.annotation)}
    assert decimals == MONEY_COLUMNS and len(MONEY_COLUMNS) == 7
    assert EXPORT_COLUMNS[:2] == ("id", "timestamp")


def test_first_page_is_scoped_and_ordered_like_the_listing() -> None:
    query = export_page_query(TABLE, CostFilterParams(organization_id="org-a", provider="openai"), None, 50_000)
    assert query.sql == (
        f"SELECT {MONEY_AS_TEXT} FROM {TABLE} FINAL WHERE organization_id = {{organization_id:String}} "
        "AND provider = {provider:String} ORDER BY timestamp DESC, organization_id, event_id LIMIT {limit:UInt32}"
    )
    assert query.parameters == {"organization_id": "org-a", "provider": "openai", "limit": 50_000}


def test_next_page_starts_after_the_last_row() -> None:
    at = datetime(2025, 1, 15, 10, 0, tzinfo=UTC)
    after = SortKey(timestamp=at, organization_id="org-a", event_id="evt-9")
    query = export_page_query(TABLE, CostFilterParams(), after, 10, money="decimal")
    assert query.sql == (
        f"SELECT event_id AS id, {', '.join(EXPORT_COLUMNS[1:])} FROM {TABLE} FINAL WHERE "
        "(timestamp < {after_timestamp:DateTime64(3, 'UTC')} OR (timestamp = {after_timestamp:DateTime64(3, 'UTC')} "
        "AND (organization_id, event_id) > ({after_organization_id:String}, {after_event_id:String}))) "
        "ORDER BY timestamp DESC, organization_id, event_id LIMIT {limit:UInt32}"
    )
    assert query.parameters == {
        "after_timestamp": at,
        "after_organization_id": "org-a",
        "after_event_id": "evt-9",
        "limit": 10,
    }
