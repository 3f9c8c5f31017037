"""Authentication and authorization of every request.

A request names its caller with ``Authorization: Bearer <API key or access token>`` or
``X-API-Key: <API key>``. The caller becomes a :class:`Principal`: its organization and
permissions. Routes declare the permission they need (:func:`permit`), and every query is
scoped to the principal's organization through :meth:`Principal.scope`: a key of one
organization cannot name another (403, naming the parameter), and ids of another
organization's objects answer 404, as if they did not exist.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import jwt
from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from api.rate_limit import RateLimiter
from llm_cost_ops.credentials import looks_like_api_key
from llm_cost_ops.errors import AuthenticationError, NotFoundError, PermissionDeniedError, RateLimitedError
from llm_cost_ops.metrics import PipelineMetrics
from llm_cost_ops.settings import Settings
from schemas.auth import ALL, ApiKey, User, is_expired
from schemas.control import Actor
from sinks.access_store import AccessStore

_bearer = HTTPBearer(auto_error=False, description="an API key (sk_live_…) or an access token from /api/v1/auth/login")
_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="an API key (sk_live_…)")


@dataclass(frozen=True)
class Principal:
    """The authenticated caller."""

    kind: Literal["api_key", "user"]
    id: str
    name: str
    """``key:<id>`` or ``user:<email>``: how the audit log names it."""
    organization_id: str
    roles: tuple[str, ...]
    permissions: frozenset[str]
    source: str | None = None

    @property
    def platform(self) -> bool:
        """Holds ``*`` (the admin role): may act on every organization."""
        return ALL in self.permissions

    def can(self, permission: str) -> bool:
        return self.platform or permission in self.permissions

    def require(self, permission: str) -> None:
        if not self.can(permission):
            raise PermissionDeniedError(f"this {self._what} lacks the permission {permission!r}")

    def scope(self, requested: str | None, field: str = "organization_id") -> str | None:
        """The organization a query must be limited to. Platform callers get what they asked
        for (None: every organization); everyone else gets their own, and naming another is
        refused."""
        if self.platform:
            return requested
        if requested is not None and requested != self.organization_id:
            raise PermissionDeniedError(
                f"this {self._what} can only access organization {self.organization_id}",
                {field: f"must be {self.organization_id} (the {self._what}'s organization) or omitted"},
            )
        return self.organization_id

    def owns(self, organization_id: str | None) -> bool:
        """May see an object of ``organization_id`` (None: a deployment-wide object, which
        only platform callers manage)."""
        return self.platform or organization_id == self.organization_id

    def sees(self, organization_id: str | None) -> bool:
        """May read an object of ``organization_id`` that can also be deployment-wide (None),
        such as a pricing rule: everyone reads those, only platform callers change them."""
        return organization_id is None or self.owns(organization_id)

    def check_owns(self, organization_id: str | None, what: str) -> None:
        """404 (not 403) for another organization's object: its existence is not revealed."""
        if not self.owns(organization_id):
            raise NotFoundError(f"no {what}")

    @property
    def actor(self) -> Actor:
        return Actor(name=self.name, organization_id=self.organization_id, source=self.source)

    @property
    def _what(self) -> str:
        return "API key" if self.kind == "api_key" else "user"


RoleLookup = Callable[[list[str]], dict[str, frozenset[str]]]


def key_permissions(key: ApiKey, lookup: RoleLookup) -> frozenset[str]:
    """The role's permissions, narrowed to the key's scopes if it has any."""
    role = lookup([key.role]).get(key.role, frozenset())
    if key.scopes is None:
        return role
    scopes = frozenset(key.scopes)
    return scopes if ALL in role else role & scopes


class Authenticator:
    """Turns credentials into principals, with a short cache (``auth.cache_s``), batched
    ``last_used_at`` updates, per-caller rate limits and the users' access tokens.

    Args:
        settings: the settings (``auth`` and ``api`` sections).
        access: the store of keys, users and roles.
        jwt_secret: the key that signs access tokens.
    """

    def __init__(self, settings: Settings, access: AccessStore, jwt_secret: str) -> None:
        self._settings = settings
        self._access = access
        self._jwt_secret = jwt_secret
        self._cache: dict[str, tuple[float, Principal | None]] = {}
        self._used: dict[str, datetime] = {}
        self._lock = threading.Lock()
        api = settings.api
        self.limiter = RateLimiter(api.rate_limit_per_second, api.rate_limit_burst)
        self.sign_in_limiter = RateLimiter(rate=1.0, burst=10)
        """Password attempts per client address: 10 at once, then one a second."""

    def principal(self, credential: str, source: str | None) -> Principal:
        """The caller a key or token stands for; AuthenticationError otherwise."""
        if looks_like_api_key(credential):
            found = self._cached(credential, lambda: self._key_principal(credential))
            if found is None:
                raise AuthenticationError("Invalid API key")
            with self._lock:
                self._used[found.id] = datetime.now(UTC)
        else:
            user_id = self._token_subject(credential)
            found = self._cached(f"user:{user_id}", lambda: self._user_principal(user_id))
            if found is None:
                raise AuthenticationError("the user of this token is unknown or disabled")
        return dataclasses.replace(found, source=source)

    def forget(self) -> None:
        """Drop the cache (after a change made through this process: it applies at once)."""
        with self._lock:
            self._cache.clear()

    def take_used(self) -> dict[str, datetime]:
        with self._lock:
            used, self._used = self._used, {}
        return used

    def issue_access_token(self, user: User) -> tuple[str, int]:
        lifetime = timedelta(minutes=self._settings.auth.jwt_expiry_minutes)
        now = datetime.now(UTC)
        claims = {"sub": user.id, "org": user.organization_id, "typ": "access", "iat": now, "exp": now + lifetime,
                  "jti": uuid.uuid4().hex}  # fmt: skip
        return jwt.encode(claims, self._jwt_secret, algorithm="HS256"), int(lifetime.total_seconds())

    def _cached(self, key: str, load: Callable[[], Principal | None]) -> Principal | None:
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        found = load()
        with self._lock:
            if len(self._cache) > 50_000:
                self._cache.clear()
            self._cache[key] = (now + self._settings.auth.cache_s, found)
        return found

    def _key_principal(self, secret: str) -> Principal | None:
        key = self._access.key_by_secret(secret)
        if key is None or key.revoked_at is not None or is_expired(key.expires_at, datetime.now(UTC)):
            return None
        return Principal(
            kind="api_key",
            id=key.id,
            name=f"key:{key.id}",
            organization_id=key.organization_id,
            roles=(key.role,),
            permissions=key_permissions(key, self._access.permissions_of),
        )

    def _user_principal(self, user_id: str) -> Principal | None:
        try:
            user = self._access.user(user_id)
        except NotFoundError:
            return None
        if not user.active:
            return None
        found = self._access.permissions_of(user.roles)
        return Principal(
            kind="user",
            id=user.id,
            name=f"user:{user.email}",
            organization_id=user.organization_id,
            roles=tuple(user.roles),
            permissions=frozenset().union(*found.values()) if found else frozenset(),
        )

    def _token_subject(self, token: str) -> str:
        try:
            claims: dict[str, Any] = jwt.decode(
                token, self._jwt_secret, algorithms=["HS256"], options={"require": ["exp", "sub", "typ"]}
            )
        except jwt.ExpiredSignatureError:
            raise AuthenticationError("the access token has expired; refresh it at /api/v1/auth/refresh") from None
        except jwt.InvalidTokenError:
            raise AuthenticationError("Invalid API key or access token") from None
        if claims.get("typ") != "access":
            raise AuthenticationError("not an access token")
        return str(claims["sub"])


def _source(request: Request) -> str | None:
    return request.client.host if request.client else None


def request_metrics(request: Request) -> PipelineMetrics | None:
    """The process's metrics, once the lifespan has built the ApiContext (None before)."""
    # api.context imports this module: the context is reached by attribute, not by type.
    metrics = getattr(getattr(request.app.state, "context", None), "metrics", None)
    return metrics if isinstance(metrics, PipelineMetrics) else None


def authenticate(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    api_key: Annotated[str | None, Depends(_api_key_header)],
) -> Principal:
    """The request's principal, rate limited (the decision's headers go on the response)."""
    authenticator: Authenticator | None = getattr(request.app.state, "authenticator", None)
    if authenticator is None:
        raise AuthenticationError("authentication is not available on this process")
    metrics = request_metrics(request)
    credential = api_key or (bearer.credentials if bearer is not None else None)
    if not credential:
        if metrics is not None:
            metrics.auth_failures.labels("missing").inc()
        raise AuthenticationError("Missing API key: send Authorization: Bearer <key> or X-API-Key: <key>")
    try:
        principal = authenticator.principal(credential.strip(), _source(request))
    except AuthenticationError:
        if metrics is not None:
            metrics.auth_failures.labels("invalid").inc()
        raise
    decision = authenticator.limiter.take(f"{principal.kind}:{principal.id}")
    request.state.rate_limit = decision
    if not decision.allowed:
        if metrics is not None:
            metrics.rate_limited.labels("api").inc()
        raise RateLimitedError(
            f"rate limit of {decision.limit} requests exceeded; retry in {decision.retry_after_s:.1f} s",
            decision.retry_after_s,
        )
    return principal


PrincipalDep = Annotated[Principal, Depends(authenticate)]


def permit(permission: str) -> Callable[[Principal], Principal]:
    """A dependency: the principal, if it holds ``permission`` (403 otherwise)."""

    def check(principal: PrincipalDep) -> Principal:
        principal.require(permission)
        return principal

    check.__name__ = f"permit_{permission.replace(':', '_')}"
    return check


def permit_by_method(read: str, write: str, delete: str | None = None) -> Callable[[Request, Principal], Principal]:
    """A router-wide dependency: ``read`` for GET/HEAD, ``delete`` (if given) for DELETE,
    ``write`` for every other method."""

    def check(request: Request, principal: PrincipalDep) -> Principal:
        if request.method in ("GET", "HEAD"):
            principal.require(read)
        elif request.method == "DELETE" and delete is not None:
            principal.require(delete)
        else:
            principal.require(write)
        return principal

    return check
