"""Webhook subscriptions and their delivery log (the seeds' ``POST /api/v1/webhooks``)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from schemas.errors import validated
from schemas.query import UtcDatetime

WebhookEvent = Literal["cost.anomaly", "budget.threshold"]
EVENTS: tuple[str, ...] = ("cost.anomaly", "budget.threshold")


class WebhookInput(BaseModel):
    """What a caller sends to create a webhook."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str = Field(max_length=2000)
    events: list[WebhookEvent] = Field(min_length=1)
    secret: str | None = Field(default=None, min_length=16, max_length=200)
    """Signs every delivery (HMAC-SHA256); generated when not given, and shown once."""
    organization_id: str | None = Field(default=None, max_length=128)
    """Only this organization's alerts; unset: every organization's."""
    description: str | None = Field(default=None, max_length=500)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        value = value.strip()
        if not value.startswith(("http://", "https://")) or len(value.split("://", 1)[1]) < 1:
            raise ValueError("must be an http:// or https:// URL")
        return value

    @field_validator("events")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))

    @classmethod
    def parse(cls, data: object) -> WebhookInput:
        """Validate, raising :class:`InvalidInputError` with one reason per bad field."""
        return validated(cls, data, "webhook")


class Webhook(BaseModel):
    """A stored webhook; the secret is never shown after creation."""

    id: str
    url: str
    events: list[str]
    organization_id: str | None
    description: str | None
    created_at: UtcDatetime
    created_by: str | None


class CreatedWebhook(Webhook):
    secret: str
    """Shown once: verify ``X-CostOps-Signature`` with it."""


class WebhookList(BaseModel):
    data: list[Webhook]


class Delivery(BaseModel):
    id: int
    webhook_id: str
    delivery_id: str
    event: str
    alert_id: str
    attempt: int
    at: datetime
    status_code: int | None
    error: str | None
    success: bool
    duration_ms: int


class DeliveryList(BaseModel):
    data: list[Delivery]
