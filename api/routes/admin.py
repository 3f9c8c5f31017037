"""Administration (the seeds' ``/api/v1/admin``): organizations, users and their roles, custom
roles, API keys, and the audit log (``/api/v1/audit``).

No caller can grant more than it holds: a role or key scope given to someone else must be a
subset of the caller's own permissions (the admin role holds them all).
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ValidationError

from api import examples
from api.auth import Principal, PrincipalDep, permit
from api.context import ApiContext
from api.deps import ActorDep, ContextDep, invalid_parameters, json_body
from llm_cost_ops.errors import InvalidInputError, PermissionDeniedError
from schemas.auth import (
    ALL,
    ApiKey,
    ApiKeyInput,
    AuditQuery,
    CreatedApiKey,
    KeyEnvironment,
    Organization,
    OrganizationInput,
    Role,
    RoleInput,
    User,
    UserInput,
    UserRolesInput,
)
from schemas.control import AuditPage
from schemas.query import UtcDatetime
from sinks.access_store import AccessStore

router = APIRouter(prefix="/api/v1", tags=["admin"])


class OrganizationList(BaseModel):
    data: list[Organization]


class UserList(BaseModel):
    data: list[User]


class RoleList(BaseModel):
    data: list[Role]


class ApiKeyList(BaseModel):
    data: list[ApiKey]


def _grantable(access: AccessStore, principal: Principal, role_names: list[str], field: str) -> None:
    """Every role exists, and grants nothing the caller does not hold itself."""
    found = access.permissions_of(role_names)
    unknown = [name for name in role_names if name not in found]
    if unknown:
        raise InvalidInputError(f"invalid {field}", {field: f"unknown role(s) {', '.join(unknown)}"})
    for name, permissions in found.items():
        if not principal.platform and (ALL in permissions or not permissions <= principal.permissions):
            raise PermissionDeniedError(
                f"role {name!r} grants permissions this caller does not hold", {field: f"cannot grant {name!r}"}
            )


def _forget_cached(context: ApiContext) -> None:
    """A change to a key or a user's roles applies at once on this process (others: AUTH__CACHE_S)."""
    if context.authenticator is not None:
        context.authenticator.forget()


# Organizations


@router.get("/admin/organizations", response_model=OrganizationList)
async def list_organizations(
    context: ContextDep, principal: Annotated[Principal, Depends(permit("admin:organizations"))]
) -> OrganizationList:
    return OrganizationList(data=await asyncio.to_thread(context.access.organizations))


@router.post(
    "/admin/organizations",
    status_code=201,
    response_model=Organization,
    openapi_extra=examples.body(OrganizationInput, examples.ORGANIZATION),
)
async def create_organization(
    request: Request,
    context: ContextDep,
    actor: ActorDep,
    principal: Annotated[Principal, Depends(permit("admin:organizations"))],
) -> Organization:
    """A new tenant; then create its users or keys (``organization_id`` in their bodies)."""
    org = OrganizationInput.parse(await json_body(request))
    return await asyncio.to_thread(context.access.create_organization, org, actor)


@router.get("/admin/organizations/{organization_id}", response_model=Organization)
async def get_organization(organization_id: str, context: ContextDep, principal: PrincipalDep) -> Organization:
    """Any caller may read its own organization; admins any."""
    principal.check_owns(organization_id, f"organization {organization_id}")
    return await asyncio.to_thread(context.access.organization, organization_id)


# Users


@router.get("/admin/users", response_model=UserList)
async def list_users(
    context: ContextDep,
    principal: Annotated[Principal, Depends(permit("read:users"))],
    organization_id: Annotated[str | None, Query(max_length=128)] = None,
) -> UserList:
    org = principal.scope(organization_id)
    return UserList(data=await asyncio.to_thread(context.access.users, org))


@router.post(
    "/admin/users", status_code=201, response_model=User, openapi_extra=examples.body(UserInput, examples.USER)
)
async def create_user(
    request: Request,
    context: ContextDep,
    actor: ActorDep,
    principal: Annotated[Principal, Depends(permit("write:users"))],
) -> User:
    """A user who signs in with ``POST /api/v1/auth/login``; the password is stored as a scrypt hash."""
    user = UserInput.parse(await json_body(request))
    org = principal.scope(user.organization_id) or principal.organization_id
    access = context.access
    await asyncio.to_thread(access.organization, org)  # 404 for an unknown organization
    await asyncio.to_thread(_grantable, access, principal, user.roles, "roles")
    return await asyncio.to_thread(access.create_user, user, org, actor)


@router.put(
    "/admin/users/{user_id}/roles",
    response_model=User,
    openapi_extra=examples.body(UserRolesInput, {"roles": ["manager"]}),
)
async def update_user_roles(
    request: Request,
    user_id: str,
    context: ContextDep,
    actor: ActorDep,
    principal: Annotated[Principal, Depends(permit("write:users"))],
) -> User:
    body = UserRolesInput.parse(await json_body(request))
    access = context.access
    user = await asyncio.to_thread(access.user, user_id)
    principal.check_owns(user.organization_id, f"user {user_id}")
    await asyncio.to_thread(_grantable, access, principal, body.roles, "roles")
    changed = await asyncio.to_thread(access.set_roles, user_id, body.roles, actor)
    _forget_cached(context)
    return changed


# Roles


@router.get("/admin/roles", response_model=RoleList)
async def list_roles(context: ContextDep, principal: PrincipalDep) -> RoleList:
    """The built-in roles (the seeds' admin, manager, analyst, developer, viewer) and custom ones."""
    return RoleList(data=await asyncio.to_thread(context.access.roles))


@router.post(
    "/admin/roles", status_code=201, response_model=Role, openapi_extra=examples.body(RoleInput, examples.ROLE)
)
async def create_role(
    request: Request,
    context: ContextDep,
    actor: ActorDep,
    principal: Annotated[Principal, Depends(permit("admin:roles"))],
) -> Role:
    role = RoleInput.parse(await json_body(request))
    return await asyncio.to_thread(context.access.create_role, role, actor)


# API keys


@router.get("/admin/api-keys", response_model=ApiKeyList)
async def list_api_keys(
    context: ContextDep,
    principal: Annotated[Principal, Depends(permit("read:api_keys"))],
    organization_id: Annotated[str | None, Query(max_length=128)] = None,
) -> ApiKeyList:
    """Keys without their secrets: prefix, role, scopes, expiry, last use, revocation."""
    return ApiKeyList(data=await asyncio.to_thread(context.access.keys, principal.scope(organization_id)))


@router.post(
    "/admin/api-keys",
    status_code=201,
    response_model=CreatedApiKey,
    openapi_extra=examples.body(ApiKeyInput, examples.API_KEY),
)
async def create_api_key(
    request: Request,
    context: ContextDep,
    actor: ActorDep,
    principal: Annotated[Principal, Depends(permit("write:api_keys"))],
) -> CreatedApiKey:
    """A new key; the answer's ``key`` is the secret, shown this once (only its SHA-256 is kept)."""
    body = ApiKeyInput.parse(await json_body(request))
    org = principal.scope(body.organization_id) or principal.organization_id
    access = context.access
    await asyncio.to_thread(access.organization, org)
    await asyncio.to_thread(_grantable, access, principal, [body.role], "role")
    if body.scopes is not None and not principal.platform and not set(body.scopes) <= principal.permissions:
        raise PermissionDeniedError("scopes beyond the caller's own permissions", {"scopes": "cannot grant them"})
    return await asyncio.to_thread(
        lambda: access.create_key(
            body.name,
            org,
            body.role,
            actor,
            scopes=body.scopes,
            expires_at=body.expires_at,
            environment=body.environment,
        )
    )


async def _owned_key(context: ContextDep, principal: Principal, key_id: str) -> ApiKey:
    key = await asyncio.to_thread(context.access.key, key_id)
    principal.check_owns(key.organization_id, f"API key {key_id}")
    return key


@router.get("/admin/api-keys/{key_id}", response_model=ApiKey)
async def get_api_key(
    key_id: str, context: ContextDep, principal: Annotated[Principal, Depends(permit("read:api_keys"))]
) -> ApiKey:
    return await _owned_key(context, principal, key_id)


@router.delete("/admin/api-keys/{key_id}", response_model=ApiKey)
async def revoke_api_key(
    key_id: str,
    context: ContextDep,
    actor: ActorDep,
    principal: Annotated[Principal, Depends(permit("write:api_keys"))],
) -> ApiKey:
    """Revoke a key: it stops working at once on this API process, within ``AUTH__CACHE_S`` on others."""
    await _owned_key(context, principal, key_id)
    revoked = await asyncio.to_thread(context.access.revoke_key, key_id, actor)
    _forget_cached(context)
    return revoked


@router.post("/admin/api-keys/{key_id}/rotate", response_model=CreatedApiKey)
async def rotate_api_key(
    key_id: str,
    context: ContextDep,
    actor: ActorDep,
    principal: Annotated[Principal, Depends(permit("write:api_keys"))],
    environment: KeyEnvironment = "live",
) -> CreatedApiKey:
    """A new secret for the key (same id, role and scopes); the old secret stops working."""
    await _owned_key(context, principal, key_id)
    rotated = await asyncio.to_thread(context.access.rotate_key, key_id, actor, environment)
    _forget_cached(context)
    return rotated


# Audit log


def audit_query(
    principal: Annotated[Principal, Depends(permit("read:audit"))],
    organization_id: Annotated[str | None, Query(max_length=128)] = None,
    actor: Annotated[str | None, Query(max_length=200, description="key:<id> or user:<email>")] = None,
    entity_type: Annotated[str | None, Query(max_length=32)] = None,
    entity_id: Annotated[str | None, Query(max_length=128)] = None,
    action: Annotated[str | None, Query(max_length=16)] = None,
    since: UtcDatetime | None = None,
    until: UtcDatetime | None = None,
    cursor: Annotated[int | None, Query(description="next_cursor of the previous page")] = None,
    limit: int = 100,
) -> AuditQuery:
    try:
        return AuditQuery(
            organization_id=principal.scope(organization_id),
            actor=actor,
            entity_type=entity_type,
            entity_id=entity_id,
            action=action,
            since=since,
            until=until,
            cursor=cursor,
            limit=limit,
        )
    except ValidationError as exc:
        raise invalid_parameters(exc) from None


@router.get("/audit", response_model=AuditPage)
async def audit_log(context: ContextDep, query: Annotated[AuditQuery, Depends(audit_query)]) -> AuditPage:
    """Every change (who, what, when, from where), newest first. Admins see every organization's."""
    return await asyncio.to_thread(context.access.audit, query)
