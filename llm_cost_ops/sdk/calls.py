"""Every API operation as a :class:`Call`: method, path, parameters, body and how to read the
answer. Written once here, executed by the sync and the async client alike, so the two can
differ only in how they wait."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar
from urllib.parse import quote

from pydantic import BaseModel

from llm_cost_ops.sdk import control_models as cm
from llm_cost_ops.sdk import models as m
from llm_cost_ops.sdk.params import QueryParams, jsonable, query, with_id

T = TypeVar("T")
R = TypeVar("R", bound=BaseModel)

Metric = Literal["cost", "usage"]
API = "/api/v1"


@dataclass(frozen=True)
class Call(Generic[T]):
    """One request and the parser of its (JSON, or empty) answer.

    Attributes:
        idempotent: whether sending it twice cannot change the outcome (see :mod:`.retry`).
    """

    method: str
    path: str
    parse: Callable[[Any], T]
    params: QueryParams | None = None
    body: Any = None
    idempotent: bool = True


def _model(cls: type[R]) -> Callable[[Any], R]:
    return cls.model_validate


def _nothing(_: Any) -> None:
    return None


def _id(value: str) -> str:
    return quote(value, safe="")


# --- usage ----------------------------------------------------------------------------------


def usage_create(fields: Mapping[str, Any]) -> Call[m.UsageAccepted]:
    return Call("POST", f"{API}/usage", _model(m.UsageAccepted), body=with_id(fields))


def usage_batch(records: Iterable[Mapping[str, Any]]) -> Call[m.BatchResult]:
    return Call("POST", f"{API}/usage/batch", _model(m.BatchResult), body={"records": [with_id(r) for r in records]})


def usage_get(event_id: str) -> Call[m.UsageRecord]:
    return Call("GET", f"{API}/usage/{_id(event_id)}", _model(m.UsageRecord))


def usage_list(filters: Mapping[str, Any]) -> Call[m.Page[m.UsageRecord]]:
    return Call("GET", f"{API}/usage", _model(m.Page[m.UsageRecord]), params=query(filters))


def usage_delete(event_id: str) -> Call[None]:
    return Call("DELETE", f"{API}/usage/{_id(event_id)}", _nothing)


def usage_stats(filters: Mapping[str, Any]) -> Call[m.UsageStats]:
    return Call("GET", f"{API}/usage/stats", _model(m.UsageStats), params=query(filters))


# --- costs ----------------------------------------------------------------------------------


def costs_list(filters: Mapping[str, Any]) -> Call[m.Page[m.CostRecord]]:
    return Call("GET", f"{API}/costs", _model(m.Page[m.CostRecord]), params=query(filters))


def costs_get(event_id: str) -> Call[m.CostDetail]:
    return Call("GET", f"{API}/costs/{_id(event_id)}", _model(m.CostDetail))


def costs_aggregate(filters: Mapping[str, Any]) -> Call[m.CostAggregate]:
    return Call("GET", f"{API}/costs/aggregate", _model(m.CostAggregate), params=query(filters))


def costs_summary(filters: Mapping[str, Any]) -> Call[m.CostSummary]:
    return Call("GET", f"{API}/costs/summary", _model(m.CostSummary), params=query(filters))


def costs_trends(filters: Mapping[str, Any]) -> Call[m.CostTrends]:
    return Call("GET", f"{API}/costs/trends", _model(m.CostTrends), params=query(filters))


def next_page_filters(filters: Mapping[str, Any], cursor: str) -> dict[str, Any]:
    """The filters of the page after one whose ``next_cursor`` is ``cursor`` (``page`` and
    ``cursor`` exclude each other)."""
    return {**{k: v for k, v in filters.items() if k != "page"}, "cursor": cursor}


EXPORT_PATH = f"{API}/costs/export"

# --- pricing --------------------------------------------------------------------------------


def pricing_create(rule: Mapping[str, Any]) -> Call[cm.PricingRule]:
    # Not idempotent: a second POST would add a second (overlapping, so refused) rule.
    return Call("POST", f"{API}/pricing", _model(cm.PricingRule), body=jsonable(rule), idempotent=False)


def pricing_list(filters: Mapping[str, Any]) -> Call[cm.PricingRuleList]:
    return Call("GET", f"{API}/pricing", _model(cm.PricingRuleList), params=query(filters))


def pricing_get(rule_id: str) -> Call[cm.PricingRule]:
    return Call("GET", f"{API}/pricing/{_id(rule_id)}", _model(cm.PricingRule))


def pricing_update(rule_id: str, rule: Mapping[str, Any]) -> Call[cm.PricingRule]:
    return Call("PUT", f"{API}/pricing/{_id(rule_id)}", _model(cm.PricingRule), body=jsonable(rule))


def pricing_delete(rule_id: str) -> Call[cm.PricingRule]:
    return Call("DELETE", f"{API}/pricing/{_id(rule_id)}", _model(cm.PricingRule))


# --- forecast and anomalies -----------------------------------------------------------------


def forecast_generate(metric: Metric, body: Mapping[str, Any]) -> Call[cm.Forecast]:
    if metric not in ("cost", "usage"):
        raise ValueError(f"metric must be 'cost' or 'usage', not {metric!r}")
    payload = {k: v for k, v in jsonable(body).items() if v is not None}
    return Call("POST", f"{API}/forecast/{metric}", _model(cm.Forecast), body=payload)  # a read: idempotent


def detect_anomalies(filters: Mapping[str, Any]) -> Call[cm.AnomalyReport]:
    return Call("GET", f"{API}/forecast/anomalies", _model(cm.AnomalyReport), params=query(filters))


# --- budgets and alerts ---------------------------------------------------------------------


def budgets_create(budget: Mapping[str, Any]) -> Call[cm.Budget]:
    return Call("POST", f"{API}/budgets", _model(cm.Budget), body=jsonable(budget), idempotent=False)


def budgets_list(filters: Mapping[str, Any]) -> Call[cm.BudgetList]:
    return Call("GET", f"{API}/budgets", _model(cm.BudgetList), params=query(filters))


def budgets_get(budget_id: str, at: Any = None) -> Call[cm.BudgetStatus]:
    return Call("GET", f"{API}/budgets/{_id(budget_id)}", _model(cm.BudgetStatus), params=query({"at": at}))


def budgets_update(budget_id: str, budget: Mapping[str, Any]) -> Call[cm.Budget]:
    return Call("PUT", f"{API}/budgets/{_id(budget_id)}", _model(cm.Budget), body=jsonable(budget))


def budgets_delete(budget_id: str) -> Call[cm.Budget]:
    return Call("DELETE", f"{API}/budgets/{_id(budget_id)}", _model(cm.Budget))


def alerts_list(filters: Mapping[str, Any]) -> Call[cm.AlertPage]:
    return Call("GET", f"{API}/alerts", _model(cm.AlertPage), params=query(filters))
