"""Webhooks and their delivery log in the control plane's store (SQLite or PostgreSQL)."""

from __future__ import annotations

import json
import secrets
import uuid
from datetime import datetime

from sqlalchemy import RowMapping, delete, desc, insert, select

from llm_cost_ops.errors import NotFoundError
from schemas.control import Actor
from schemas.webhook import CreatedWebhook, Delivery, Webhook, WebhookInput
from sinks.control_schema import audit_log, audit_row, from_ms, to_ms, webhook_deliveries, webhooks
from sinks.control_store import ControlStore


class WebhookStore:
    """Webhook subscriptions (created and deleted with an audit row) and every delivery attempt."""

    def __init__(self, control: ControlStore) -> None:
        self._control = control

    def create(self, hook: WebhookInput, actor: Actor) -> CreatedWebhook:
        now = self._control.now()
        secret = hook.secret or f"whsec_{secrets.token_urlsafe(32)}"
        created = CreatedWebhook(
            id=f"wh_{uuid.uuid4().hex[:20]}",
            url=hook.url,
            events=list(hook.events),
            organization_id=hook.organization_id,
            description=hook.description,
            created_at=now,
            created_by=actor.name,
            secret=secret,
        )
        public = Webhook.model_validate(created.model_dump(exclude={"secret"}))
        with self._control.write() as conn:
            conn.execute(
                insert(webhooks).values(
                    id=created.id,
                    url=created.url,
                    events=json.dumps(created.events),
                    organization_id=created.organization_id,
                    secret=secret,
                    description=created.description,
                    created_ms=to_ms(now),
                    created_by=actor.name,
                )
            )
            conn.execute(
                insert(audit_log).values(
                    audit_row(now, actor, "create", created.id, None, public, "webhook", public.organization_id)
                )
            )
        return created

    def delete(self, webhook_id: str, actor: Actor) -> Webhook:
        now = self._control.now()
        with self._control.write() as conn:
            row = conn.execute(select(webhooks).where(webhooks.c.id == webhook_id)).mappings().first()
            if row is None:
                raise NotFoundError(f"no webhook {webhook_id}")
            before = _webhook(row)
            conn.execute(delete(webhooks).where(webhooks.c.id == webhook_id))
            conn.execute(
                insert(audit_log).values(
                    audit_row(now, actor, "delete", webhook_id, before, None, "webhook", before.organization_id)
                )
            )
        return before

    def get(self, webhook_id: str) -> Webhook:
        with self._control.read() as conn:
            row = conn.execute(select(webhooks).where(webhooks.c.id == webhook_id)).mappings().first()
        if row is None:
            raise NotFoundError(f"no webhook {webhook_id}")
        return _webhook(row)

    def all(self, organization_id: str | None = None) -> list[Webhook]:
        """Every webhook, or those of one organization."""
        query = select(webhooks).order_by(webhooks.c.created_ms)
        if organization_id is not None:
            query = query.where(webhooks.c.organization_id == organization_id)
        with self._control.read() as conn:
            return [_webhook(row) for row in conn.execute(query).mappings()]

    def subscribers(self, event: str, organization_id: str, created_before: datetime) -> list[tuple[Webhook, str]]:
        """Webhooks (with their secrets) that want ``event`` of ``organization_id`` and existed
        when the alert was raised (a new webhook does not receive older alerts)."""
        query = select(webhooks).where(webhooks.c.created_ms <= to_ms(created_before))
        with self._control.read() as conn:
            rows = list(conn.execute(query).mappings())
        hooks = [(_webhook(row), str(row["secret"])) for row in rows]
        return [
            (hook, secret)
            for hook, secret in hooks
            if event in hook.events and hook.organization_id in (None, organization_id)
        ]

    def record(self, delivery: Delivery) -> None:
        values = delivery.model_dump(exclude={"id", "at", "success"})
        with self._control.write() as conn:
            conn.execute(
                insert(webhook_deliveries).values(**values, at_ms=to_ms(delivery.at), success=int(delivery.success))
            )

    def deliveries(self, webhook_id: str, limit: int = 100) -> list[Delivery]:
        query = (
            select(webhook_deliveries)
            .where(webhook_deliveries.c.webhook_id == webhook_id)
            .order_by(desc(webhook_deliveries.c.id))
            .limit(limit)
        )
        with self._control.read() as conn:
            return [_delivery(row) for row in conn.execute(query).mappings()]


def _webhook(row: RowMapping) -> Webhook:
    return Webhook(
        id=row["id"],
        url=row["url"],
        events=json.loads(row["events"]),
        organization_id=row["organization_id"],
        description=row["description"],
        created_at=from_ms(row["created_ms"]),
        created_by=row["created_by"],
    )


def _delivery(row: RowMapping) -> Delivery:
    return Delivery(
        id=row["id"],
        webhook_id=row["webhook_id"],
        delivery_id=row["delivery_id"],
        event=row["event"],
        alert_id=row["alert_id"],
        attempt=row["attempt"],
        at=from_ms(row["at_ms"]),
        status_code=row["status_code"],
        error=row["error"],
        success=bool(row["success"]),
        duration_ms=row["duration_ms"],
    )
