"""Custom pricing rules: create, list, read, replace, delete, and each rule's audit history.

Writes run in a worker thread (the store is synchronous) and, once committed, are announced
through ``context.control_changed`` so that the pricing workers pick them up.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from fastapi import APIRouter, Request

from api.deps import ActorDep, ContextDep, ControlDep, json_body
from llm_cost_ops.errors import NotFoundError
from schemas.control import AuditEntry, PricingRuleList
from schemas.pricing_rule import PricingRule, PricingRuleInput, Scope

router = APIRouter(prefix="/api/v1/pricing", tags=["pricing"])

_RULE_BODY = {"required": True, "content": {"application/json": {"schema": PricingRuleInput.model_json_schema()}}}


async def _rule_input(request: Request) -> PricingRuleInput:
    return PricingRuleInput.parse(await json_body(request, exact=True))


@router.post("", status_code=201, response_model=PricingRule, openapi_extra={"requestBody": _RULE_BODY})
async def create_pricing_rule(
    request: Request, context: ContextDep, control: ControlDep, actor: ActorDep
) -> PricingRule:
    """Add a rule. 422 names every bad field, including a range that overlaps another rule
    of the same provider, model and scope."""
    rule = await _rule_input(request)
    created = await asyncio.to_thread(control.create_rule, rule, actor)
    await context.control_changed()
    return created


@router.get("", response_model=PricingRuleList)
def list_pricing_rules(
    control: ControlDep,
    provider: str | None = None,
    model: str | None = None,
    organization_id: str | None = None,
    scope: Scope | None = None,
    active: bool = False,
) -> PricingRuleList:
    """Rules matching every filter given; ``active=true`` keeps those in force now."""
    rules = control.list_rules(
        provider=provider,
        model=model,
        organization_id=organization_id,
        scope=scope,
        active_at=datetime.now(UTC) if active else None,
    )
    return PricingRuleList(data=rules, total=len(rules))


@router.get("/{rule_id}", response_model=PricingRule)
def get_pricing_rule(control: ControlDep, rule_id: str) -> PricingRule:
    return control.get_rule(rule_id)


@router.put("/{rule_id}", response_model=PricingRule, openapi_extra={"requestBody": _RULE_BODY})
async def replace_pricing_rule(
    request: Request, context: ContextDep, control: ControlDep, actor: ActorDep, rule_id: str
) -> PricingRule:
    """Replace every field of a rule (omitted optional fields take their defaults)."""
    rule = await _rule_input(request)
    updated = await asyncio.to_thread(control.update_rule, rule_id, rule, actor)
    await context.control_changed()
    return updated


@router.delete("/{rule_id}", response_model=PricingRule)
async def delete_pricing_rule(context: ContextDep, control: ControlDep, actor: ActorDep, rule_id: str) -> PricingRule:
    """Delete a rule; the answer is the rule as it was. Its history stays."""
    deleted = await asyncio.to_thread(control.delete_rule, rule_id, actor)
    await context.control_changed()
    return deleted


@router.get("/{rule_id}/history", response_model=list[AuditEntry])
def pricing_rule_history(control: ControlDep, rule_id: str) -> list[AuditEntry]:
    """Every change to the rule, oldest first, with the rule before and after each."""
    entries = control.history(rule_id)
    if not entries:
        raise NotFoundError(f"no pricing rule {rule_id}")
    return entries
