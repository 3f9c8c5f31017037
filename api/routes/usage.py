"""Ingestion: validate, publish to Kafka, answer 202 only once the broker has the events."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from api import examples
from api.auth import Principal, PrincipalDep
from api.budget_view import next_period_s
from api.context import ApiContext
from api.deps import ActorDep, ContextDep, ControlDep, FiltersDep, PageDep, ProducerDep, QueriesDep, json_body
from llm_cost_ops.errors import BudgetExceededError, InvalidInputError, NotFoundError, PermissionDeniedError
from schemas.budget import Budget
from schemas.errors import EventValidationError
from schemas.query import CostFilterParams, UsagePage, UsageRecord, UsageStats
from schemas.usage import UsageEvent
from sinks.deletion import UsageDeleter

router = APIRouter(prefix="/api/v1/usage", tags=["usage"])

_USAGE_BODY = examples.body(UsageEvent, examples.USAGE)["requestBody"]
_BATCH_BODY = examples.body(
    {
        "type": "object",
        "properties": {"records": {"type": "array", "items": UsageEvent.model_json_schema()}},
        "required": ["records"],
    },
    {"records": [examples.USAGE, {**examples.USAGE, "provider": "anthropic", "model": "claude-3-5-sonnet-20241022"}]},
)["requestBody"]


@router.get("/stats", response_model=UsageStats)
def usage_stats(queries: QueriesDep, filters: FiltersDep) -> UsageStats:
    """Events, priced/unpriced counts, tokens, first/last event, and freshness: how long events
    took from ingestion to being queryable (p50/p99/max)."""
    return queries.stats(filters)


@router.get("", response_model=UsagePage)
def list_usage(queries: QueriesDep, filters: FiltersDep, page: PageDep) -> UsagePage:
    """Usage records, newest first, paginated like ``GET /api/v1/costs`` (``page``/``per_page``
    or ``cursor``)."""
    return queries.list_usage(filters, page)


@router.get("/{event_id}", response_model=UsageRecord)
def get_usage(queries: QueriesDep, event_id: str, filters: FiltersDep) -> UsageRecord:
    """One usage record (404 when no record with this id matches the filters)."""
    record = queries.usage(event_id, filters)
    if record is None:
        raise NotFoundError(f"no usage record with id {event_id}")
    return record


@router.delete("/{event_id}", status_code=204)
async def delete_usage(
    context: ContextDep, control: ControlDep, principal: PrincipalDep, actor: ActorDep, event_id: str
) -> Response:
    """Delete one usage record of the caller's organization (``delete:costs``; 404 for an id
    it does not own). The record leaves every list and aggregate, and stays deleted if the
    event is replayed or repriced later; the deletion is audited (entity ``usage``, the record
    as ``before``). Not undone: windows, alerts and budget spend the workers already counted
    (docs/architecture.md, "Deleting usage")."""
    scope = CostFilterParams(organization_id=principal.scope(None))
    deleter = UsageDeleter(context.store, control)
    await asyncio.to_thread(deleter.delete, event_id, scope, actor)
    return Response(status_code=204)


@router.post("", status_code=202, openapi_extra={"requestBody": _USAGE_BODY})
async def create_usage(
    request: Request, context: ContextDep, producer: ProducerDep, principal: PrincipalDep
) -> JSONResponse:
    """Submit one usage record; 202 means Kafka acknowledged it. Without ``organization_id``
    the record belongs to the key's organization (admins must name one); a key may not
    submit another organization's (403)."""
    body = _owned(await json_body(request), principal)
    try:
        event = UsageEvent.parse(body, context.providers)
    except EventValidationError:
        context.metrics.events_rejected.inc()
        raise
    over = _over_budget(context, event)
    if over and context.settings.budgets.hard_limit_action == "reject":
        context.metrics.budget_rejections.inc()
        raise _budget_error(over, event)
    await producer.publish([event])
    context.metrics.events_ingested.inc()
    answer: dict[str, Any] = {"id": event.id, "status": "accepted", "organization_id": event.organization_id,
                              "timestamp": event.timestamp.isoformat()}  # fmt: skip
    if over:
        answer["budget_exceeded"] = [budget.id for budget in over]
    return JSONResponse(answer, status_code=202)


@router.post("/batch", status_code=202, openapi_extra={"requestBody": _BATCH_BODY})
async def create_usage_batch(
    request: Request, context: ContextDep, producer: ProducerDep, principal: PrincipalDep
) -> JSONResponse:
    """Submit many records (``{"records": [...]}`` or a bare array).

    Valid records are published even when others are invalid; the invalid ones are listed
    under ``rejected`` with their field errors. If none is valid the answer is 422.
    """
    body = await json_body(request)
    records = body.get("records") if isinstance(body, dict) else body
    if not isinstance(records, list):
        raise InvalidInputError('expected {"records": [...]}', {"records": "must be a list of usage records"})
    limit = context.settings.api.max_batch
    if len(records) > limit:
        raise InvalidInputError("batch too large", {"records": f"must have at most {limit} items"})
    if not records:
        raise InvalidInputError("empty batch", {"records": "must not be empty"})
    accepted: list[UsageEvent] = []
    rejected: list[dict[str, Any]] = []
    flagged: list[dict[str, Any]] = []
    refusing = context.settings.budgets.hard_limit_action == "reject"
    over_budget: list[tuple[UsageEvent, list[Budget]]] = []
    for index, record in enumerate(records):
        try:
            event = UsageEvent.parse(_owned(record, principal), context.providers)
        except PermissionDeniedError as exc:
            rejected.append({"index": index, "code": exc.code, "field_errors": exc.field_errors})
            context.metrics.events_rejected.inc()
            continue
        except EventValidationError as exc:
            rejected.append({"index": index, "field_errors": exc.field_errors})
            context.metrics.events_rejected.inc()
            continue
        over = _over_budget(context, event)
        if over and refusing:
            error = _budget_error(over, event)
            rejected.append({"index": index, "code": error.code, "field_errors": error.field_errors})
            over_budget.append((event, over))
            context.metrics.budget_rejections.inc()
            continue
        if over:
            flagged.append({"index": index, "id": event.id, "budgets": [budget.id for budget in over]})
        accepted.append(event)
    if not accepted:
        if all(r.get("code") == PermissionDeniedError.code for r in rejected):
            fields = {f"records[{r['index']}].{k}": v for r in rejected for k, v in r["field_errors"].items()}
            raise PermissionDeniedError(f"all {len(records)} records belong to other organizations", fields)
        if over_budget and len(over_budget) == len(rejected):
            raise _budget_error([b for _, over in over_budget for b in over], over_budget[0][0])
        fields = {f"records[{r['index']}].{name}": why for r in rejected for name, why in r["field_errors"].items()}
        raise InvalidInputError(f"all {len(records)} records are invalid", fields)
    await producer.publish(accepted)
    context.metrics.events_ingested.inc(len(accepted))
    answer = {"status": "accepted", "accepted": len(accepted), "ids": [e.id for e in accepted], "rejected": rejected}
    if flagged:
        answer["budget_exceeded"] = flagged
    return JSONResponse(answer, status_code=202)


def _owned(record: Any, principal: Principal) -> Any:
    """The record with the caller's organization filled in when it names none (an admin, who
    spans organizations, must name one); another organization's record is refused (403)."""
    if not isinstance(record, dict):
        return record
    named = record.get("organization_id")
    if named is None:
        return record if principal.platform else {**record, "organization_id": principal.organization_id}
    if isinstance(named, str):
        principal.scope(named)
    return record


def _over_budget(context: ApiContext, event: UsageEvent) -> list[Budget]:
    """The spent hard budgets ``event`` counts against (none without a spend board)."""
    if context.board is None:
        return []
    return context.limits.exceeded(event, context.board)


def _budget_error(over: list[Budget], event: UsageEvent) -> BudgetExceededError:
    unique = {budget.id: budget for budget in over}
    fields = {
        f"budget.{b.id}": f"hard {b.period} budget {b.name!r} of {b.currency} {b.amount} is spent"
        for b in unique.values()
    }
    wait = max(next_period_s(budget, event.timestamp) for budget in unique.values())  # until all have reset
    return BudgetExceededError(f"{len(unique)} hard budget(s) exceeded: {', '.join(unique)}", fields, wait)
