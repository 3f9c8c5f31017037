"""Budgets: spending limits with alert thresholds, and their spend in the current period."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request

from api import examples
from api.auth import Principal, PrincipalDep
from api.budget_view import status
from api.context import ApiContext
from api.deps import ActorDep, ContextDep, json_body
from llm_cost_ops.errors import NotFoundError
from schemas.budget import Budget, BudgetInput, BudgetList, BudgetStatus
from schemas.control import AuditEntry
from schemas.query import UtcDatetime

router = APIRouter(prefix="/api/v1/budgets", tags=["budgets"])

_BODY = examples.body(BudgetInput, examples.BUDGET)["requestBody"]


@router.post("", status_code=201, response_model=Budget, openapi_extra={"requestBody": _BODY})
async def create_budget(request: Request, context: ContextDep, actor: ActorDep, principal: PrincipalDep) -> Budget:
    """A budget on an organization, or one of its projects (``project_id``), users
    (``user_id``) or models (``model``), per UTC day or month. Each threshold (percent of
    ``amount``, default 50/80/100) raises one ``budget.threshold`` alert per period; a ``hard``
    budget makes ingestion reject (or flag) the scope's events once it is spent."""
    budget = BudgetInput.parse(await json_body(request))
    principal.scope(budget.organization_id)
    created = await asyncio.to_thread(context.budgets.create, budget, actor)
    await context.control_changed()
    return created


@router.get("", response_model=BudgetList)
async def list_budgets(
    context: ContextDep,
    principal: PrincipalDep,
    organization_id: Annotated[str | None, Query(max_length=128)] = None,
    at: Annotated[UtcDatetime | None, Query(description="the period containing this instant (default: now)")] = None,
) -> BudgetList:
    """Every budget with its spend, remaining amount and thresholds reached in its period."""
    board = context.spend
    moment = at or datetime.now(UTC)
    budgets = await asyncio.to_thread(context.budgets.all, principal.scope(organization_id))
    return BudgetList(data=[status(b, board, moment) for b in budgets], as_of=board.as_of)


@router.get("/{budget_id}", response_model=BudgetStatus)
async def get_budget(
    context: ContextDep, principal: PrincipalDep, budget_id: str, at: Annotated[UtcDatetime | None, Query()] = None
) -> BudgetStatus:
    budget = await _owned(context, principal, budget_id)
    return status(budget, context.spend, at or datetime.now(UTC))


@router.put("/{budget_id}", response_model=Budget, openapi_extra={"requestBody": _BODY})
async def replace_budget(
    request: Request, context: ContextDep, actor: ActorDep, principal: PrincipalDep, budget_id: str
) -> Budget:
    """A new definition under the same id; thresholds already reached in the period stay reached."""
    budget = BudgetInput.parse(await json_body(request))
    await _owned(context, principal, budget_id)
    principal.scope(budget.organization_id)
    replaced = await asyncio.to_thread(context.budgets.replace, budget_id, budget, actor)
    await context.control_changed()
    return replaced


@router.delete("/{budget_id}", response_model=Budget)
async def delete_budget(context: ContextDep, actor: ActorDep, principal: PrincipalDep, budget_id: str) -> Budget:
    await _owned(context, principal, budget_id)
    deleted = await asyncio.to_thread(context.budgets.delete, budget_id, actor)
    await context.control_changed()
    return deleted


@router.get("/{budget_id}/history", response_model=list[AuditEntry])
async def budget_history(context: ContextDep, principal: PrincipalDep, budget_id: str) -> list[AuditEntry]:
    """Every change to the budget, oldest first (kept after it is deleted)."""
    entries = await asyncio.to_thread(context.budgets.history, budget_id)
    if not all(principal.owns(entry.organization_id) for entry in entries):
        raise NotFoundError(f"no budget {budget_id}")
    return entries


async def _owned(context: ApiContext, principal: Principal, budget_id: str) -> Budget:
    budget = await asyncio.to_thread(context.budgets.get, budget_id)
    principal.check_owns(budget.organization_id, f"budget {budget_id}")
    return budget
