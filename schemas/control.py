"""API models of the control plane: the pricing rule list and the audit log."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from schemas.pricing_rule import PricingRule

AuditAction = Literal["create", "update", "delete", "revoke", "rotate"]


@dataclass(frozen=True)
class Actor:
    """Who makes a change, for the audit log: ``name`` (``key:<id>``, ``user:<email>``,
    ``cli``...), the organization they act for, and where the request came from."""

    name: str
    organization_id: str | None = None
    source: str | None = None


class AuditEntry(BaseModel):
    """One change to a control-plane entity: who, when, and the entity before and after it.

    ``id`` increases with every change, in commit order: the highest id is the store's
    version, and the entries above a version are the changes made since.
    """

    model_config = ConfigDict(frozen=True)

    id: int
    at: datetime
    actor: str
    action: AuditAction
    entity_type: str
    entity_id: str
    before: dict[str, Any] | None
    """The entity as JSON before the change; null on create."""
    after: dict[str, Any] | None
    """The entity as JSON after the change; null on delete."""
    organization_id: str | None = None
    """The organization the change belongs to (null: the whole deployment, or before v4)."""
    source: str | None = None
    """Where the request came from (the client's address)."""


class AuditPage(BaseModel):
    """``GET /api/v1/audit``: newest first; ``next_cursor``, sent back as ``cursor``, reads older ones."""

    data: list[AuditEntry]
    next_cursor: int | None


class PricingRuleList(BaseModel):
    """``GET /api/v1/pricing``: every matching rule (rules are few; no pagination)."""

    data: list[PricingRule]
    total: int
