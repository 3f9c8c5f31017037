"""The synchronous client's resources: ``client.usage``, ``costs``, ``pricing``, ``forecast``,
``export``, ``budgets``, ``alerts``. Each method builds a :class:`~.calls.Call` and sends it."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import IO, Any, Protocol, TypeVar

from llm_cost_ops.sdk import calls
from llm_cost_ops.sdk import control_models as cm
from llm_cost_ops.sdk import models as m
from llm_cost_ops.sdk.calls import Call, Metric

T = TypeVar("T")


class Caller(Protocol):
    def call(self, call: Call[T]) -> T: ...

    def download(
        self, path: str, filters: Mapping[str, Any], fmt: str, target: str | os.PathLike[str] | IO[bytes]
    ) -> m.ExportResult: ...


class Resource:
    def __init__(self, client: Caller) -> None:
        self._client = client


class Usage(Resource):
    def create(self, **fields: Any) -> m.UsageAccepted:
        """Submit one usage record (the API's fields: ``provider``, ``model``, ``prompt_tokens``,
        ...). Without ``id`` one is generated here, so that a retry cannot count it twice."""
        return self._client.call(calls.usage_create(fields))

    def track(self, response: Any, *, provider: str | None = None, **fields: Any) -> m.UsageAccepted:
        """Submit the usage of a provider response (OpenAI, Anthropic, Gemini, Bedrock: see
        ``llm_cost_ops.providers``), with ``fields`` such as ``organization_id`` or ``project_id``.
        Raises like :meth:`create`; ``llm_cost_ops.track`` is the variant that never raises."""
        from llm_cost_ops.providers import usage_from_response

        return self.create(**usage_from_response(response, provider=provider, **fields))

    def batch_create(self, records: Iterable[Mapping[str, Any]]) -> m.BatchResult:
        """Submit up to 1000 records; the valid ones are accepted, the others listed in ``rejected``."""
        return self._client.call(calls.usage_batch(records))

    def get(self, event_id: str) -> m.UsageRecord:
        return self._client.call(calls.usage_get(event_id))

    def list(self, **filters: Any) -> m.Page[m.UsageRecord]:
        return self._client.call(calls.usage_list(filters))

    def delete(self, event_id: str) -> None:
        self._client.call(calls.usage_delete(event_id))

    def stats(self, **filters: Any) -> m.UsageStats:
        return self._client.call(calls.usage_stats(filters))


class Costs(Resource):
    def list(self, **filters: Any) -> m.Page[m.CostRecord]:
        """One page of cost records, newest first. Filters: ``organization_id``, ``project_id``,
        ``user_id``, ``provider``, ``model``, ``currency``, ``start_date``, ``end_date``, ``tags``,
        ``metadata`` (a dict), and ``per_page`` with ``page`` or ``cursor``."""
        return self._client.call(calls.costs_list(filters))

    def list_paginated(self, **filters: Any) -> Iterator[m.CostRecord]:
        """Every record the filters match, one page in memory at a time, following ``next_cursor``
        (keyset paging: rows written meanwhile are not listed twice)."""
        page = self.list(**filters)
        yield from page.data
        while page.has_more and page.next_cursor:
            page = self.list(**calls.next_page_filters(filters, page.next_cursor))
            yield from page.data

    def get(self, event_id: str) -> m.CostDetail:
        return self._client.call(calls.costs_get(event_id))

    def aggregate(
        self, group_by: Sequence[str] = (), granularity: str | None = None, **filters: Any
    ) -> m.CostAggregate:
        """Totals per group (any of provider, model, organization_id, project_id, user_id, tag,
        ``metadata.KEY``), split by currency, optionally per ``granularity`` (minute to month)
        in ``timezone``."""
        grouping = {"group_by": group_by, "granularity": granularity, **filters}
        return self._client.call(calls.costs_aggregate(grouping))

    def summary(self, **filters: Any) -> m.CostSummary:
        return self._client.call(calls.costs_summary(filters))

    def trends(self, granularity: str | None = None, **filters: Any) -> m.CostTrends:
        return self._client.call(calls.costs_trends({"granularity": granularity, **filters}))


class Pricing(Resource):
    def create(self, **rule: Any) -> cm.PricingRule:
        """A custom price (``provider``, ``model``, ``pricing_structure``, ...); not retried on
        502/503/504 or timeouts, which may follow a committed write."""
        return self._client.call(calls.pricing_create(rule))

    def list(self, **filters: Any) -> cm.PricingRuleList:
        return self._client.call(calls.pricing_list(filters))

    def get(self, rule_id: str) -> cm.PricingRule:
        return self._client.call(calls.pricing_get(rule_id))

    def update(self, rule_id: str, **rule: Any) -> cm.PricingRule:
        """Replace every field of the rule (omitted optional fields take their defaults)."""
        return self._client.call(calls.pricing_update(rule_id, rule))

    def delete(self, rule_id: str) -> cm.PricingRule:
        return self._client.call(calls.pricing_delete(rule_id))


class Forecasts(Resource):
    def generate(
        self,
        organization_id: str | None = None,
        horizon_days: int = 30,
        model: str = "linear",
        metric: Metric = "cost",
        **options: Any,
    ) -> cm.Forecast:
        """Daily cost (or, with ``metric="usage"``, tokens) for the next ``horizon_days``;
        ``options``: ``confidence_level``, ``history_days``, ``currency``."""
        body = {"organization_id": organization_id, "horizon_days": horizon_days, "model": model, **options}
        return self._client.call(calls.forecast_generate(metric, body))

    def detect_anomalies(self, **filters: Any) -> cm.AnomalyReport:
        """Anomalous days between ``start_date`` and ``end_date``; ``method``, ``threshold``, ``currency``."""
        return self._client.call(calls.detect_anomalies(filters))


class Export(Resource):
    def create(
        self, path_or_file: str | os.PathLike[str] | IO[bytes], format: str = "csv", **filters: Any
    ) -> m.ExportResult:
        """Every cost record the filters match, streamed to a file (csv, json, jsonl, parquet, xlsx)."""
        return self._client.download(calls.EXPORT_PATH, filters, format, path_or_file)


class Budgets(Resource):
    def create(self, **budget: Any) -> cm.Budget:
        return self._client.call(calls.budgets_create(budget))

    def list(self, **filters: Any) -> cm.BudgetList:
        return self._client.call(calls.budgets_list(filters))

    def get(self, budget_id: str, at: Any = None) -> cm.BudgetStatus:
        return self._client.call(calls.budgets_get(budget_id, at))

    def update(self, budget_id: str, **budget: Any) -> cm.Budget:
        return self._client.call(calls.budgets_update(budget_id, budget))

    def delete(self, budget_id: str) -> cm.Budget:
        return self._client.call(calls.budgets_delete(budget_id))


class Alerts(Resource):
    def list(self, **filters: Any) -> cm.AlertPage:
        return self._client.call(calls.alerts_list(filters))
