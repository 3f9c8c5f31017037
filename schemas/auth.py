"""Who may do what: roles and permissions (the seeds' ``rbac.yaml``), organizations, API keys,
users, and the models of the authentication endpoints.

Tenancy. Every key and user belongs to one organization and sees that organization only.
The one exception is the ``admin`` role (permission ``*``, the seeds' "full system access"):
its holders operate the whole deployment, may name any organization, and alone may manage
organizations, roles and the dead-letter queue. Custom roles never include ``*`` nor the
platform permissions, so no role but ``admin`` spans organizations.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from schemas.errors import validated
from schemas.query import UtcDatetime

ALL = "*"

PERMISSIONS: dict[str, str] = {
    "read:costs": "list and aggregate usage and costs, forecasts, analytics",
    "write:costs": "submit usage events",
    "delete:costs": "delete usage events",
    "export:data": "export costs (CSV, JSON, Parquet, XLSX)",
    "read:budgets": "see budgets and their spend",
    "write:budgets": "create, change and delete budgets",
    "read:reports": "list and download reports",
    "write:reports": "generate and delete reports",
    "read:alerts": "list alerts",
    "read:webhooks": "see webhooks and their deliveries",
    "write:webhooks": "create and delete webhooks",
    "read:pricing": "see pricing rules and unpriced events",
    "write:pricing": "change pricing rules and reprice stored events",
    "read:users": "list the organization's users",
    "write:users": "create users and change their roles",
    "read:teams": "see teams",
    "write:teams": "manage teams",
    "read:api_keys": "list the organization's API keys",
    "write:api_keys": "create, rotate and revoke API keys",
    "read:audit": "read the audit log",
    # Platform permissions: held through ``*`` only (see the module docstring).
    "admin:organizations": "list and create organizations",
    "admin:roles": "define custom roles",
    "admin:dlq": "list and replay dead letters (they hold every organization's messages)",
}
PLATFORM_PERMISSIONS = frozenset({"admin:organizations", "admin:roles", "admin:dlq"})

BUILTIN_ROLES: dict[str, tuple[str, frozenset[str]]] = {
    "admin": ("Full system access", frozenset({ALL})),
    "manager": (
        "Team management and reporting",
        frozenset(
            {
                "read:costs",
                "read:budgets",
                "write:budgets",
                "read:reports",
                "write:reports",
                "read:teams",
                "write:teams",
                "read:users",
                "read:alerts",
                "read:webhooks",
                "write:webhooks",
                "read:pricing",
            }
        ),
    ),
    "analyst": (
        "Cost analysis and reporting",
        frozenset(
            {
                "read:costs",
                "read:budgets",
                "read:reports",
                "write:reports",
                "export:data",
                "read:alerts",
                "read:pricing",
            }
        ),
    ),
    "developer": (
        "API access for cost tracking",
        frozenset({"write:costs", "read:costs", "read:api_keys", "read:alerts", "read:pricing"}),
    ),
    "viewer": ("Read-only access", frozenset({"read:costs", "read:budgets", "read:reports", "read:alerts"})),
}
"""The seeds' default roles, each with the permissions of ``rbac.yaml`` plus the reads of
what this platform added (alerts, pricing, webhooks) where the role's purpose implies them."""

MAX_ROW_ID = 2**63 - 1
"""The largest row id a 64-bit INTEGER/BIGINT column (SQLite, PostgreSQL) holds."""
_ID = r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$"
_ROLE_NAME = re.compile(r"^[a-z][a-z0-9_-]{1,63}$")
OrganizationId = Annotated[str, Field(pattern=_ID, max_length=128)]


class Organization(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    created_at: UtcDatetime
    created_by: str | None


class OrganizationInput(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: OrganizationId
    """The ``organization_id`` its usage events carry (e.g. ``org-acme``)."""
    name: Annotated[str, Field(min_length=1, max_length=200)]

    @classmethod
    def parse(cls, data: object) -> OrganizationInput:
        return validated(cls, data, "organization")


class Role(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    description: str
    permissions: list[str]
    builtin: bool


class RoleInput(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Annotated[str, Field(max_length=64)]
    description: Annotated[str, Field(max_length=500)] = ""
    permissions: Annotated[list[str], Field(min_length=1, max_length=len(PERMISSIONS))]

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _ROLE_NAME.match(value):
            raise ValueError("must be 2-64 lowercase letters, digits, '-' or '_', starting with a letter")
        if value in BUILTIN_ROLES:
            raise ValueError(f"{value!r} is a built-in role")
        return value

    @field_validator("permissions")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        for permission in value:
            if permission == ALL or permission in PLATFORM_PERMISSIONS:
                raise ValueError(f"{permission!r} belongs to the admin role only")
            if permission not in PERMISSIONS:
                raise ValueError(f"unknown permission {permission!r}; known: {', '.join(sorted(PERMISSIONS))}")
        return sorted(set(value))

    @classmethod
    def parse(cls, data: object) -> RoleInput:
        return validated(cls, data, "role")


KeyEnvironment = Literal["live", "test"]


class ApiKey(BaseModel):
    """An API key as stored: never its secret, which is shown once, at creation or rotation."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    prefix: str
    """The first characters of the secret (``sk_live_AbCd``), to recognise a key in a list."""
    organization_id: str
    role: str
    scopes: list[str] | None
    """If set, the key may use only these of its role's permissions."""
    created_at: UtcDatetime
    created_by: str | None
    expires_at: UtcDatetime | None
    last_used_at: UtcDatetime | None
    revoked_at: UtcDatetime | None


class CreatedApiKey(ApiKey):
    key: str
    """The secret. Store it now: only its SHA-256 hash is kept."""


class ApiKeyInput(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=200)]
    organization_id: OrganizationId | None = None
    """Default: the caller's organization."""
    role: Annotated[str, Field(max_length=64)] = "developer"
    scopes: Annotated[list[str], Field(max_length=len(PERMISSIONS))] | None = None
    expires_at: UtcDatetime | None = None
    environment: KeyEnvironment = "live"
    """``live`` keys start ``sk_live_``, ``test`` keys ``sk_test_``."""

    @field_validator("scopes")
    @classmethod
    def _known(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        unknown = [s for s in value if s != ALL and s not in PERMISSIONS]
        if unknown:
            raise ValueError(f"unknown permission(s) {', '.join(unknown)}")
        return sorted(set(value))

    @classmethod
    def parse(cls, data: object) -> ApiKeyInput:
        return validated(cls, data, "API key")


class User(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    email: str
    name: str
    organization_id: str
    roles: list[str]
    active: bool
    created_at: UtcDatetime
    created_by: str | None


class UserInput(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    email: Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+$", max_length=254)]
    name: Annotated[str, Field(min_length=1, max_length=200)]
    password: Annotated[str, Field(min_length=12, max_length=1024)]
    organization_id: OrganizationId | None = None
    roles: Annotated[list[str], Field(min_length=1, max_length=16)] = ["viewer"]

    @field_validator("email")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.strip().lower()

    @classmethod
    def parse(cls, data: object) -> UserInput:
        return validated(cls, data, "user")


class UserRolesInput(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    roles: Annotated[list[str], Field(min_length=1, max_length=16)]

    @classmethod
    def parse(cls, data: object) -> UserRolesInput:
        return validated(cls, data, "roles")


class LoginInput(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    username: Annotated[str, Field(min_length=1, max_length=254)]
    """The user's email."""
    password: Annotated[str, Field(min_length=1, max_length=1024)]

    @classmethod
    def parse(cls, data: object) -> LoginInput:
        return validated(cls, data, "login")


class RefreshInput(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    refresh_token: Annotated[str, Field(min_length=1, max_length=512)]

    @classmethod
    def parse(cls, data: object) -> RefreshInput:
        return validated(cls, data, "refresh")


class TokenPair(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["Bearer"] = "Bearer"
    expires_in: int
    """Seconds the access token is valid."""


class AuditQuery(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    organization_id: str | None = None
    actor: str | None = None
    entity_type: str | None = None
    entity_id: str | None = None
    action: str | None = None
    since: UtcDatetime | None = None
    until: UtcDatetime | None = None
    cursor: int | None = Field(default=None, ge=1, le=MAX_ROW_ID)
    """Entries with a lower id than this (the ``next_cursor`` of the previous page)."""
    limit: int = Field(default=100, ge=1, le=1000)


def is_expired(expires_at: datetime | None, now: datetime) -> bool:
    return expires_at is not None and expires_at <= now
