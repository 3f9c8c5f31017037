"""Queries behind alerts, anomalies and forecasts (``alerts``, ``usage_costs``), read ``FINAL``."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from schemas.alerts import Alert, AlertPage, AlertParams
from sinks.store import ClickHouseStore

_ALERT_COLUMNS = list(Alert.model_fields)


class InsightQueries:
    def __init__(self, store: ClickHouseStore) -> None:
        self._store = store

    def list_alerts(self, params: AlertParams) -> AlertPage:
        conditions: list[str] = []
        values: dict[str, Any] = {}
        for column, value in (
            ("organization_id", params.organization_id),
            ("type", params.type),
            ("severity", params.severity),
        ):
            if value is not None:
                conditions.append(f"{column} = {{{column}:String}}")
                values[column] = value
        for name, bound, operator in (("start", params.start, ">="), ("end", params.end, "<")):
            if bound is not None:
                conditions.append(f"window_start {operator} {{{name}:DateTime64(3, 'UTC')}}")
                values[name] = bound
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        offset = (params.page - 1) * params.per_page
        rows = self._store.query(
            f"SELECT {', '.join(_ALERT_COLUMNS)}, count() OVER () FROM {self._store.table('alerts')} FINAL{where} "
            "ORDER BY window_start DESC, alert_id LIMIT {limit:UInt32} OFFSET {offset:UInt64}",
            {**values, "limit": params.per_page, "offset": offset},
        )
        total = rows[0][-1] if rows else self._count(where, values)
        alerts = [Alert(**dict(zip(_ALERT_COLUMNS, row[:-1], strict=True))) for row in rows]
        return AlertPage(
            data=alerts,
            page=params.page,
            per_page=params.per_page,
            total=total,
            has_more=offset + len(rows) < total,
        )

    def _count(self, where: str, values: dict[str, Any]) -> int:
        return int(self._store.query(f"SELECT count() FROM {self._store.table('alerts')} FINAL{where}", values)[0][0])

    def daily_costs(self, organization_id: str | None, currency: str, start: date, end: date) -> dict[date, Decimal]:
        """Priced cost per UTC day from ``start`` to ``end`` (inclusive), days without cost absent."""
        return self._daily("sum(total_cost)", organization_id, currency, start, end)

    def daily_tokens(self, organization_id: str | None, start: date, end: date) -> dict[date, Decimal]:
        """Total tokens per UTC day (priced or not)."""
        return self._daily("sum(total_tokens)", organization_id, None, start, end)

    def last_day(self, organization_id: str | None, currency: str | None) -> date | None:
        """The latest UTC day with usage (of ``currency``'s priced cost when given)."""
        where, values = self._scope(organization_id, currency)
        rows = self._store.query(
            f"SELECT max(timestamp), count() FROM {self._store.table('usage_costs')} FINAL WHERE 1 = 1{where}", values
        )
        if not rows or not rows[0][1]:
            return None
        latest: datetime = rows[0][0]
        return latest.astimezone(UTC).date() if latest.tzinfo else latest.date()

    def _daily(
        self, measure: str, organization_id: str | None, currency: str | None, start: date, end: date
    ) -> dict[date, Decimal]:
        where, values = self._scope(organization_id, currency)
        values["start"] = datetime.combine(start, time.min, tzinfo=UTC)
        values["end"] = datetime.combine(end + timedelta(days=1), time.min, tzinfo=UTC)
        rows = self._store.query(
            f"SELECT toDate(timestamp) AS day, {measure} FROM {self._store.table('usage_costs')} FINAL "
            "WHERE timestamp >= {start:DateTime64(3, 'UTC')} AND timestamp < {end:DateTime64(3, 'UTC')}"
            f"{where} GROUP BY day ORDER BY day",
            values,
        )
        return {row[0]: Decimal(row[1]) for row in rows}

    @staticmethod
    def _scope(organization_id: str | None, currency: str | None) -> tuple[str, dict[str, Any]]:
        where, values = "", {}
        if organization_id is not None:
            where += " AND organization_id = {organization_id:String}"
            values["organization_id"] = organization_id
        if currency is not None:
            where += " AND currency = {currency:String} AND total_cost IS NOT NULL"
            values["currency"] = currency
        return where, values
