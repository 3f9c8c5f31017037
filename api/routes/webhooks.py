"""Webhooks: where alerts are delivered (the seeds' ``POST /api/v1/webhooks``), and their
delivery log."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Query, Request

from api import examples
from api.auth import PrincipalDep
from api.deps import ActorDep, ContextDep, json_body
from schemas.webhook import CreatedWebhook, DeliveryList, Webhook, WebhookInput, WebhookList

router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"])

_BODY = examples.body(WebhookInput, examples.WEBHOOK)["requestBody"]


@router.post("", status_code=201, response_model=CreatedWebhook, openapi_extra={"requestBody": _BODY})
async def create_webhook(
    request: Request, context: ContextDep, actor: ActorDep, principal: PrincipalDep
) -> CreatedWebhook:
    """Subscribe a URL to ``cost.anomaly`` and/or ``budget.threshold`` alerts. The response
    carries the signing secret (generated if not given): it is not shown again. Without
    ``organization_id`` an admin's webhook receives every organization's alerts; anyone
    else's receives their organization's."""
    hook = WebhookInput.parse(await json_body(request))
    hook = hook.model_copy(update={"organization_id": principal.scope(hook.organization_id)})
    return await asyncio.to_thread(context.webhooks.create, hook, actor)


@router.get("", response_model=WebhookList)
async def list_webhooks(context: ContextDep, principal: PrincipalDep) -> WebhookList:
    hooks = await asyncio.to_thread(context.webhooks.all, None if principal.platform else principal.organization_id)
    return WebhookList(data=hooks)


async def _owned(context: ContextDep, principal: PrincipalDep, webhook_id: str) -> Webhook:
    hook = await asyncio.to_thread(context.webhooks.get, webhook_id)
    principal.check_owns(hook.organization_id, f"webhook {webhook_id}")
    return hook


@router.get("/{webhook_id}", response_model=Webhook)
async def get_webhook(context: ContextDep, principal: PrincipalDep, webhook_id: str) -> Webhook:
    return await _owned(context, principal, webhook_id)


@router.delete("/{webhook_id}", response_model=Webhook)
async def delete_webhook(context: ContextDep, webhook_id: str, actor: ActorDep, principal: PrincipalDep) -> Webhook:
    """Stop delivering to it (deliveries in flight may still arrive)."""
    await _owned(context, principal, webhook_id)
    return await asyncio.to_thread(context.webhooks.delete, webhook_id, actor)


@router.get("/{webhook_id}/deliveries", response_model=DeliveryList)
async def list_deliveries(
    context: ContextDep, principal: PrincipalDep, webhook_id: str, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> DeliveryList:
    """Every delivery attempt, newest first: status code, error, duration."""
    store = context.webhooks
    await _owned(context, principal, webhook_id)  # 404 for an unknown webhook
    return DeliveryList(data=await asyncio.to_thread(store.deliveries, webhook_id, limit))
