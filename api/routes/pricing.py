"""Custom pricing rules: create, list, read, replace, delete, and each rule's audit history.

Writes run in a worker thread (the store is synchronous) and, once committed, are announced
through ``context.control_changed`` so that the pricing workers pick them up.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from fastapi import APIRouter, Request

from api import examples
from api.auth import Principal, PrincipalDep
from api.deps import ActorDep, ContextDep, ControlDep, json_body
from llm_cost_ops.errors import NotFoundError, PermissionDeniedError
from schemas.control import AuditEntry, PricingRuleList
from schemas.pricing_rule import PricingRule, PricingRuleInput, Scope
from sinks.control_store import ControlStore

router = APIRouter(prefix="/api/v1/pricing", tags=["pricing"])

_RULE_BODY = examples.body(PricingRuleInput, examples.PRICING_RULE)["requestBody"]


async def _rule_input(request: Request) -> PricingRuleInput:
    return PricingRuleInput.parse(await json_body(request, exact=True))


@router.post("", status_code=201, response_model=PricingRule, openapi_extra={"requestBody": _RULE_BODY})
async def create_pricing_rule(
    request: Request, context: ContextDep, control: ControlDep, actor: ActorDep, principal: PrincipalDep
) -> PricingRule:
    """Add a rule. 422 names every bad field, including a range that overlaps another rule
    of the same provider, model and scope."""
    rule = await _rule_input(request)
    _may_write(principal, rule.organization_id)
    created = await asyncio.to_thread(control.create_rule, rule, actor)
    await context.control_changed()
    return created


@router.get("", response_model=PricingRuleList)
def list_pricing_rules(
    control: ControlDep,
    principal: PrincipalDep,
    provider: str | None = None,
    model: str | None = None,
    organization_id: str | None = None,
    scope: Scope | None = None,
    active: bool = False,
) -> PricingRuleList:
    """Rules matching every filter given; ``active=true`` keeps those in force now. A caller
    sees the deployment-wide rules and its organization's."""
    rules = control.list_rules(
        provider=provider,
        model=model,
        organization_id=principal.scope(organization_id) if organization_id is not None else None,
        scope=scope,
        active_at=datetime.now(UTC) if active else None,
        visible_to=None if principal.platform else principal.organization_id,
    )
    return PricingRuleList(data=rules, total=len(rules))


@router.get("/{rule_id}", response_model=PricingRule)
def get_pricing_rule(control: ControlDep, principal: PrincipalDep, rule_id: str) -> PricingRule:
    return _visible_rule(control, principal, rule_id)


@router.put("/{rule_id}", response_model=PricingRule, openapi_extra={"requestBody": _RULE_BODY})
async def replace_pricing_rule(
    request: Request, context: ContextDep, control: ControlDep, actor: ActorDep, principal: PrincipalDep, rule_id: str
) -> PricingRule:
    """Replace every field of a rule (omitted optional fields take their defaults)."""
    rule = await _rule_input(request)
    existing = await asyncio.to_thread(_visible_rule, control, principal, rule_id)
    _may_write(principal, existing.organization_id)
    _may_write(principal, rule.organization_id)
    updated = await asyncio.to_thread(control.update_rule, rule_id, rule, actor)
    await context.control_changed()
    return updated


@router.delete("/{rule_id}", response_model=PricingRule)
async def delete_pricing_rule(
    context: ContextDep, control: ControlDep, actor: ActorDep, principal: PrincipalDep, rule_id: str
) -> PricingRule:
    """Delete a rule; the answer is the rule as it was. Its history stays."""
    existing = await asyncio.to_thread(_visible_rule, control, principal, rule_id)
    _may_write(principal, existing.organization_id)
    deleted = await asyncio.to_thread(control.delete_rule, rule_id, actor)
    await context.control_changed()
    return deleted


@router.get("/{rule_id}/history", response_model=list[AuditEntry])
def pricing_rule_history(control: ControlDep, principal: PrincipalDep, rule_id: str) -> list[AuditEntry]:
    """Every change to the rule, oldest first, with the rule before and after each."""
    entries = control.history(rule_id)
    if not entries or not all(principal.sees(e.organization_id) for e in entries):
        raise NotFoundError(f"no pricing rule {rule_id}")
    return entries


def _visible_rule(control: ControlStore, principal: Principal, rule_id: str) -> PricingRule:
    rule = control.get_rule(rule_id)
    if not principal.sees(rule.organization_id):
        raise NotFoundError(f"no pricing rule {rule_id}")
    return rule


def _may_write(principal: Principal, organization_id: str | None) -> None:
    """Deployment-wide rules are the admins'; others change their organization's only."""
    if organization_id is None and not principal.platform:
        raise PermissionDeniedError(
            "only admins change deployment-wide rules",
            {"organization_id": f"must be {principal.organization_id} (the caller's organization)"},
        )
    principal.scope(organization_id)
