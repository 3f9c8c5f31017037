"""Keys, users, tokens, roles, rate limits and the audit log, through the admin and auth
routes over a real control store (SQLite)."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from access_keys import JWT_SECRET, admin_authenticator
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.auth import Authenticator, PrincipalDep, permit_by_method
from api.body_limit import BodyLimitMiddleware
from api.errors import register_error_handlers
from api.routes import admin, auth_routes
from llm_cost_ops.settings import ApiSettings, AuthSettings, Settings
from sinks.access_store import AccessStore
from sinks.control_schema import api_keys
from sinks.control_store import ControlStore


@dataclass
class AccessContext:
    """What the admin and auth routes read from ``app.state.context``."""

    control: ControlStore
    settings: Settings
    authenticator: Authenticator | None = None
    announced: list[str] = field(default_factory=list)

    @property
    def access(self) -> AccessStore:
        return AccessStore(self.control)


@dataclass
class Api:
    client: TestClient
    context: AccessContext
    admin_key: str

    def as_(self, key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    def key(self, role: str, organization: str = "default", **extra: Any) -> str:
        """A new key of ``role`` in ``organization`` (created by the admin)."""
        if organization != "default":
            self.client.post("/api/v1/admin/organizations", json={"id": organization, "name": organization})
        body = {"name": f"{role} key", "role": role, "organization_id": organization, **extra}
        answer = self.client.post("/api/v1/admin/api-keys", json=body)
        assert answer.status_code == 201, answer.text
        secret: str = answer.json()["key"]
        return secret


def build(tmp_path: Path, **api: Any) -> Iterator[Api]:
    control = ControlStore.open(f"sqlite:///{tmp_path / 'control.db'}")
    settings = Settings(_env_file=None, data_dir=tmp_path, api=ApiSettings(**api), auth=AuthSettings(cache_s=0))
    context = AccessContext(control, settings)
    app = FastAPI()
    register_error_handlers(app)
    app.include_router(admin.router)
    app.include_router(auth_routes.router)

    @app.get("/api/v1/costs", dependencies=[Depends(permit_by_method("read:costs", "write:costs"))])
    def costs(principal: PrincipalDep) -> dict[str, str | None]:
        return {"organization_id": principal.scope(None)}

    app.add_middleware(BodyLimitMiddleware, max_bytes=2048)
    authenticator, secret = admin_authenticator(control, settings)
    app.state.context = context
    context.authenticator = app.state.authenticator = authenticator

    @app.middleware("http")
    async def rate_headers(request: Any, call_next: Any) -> Any:
        response = await call_next(request)
        decision = getattr(request.state, "rate_limit", None)
        if decision is not None:
            response.headers.update(decision.headers())
        return response

    with TestClient(app, headers={"Authorization": f"Bearer {secret}"}) as client:
        yield Api(client, context, secret)
    control.close()


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    yield from build(tmp_path)


def test_no_key_bad_key_and_both_headers(api: Api) -> None:
    bare = TestClient(api.client.app)
    refused = bare.get("/api/v1/costs")
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "AUTH_001"
    assert refused.headers["WWW-Authenticate"].startswith("Bearer")
    assert bare.get("/api/v1/costs", headers={"Authorization": "Bearer sk_live_nope"}).json()["error"] == {
        "code": "AUTH_001",
        "message": "Invalid API key",
    }
    assert bare.get("/api/v1/costs", headers={"X-API-Key": api.admin_key}).status_code == 200
    assert bare.get("/api/v1/costs", headers={"Authorization": f"Bearer {api.admin_key}"}).status_code == 200


def test_a_key_is_shown_once_and_stored_as_its_sha256(api: Api) -> None:
    created = api.client.post("/api/v1/admin/api-keys", json={"name": "ci", "role": "viewer", "environment": "test"})
    assert created.status_code == 201
    body = created.json()
    assert body["key"].startswith("sk_test_") and len(body["key"]) > 40
    assert body["prefix"] == body["key"][:12]
    with api.context.control.read() as conn:
        stored = conn.execute(select(api_keys).where(api_keys.c.id == body["id"])).mappings().one()
    assert stored["key_hash"] == hashlib.sha256(body["key"].encode()).hexdigest()
    assert body["key"] not in str(dict(stored))
    listed = api.client.get("/api/v1/admin/api-keys").json()["data"]
    assert all("key" not in k for k in listed) and body["id"] in {k["id"] for k in listed}
    assert api.client.get(f"/api/v1/admin/api-keys/{body['id']}").json()["role"] == "viewer"


def test_revoke_rotate_expire_and_last_used(api: Api) -> None:
    secret = api.key("viewer")
    key_id = next(k["id"] for k in api.client.get("/api/v1/admin/api-keys").json()["data"] if k["role"] == "viewer")
    assert api.client.get("/api/v1/costs", headers=api.as_(secret)).status_code == 200
    assert api.context.authenticator is not None
    api.context.access.touch_keys(api.context.authenticator.take_used())
    assert api.client.get(f"/api/v1/admin/api-keys/{key_id}").json()["last_used_at"] is not None

    rotated = api.client.post(f"/api/v1/admin/api-keys/{key_id}/rotate").json()
    assert rotated["id"] == key_id and rotated["key"] != secret
    assert api.client.get("/api/v1/costs", headers=api.as_(secret)).status_code == 401
    assert api.client.get("/api/v1/costs", headers=api.as_(rotated["key"])).status_code == 200

    revoked = api.client.delete(f"/api/v1/admin/api-keys/{key_id}").json()
    assert revoked["revoked_at"] is not None
    assert api.client.get("/api/v1/costs", headers=api.as_(rotated["key"])).status_code == 401

    soon = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    expiring = api.key("viewer", expires_at=soon)
    assert api.client.get("/api/v1/costs", headers=api.as_(expiring)).status_code == 200
    time.sleep(1.1)
    assert api.client.get("/api/v1/costs", headers=api.as_(expiring)).status_code == 401


ROLE_CASES: list[tuple[str, str, dict[str, Any] | None, set[str]]] = [
    # method, path, body, the roles allowed (admin always)
    ("GET", "/api/v1/costs", None, {"manager", "analyst", "developer", "viewer"}),
    ("GET", "/api/v1/admin/api-keys", None, {"developer"}),
    ("POST", "/api/v1/admin/api-keys", {"name": "x", "role": "viewer"}, set()),
    ("GET", "/api/v1/admin/users", None, {"manager"}),
    ("POST", "/api/v1/admin/users", {"email": "{role}@x.io", "name": "n", "password": "p" * 12}, set()),
    ("GET", "/api/v1/admin/organizations", None, set()),
    ("POST", "/api/v1/admin/organizations", {"id": "org-{role}", "name": "n"}, set()),
    ("POST", "/api/v1/admin/roles", {"name": "r-{role}", "permissions": ["read:costs"]}, set()),
    ("GET", "/api/v1/audit", None, set()),
    ("GET", "/api/v1/admin/roles", None, {"manager", "analyst", "developer", "viewer"}),
    ("GET", "/api/v1/admin/organizations/default", None, {"manager", "analyst", "developer", "viewer"}),
]


@pytest.mark.parametrize("role", ["admin", "manager", "analyst", "developer", "viewer"])
@pytest.mark.parametrize(("method", "path", "body", "allowed"), ROLE_CASES)
def test_each_role_allowed_or_denied(
    api: Api, role: str, method: str, path: str, body: dict[str, Any] | None, allowed: set[str]
) -> None:
    secret = api.key(role)
    filled = None if body is None else {k: v.format(role=role) if isinstance(v, str) else v for k, v in body.items()}
    answer = api.client.request(method, path, json=filled, headers=api.as_(secret))
    if role == "admin" or role in allowed:
        assert answer.status_code in (200, 201), answer.text
    else:
        assert answer.status_code == 403, answer.text
        assert answer.json()["error"]["code"] == "AUTH_002"


def test_another_organizations_objects_are_invisible(api: Api) -> None:
    other_admin = api.key("viewer", "org-b")  # creates org-b
    theirs = api.client.get("/api/v1/admin/api-keys", params={"organization_id": "org-b"}).json()["data"]
    assert [k["organization_id"] for k in theirs] == ["org-b"]
    api.client.post("/api/v1/admin/roles", json={"name": "keymaster", "permissions": ["read:api_keys", "write:api_keys",
                                                                                      "read:costs"]})  # fmt: skip
    keymaster = api.key("keymaster", "org-a")
    as_a = api.as_(keymaster)
    named_b = api.client.get("/api/v1/admin/api-keys", params={"organization_id": "org-b"}, headers=as_a)
    assert named_b.status_code == 403
    assert named_b.json()["error"]["field_errors"] == {
        "organization_id": "must be org-a (the API key's organization) or omitted"
    }
    assert api.client.get(f"/api/v1/admin/api-keys/{theirs[0]['id']}", headers=as_a).status_code == 404
    assert api.client.delete(f"/api/v1/admin/api-keys/{theirs[0]['id']}", headers=as_a).status_code == 404
    assert api.client.get("/api/v1/costs", headers=api.as_(other_admin)).json() == {"organization_id": "org-b"}
    own = api.client.get("/api/v1/admin/api-keys", headers=as_a).json()["data"]
    assert {k["organization_id"] for k in own} == {"org-a"}
    made = api.client.post(
        "/api/v1/admin/api-keys", json={"name": "x", "role": "viewer", "organization_id": "org-b"}, headers=as_a
    )
    assert made.status_code == 403
    assert api.client.get("/api/v1/admin/organizations/org-b", headers=as_a).status_code == 404


def test_no_caller_grants_more_than_it_holds(api: Api) -> None:
    api.client.post("/api/v1/admin/roles", json={"name": "keymaster", "permissions": ["read:api_keys", "write:api_keys",
                                                                                      "read:costs"]})  # fmt: skip
    keymaster = api.as_(api.key("keymaster", "org-a"))
    for role in ("analyst", "admin", "manager"):  # each holds a permission the keymaster lacks
        answer = api.client.post("/api/v1/admin/api-keys", json={"name": "x", "role": role}, headers=keymaster)
        assert answer.status_code == 403, role
        assert answer.json()["error"]["field_errors"] == {"role": f"cannot grant {role!r}"}
    scoped = {"name": "x", "role": "keymaster", "scopes": ["export:data"]}
    assert api.client.post("/api/v1/admin/api-keys", json=scoped, headers=keymaster).status_code == 403
    narrowed = api.client.post(
        "/api/v1/admin/api-keys", json={"name": "x", "role": "keymaster", "scopes": ["read:costs"]}, headers=keymaster
    )
    assert narrowed.status_code == 201
    limited = api.as_(narrowed.json()["key"])
    assert api.client.get("/api/v1/costs", headers=limited).status_code == 200
    assert api.client.get("/api/v1/admin/api-keys", headers=limited).status_code == 403  # outside its scopes


def test_custom_roles_cannot_hold_platform_permissions(api: Api) -> None:
    for permission in ("*", "admin:organizations", "admin:dlq"):
        answer = api.client.post("/api/v1/admin/roles", json={"name": "boss", "permissions": [permission]})
        assert answer.status_code == 422
        assert "admin role only" in answer.json()["error"]["field_errors"]["permissions"]
    unknown = api.client.post("/api/v1/admin/roles", json={"name": "boss", "permissions": ["read:everything"]})
    assert "unknown permission" in unknown.json()["error"]["field_errors"]["permissions"]
    assert (
        api.client.post("/api/v1/admin/roles", json={"name": "viewer", "permissions": ["read:costs"]}).status_code
        == 422
    )
    names = {r["name"] for r in api.client.get("/api/v1/admin/roles").json()["data"]}
    assert {"admin", "manager", "analyst", "developer", "viewer"} <= names


def login(api: Api, email: str, password: str) -> Any:
    return api.client.post("/api/v1/auth/login", json={"username": email, "password": password}, headers={})


def test_login_refresh_rotation_and_reuse(api: Api) -> None:
    made = api.client.post(
        "/api/v1/admin/users",
        json={"email": "Ana@Example.com", "name": "Ana", "password": "correct horse battery", "roles": ["analyst"]},
    )
    assert made.status_code == 201 and made.json()["email"] == "ana@example.com"
    assert login(api, "ana@example.com", "wrong password!").status_code == 401
    assert login(api, "nobody@example.com", "correct horse battery").status_code == 401
    tokens = login(api, "ana@example.com", "correct horse battery").json()
    assert tokens["token_type"] == "Bearer" and tokens["expires_in"] == 3600
    me = api.client.get("/api/v1/auth/me", headers=api.as_(tokens["access_token"])).json()
    assert (me["kind"], me["name"], me["organization_id"], me["roles"]) == ("user", "user:ana@example.com", "default",
                                                                            ["analyst"])  # fmt: skip
    assert "export:data" in me["permissions"]
    assert api.client.get("/api/v1/admin/api-keys", headers=api.as_(tokens["access_token"])).status_code == 403

    fresh = api.client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}).json()
    assert fresh["refresh_token"] != tokens["refresh_token"]
    assert api.client.get("/api/v1/costs", headers=api.as_(fresh["access_token"])).status_code == 200
    # The spent token again: refused, and the family (the fresh one too) is revoked.
    assert api.client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}).status_code == 401
    assert api.client.post("/api/v1/auth/refresh", json={"refresh_token": fresh["refresh_token"]}).status_code == 401


def test_expired_forged_and_role_changes_apply(api: Api) -> None:
    user = api.client.post(
        "/api/v1/admin/users", json={"email": "bo@x.io", "name": "Bo", "password": "p" * 12, "roles": ["viewer"]}
    ).json()
    now = datetime.now(UTC)
    claims = {"sub": user["id"], "typ": "access", "iat": now, "exp": now - timedelta(seconds=5)}
    expired = jwt.encode(claims, JWT_SECRET, algorithm="HS256")
    answer = api.client.get("/api/v1/costs", headers=api.as_(expired))
    assert answer.status_code == 401 and "expired" in answer.json()["error"]["message"]
    forged = jwt.encode({**claims, "exp": now + timedelta(hours=1)}, "not-the-secret" * 4, algorithm="HS256")
    assert api.client.get("/api/v1/costs", headers=api.as_(forged)).status_code == 401
    token = login(api, "bo@x.io", "p" * 12).json()["access_token"]
    assert api.client.get("/api/v1/admin/users", headers=api.as_(token)).status_code == 403
    assert api.client.put(f"/api/v1/admin/users/{user['id']}/roles", json={"roles": ["manager"]}).status_code == 200
    assert api.client.get("/api/v1/admin/users", headers=api.as_(token)).status_code == 200  # same token, new role


def test_rate_limit_headers_and_429(tmp_path: Path) -> None:
    for api in build(tmp_path, rate_limit_per_second=0.5, rate_limit_burst=3):
        other = api.as_(api.key("viewer"))  # the admin's first request
        answers = [api.client.get("/api/v1/costs") for _ in range(3)]
        assert [a.status_code for a in answers] == [200, 200, 429]
        assert [a.headers["X-RateLimit-Remaining"] for a in answers] == ["1", "0", "0"]
        assert {a.headers["X-RateLimit-Limit"] for a in answers} == {"3"}
        assert int(answers[0].headers["X-RateLimit-Reset"]) >= int(time.time())
        limited = answers[2]
        assert limited.json()["error"]["code"] == "RATE_LIMIT_EXCEEDED"
        assert int(limited.headers["Retry-After"]) >= 1
        assert api.client.get("/api/v1/costs", headers=other).status_code == 200  # a bucket per key


def test_request_size_limit(api: Api) -> None:
    big = {"name": "x" * 5000, "role": "viewer"}
    answer = api.client.post("/api/v1/admin/api-keys", json=big)
    assert answer.status_code == 413
    assert answer.json()["error"]["code"] == "REQUEST_TOO_LARGE"

    def chunks() -> Iterator[bytes]:
        yield b'{"name": "'
        for _ in range(10):
            yield b"y" * 500
        yield b'", "role": "viewer"}'

    streamed = api.client.post("/api/v1/admin/api-keys", content=chunks(), headers={"Content-Type": "application/json"})
    assert streamed.status_code == 413


def test_the_audit_log_records_who_what_when_and_where(api: Api) -> None:
    api.client.post("/api/v1/admin/organizations", json={"id": "org-a", "name": "A"})
    api.client.post("/api/v1/admin/roles", json={"name": "auditor", "permissions": ["read:audit"]})
    auditor = api.key("auditor", "org-a")
    api.key("viewer", "org-b")
    everything = api.client.get("/api/v1/audit").json()["data"]
    assert {e["organization_id"] for e in everything} >= {"org-a", "org-b", "default"}
    latest = everything[0]
    assert (latest["action"], latest["entity_type"], latest["actor"], latest["source"]) == (
        "create", "api_key", "key:key_admin", "testclient"
    )  # fmt: skip
    assert latest["after"]["organization_id"] == "org-b" and "key" not in latest["after"]
    own = api.client.get("/api/v1/audit", headers=api.as_(auditor)).json()["data"]
    assert own and {e["organization_id"] for e in own} == {"org-a"}
    page = api.client.get("/api/v1/audit", params={"limit": 2}).json()
    older = api.client.get("/api/v1/audit", params={"limit": 2, "cursor": page["next_cursor"]}).json()
    assert [e["id"] for e in page["data"] + older["data"]] == [e["id"] for e in everything[:4]]
    for cursor in ("0", str(2**63)):  # beyond a 64-bit row id is a 422, not a database overflow
        refused = api.client.get("/api/v1/audit", params={"cursor": cursor})
        assert refused.status_code == 422 and "cursor" in refused.json()["error"]["field_errors"]
