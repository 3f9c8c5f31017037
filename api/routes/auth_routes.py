"""Users' sign-in: ``POST /api/v1/auth/login`` gives an access token (a JWT, short-lived) and a
refresh token (single use: each refresh returns a new pair, and presenting a spent refresh
token revokes every token of that sign-in)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel

from api import examples
from api.auth import Authenticator, PrincipalDep, request_metrics
from api.deps import ContextDep, json_body
from llm_cost_ops.credentials import verify_password
from llm_cost_ops.errors import AuthenticationError, RateLimitedError, UnavailableError
from schemas.auth import LoginInput, RefreshInput, TokenPair, User
from sinks.access_store import AccessStore

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])


class Me(BaseModel):
    kind: str
    id: str
    name: str
    organization_id: str
    roles: list[str]
    permissions: list[str]


def _authenticator(request: Request) -> Authenticator:
    authenticator: Authenticator | None = getattr(request.app.state, "authenticator", None)
    if authenticator is None:
        raise UnavailableError("sign-in is not available on this process")
    return authenticator


async def _pair(context: ContextDep, authenticator: Authenticator, user: User, family: str | None) -> TokenPair:
    access, expires_in = authenticator.issue_access_token(user)
    ttl = timedelta(days=context.settings.auth.refresh_days)
    refresh = await asyncio.to_thread(context.access.issue_refresh, user.id, ttl, family)
    return TokenPair(access_token=access, refresh_token=refresh, expires_in=expires_in)


@router.post(
    "/login", response_model=TokenPair, openapi_extra={"security": [], **examples.body(LoginInput, examples.LOGIN)}
)
async def login(request: Request, context: ContextDep) -> TokenPair:
    """Exchange a user's email and password for an access token and a refresh token."""
    authenticator = _authenticator(request)
    source = request.client.host if request.client else "unknown"
    decision = authenticator.sign_in_limiter.take(source)  # slows password guessing per address
    if not decision.allowed:
        if (metrics := request_metrics(request)) is not None:
            metrics.rate_limited.labels("sign_in").inc()
        raise RateLimitedError("too many sign-in attempts", decision.retry_after_s)
    body = LoginInput.parse(await json_body(request))
    access: AccessStore = context.access
    found = await asyncio.to_thread(access.user_by_email, body.username)
    ok = await asyncio.to_thread(verify_password, body.password, found[1] if found else None)
    if found is None or not ok or not found[0].active:
        if (metrics := request_metrics(request)) is not None:
            metrics.auth_failures.labels("sign_in").inc()
        raise AuthenticationError("invalid username or password")
    return await _pair(context, authenticator, found[0], None)


@router.post(
    "/refresh",
    response_model=TokenPair,
    openapi_extra={"security": [], **examples.body(RefreshInput, {"refresh_token": "…"})},
)
async def refresh(request: Request, context: ContextDep) -> TokenPair:
    """A new access token and refresh token for a refresh token (which is spent)."""
    authenticator = _authenticator(request)
    body = RefreshInput.parse(await json_body(request))
    spent = await asyncio.to_thread(context.access.use_refresh, body.refresh_token)
    if spent is None:
        if (metrics := request_metrics(request)) is not None:
            metrics.auth_failures.labels("refresh").inc()
        raise AuthenticationError("invalid, expired or already used refresh token; sign in again")
    user_id, family = spent
    user = await asyncio.to_thread(context.access.user, user_id)
    if not user.active:
        raise AuthenticationError("the user is disabled")
    return await _pair(context, authenticator, user, family)


@router.post("/logout", status_code=204, openapi_extra={"security": []})
async def logout(request: Request, context: ContextDep) -> Response:
    """Spend a refresh token so it cannot be used again (access tokens expire on their own)."""
    body = RefreshInput.parse(await json_body(request))
    await asyncio.to_thread(context.access.use_refresh, body.refresh_token)
    return Response(status_code=204)


@router.get("/me", response_model=Me)
def me(principal: PrincipalDep) -> Me:
    """Who the key or token is: organization, roles, permissions."""
    return Me(
        kind=principal.kind,
        id=principal.id,
        name=principal.name,
        organization_id=principal.organization_id,
        roles=list(principal.roles),
        permissions=sorted(principal.permissions),
    )
