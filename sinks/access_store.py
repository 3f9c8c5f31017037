"""Who may use the API, in the control plane's store: organizations, custom roles, API keys
(SHA-256 hashes only), users (scrypt hashes), refresh tokens, and the audit log's reader.

Every change writes its audit row in the same transaction. Methods are synchronous; the API
calls them through ``asyncio.to_thread``.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from datetime import datetime, timedelta

from sqlalchemy import Connection, RowMapping, and_, desc, insert, select, update

from llm_cost_ops.credentials import SHOWN_PREFIX, hash_password, new_api_key, new_token, sha256_hex
from llm_cost_ops.errors import InvalidInputError, NotFoundError
from schemas.auth import (
    BUILTIN_ROLES,
    ApiKey,
    AuditQuery,
    CreatedApiKey,
    KeyEnvironment,
    Organization,
    OrganizationInput,
    Role,
    RoleInput,
    User,
    UserInput,
)
from schemas.control import Actor, AuditAction, AuditPage
from sinks.control_schema import (
    api_keys,
    audit_entry,
    audit_log,
    audit_row,
    from_ms,
    organizations,
    refresh_tokens,
    roles,
    to_ms,
    users,
)
from sinks.control_store import ControlStore

BOOTSTRAP_KEY_ID = "key_admin"


class AccessStore:
    """Organizations, roles, keys, users and refresh tokens over a :class:`ControlStore`."""

    def __init__(self, control: ControlStore) -> None:
        self._control = control

    # Organizations

    def create_organization(self, org: OrganizationInput, actor: Actor) -> Organization:
        now = self._control.now()
        created = Organization(id=org.id, name=org.name, created_at=now, created_by=actor.name)
        with self._control.write() as conn:
            if conn.scalar(select(organizations.c.id).where(organizations.c.id == org.id)) is not None:
                raise InvalidInputError("invalid organization: id", {"id": f"organization {org.id} already exists"})
            conn.execute(
                insert(organizations).values(id=org.id, name=org.name, created_ms=to_ms(now), created_by=actor.name)
            )
            conn.execute(
                insert(audit_log).values(audit_row(now, actor, "create", org.id, None, created, "organization", org.id))
            )
        return created

    def ensure_organization(self, org_id: str, name: str, actor: Actor) -> None:
        with self._control.read() as conn:
            if conn.scalar(select(organizations.c.id).where(organizations.c.id == org_id)) is not None:
                return
        with contextlib.suppress(InvalidInputError):  # another process created it first
            self.create_organization(OrganizationInput(id=org_id, name=name), actor)

    def organizations(self) -> list[Organization]:
        with self._control.read() as conn:
            rows = conn.execute(select(organizations).order_by(organizations.c.id)).mappings()
            return [_organization(row) for row in rows]

    def organization(self, org_id: str) -> Organization:
        with self._control.read() as conn:
            row = conn.execute(select(organizations).where(organizations.c.id == org_id)).mappings().first()
        if row is None:
            raise NotFoundError(f"no organization {org_id}")
        return _organization(row)

    # Roles

    def create_role(self, role: RoleInput, actor: Actor) -> Role:
        now = self._control.now()
        created = Role(name=role.name, description=role.description, permissions=role.permissions, builtin=False)
        with self._control.write() as conn:
            if conn.scalar(select(roles.c.name).where(roles.c.name == role.name)) is not None:
                raise InvalidInputError("invalid role: name", {"name": f"role {role.name} already exists"})
            conn.execute(
                insert(roles).values(
                    name=role.name,
                    description=role.description,
                    permissions=json.dumps(role.permissions),
                    created_ms=to_ms(now),
                )
            )
            conn.execute(
                insert(audit_log).values(audit_row(now, actor, "create", role.name, None, created, "role", None))
            )
        return created

    def roles(self) -> list[Role]:
        builtin = [
            Role(name=name, description=description, permissions=sorted(perms), builtin=True)
            for name, (description, perms) in BUILTIN_ROLES.items()
        ]
        with self._control.read() as conn:
            rows = conn.execute(select(roles).order_by(roles.c.name)).mappings()
            custom = [
                Role(
                    name=row["name"],
                    description=row["description"],
                    permissions=json.loads(row["permissions"]),
                    builtin=False,
                )
                for row in rows
            ]
        return builtin + custom

    def permissions_of(self, role_names: list[str]) -> dict[str, frozenset[str]]:
        """Each known role's permissions; unknown names are left out."""
        found = {name: BUILTIN_ROLES[name][1] for name in role_names if name in BUILTIN_ROLES}
        custom = [name for name in role_names if name not in BUILTIN_ROLES]
        if custom:
            with self._control.read() as conn:
                for row in conn.execute(select(roles).where(roles.c.name.in_(custom))).mappings():
                    found[row["name"]] = frozenset(json.loads(row["permissions"]))
        return found

    # API keys

    def create_key(
        self,
        name: str,
        organization_id: str,
        role: str,
        actor: Actor,
        *,
        scopes: list[str] | None = None,
        expires_at: datetime | None = None,
        environment: KeyEnvironment = "live",
    ) -> CreatedApiKey:
        now = self._control.now()
        secret = new_api_key(environment)
        key_id = f"key_{uuid.uuid4().hex[:20]}"
        with self._control.write() as conn:
            conn.execute(
                insert(api_keys).values(
                    id=key_id,
                    name=name,
                    key_hash=sha256_hex(secret),
                    prefix=secret[:SHOWN_PREFIX],
                    organization_id=organization_id,
                    role=role,
                    scopes=None if scopes is None else json.dumps(scopes),
                    created_ms=to_ms(now),
                    created_by=actor.name,
                    expires_ms=None if expires_at is None else to_ms(expires_at),
                )
            )
            stored = _key(_key_row(conn, key_id))
            conn.execute(
                insert(audit_log).values(
                    audit_row(now, actor, "create", key_id, None, stored, "api_key", organization_id)
                )
            )
        return CreatedApiKey(**stored.model_dump(), key=secret)

    def ensure_bootstrap_key(self, secret: str, organization_id: str, actor: Actor, *, replace: bool) -> bool:
        """Make ``secret`` the bootstrap admin key: created if there is none, its hash replaced
        (``replace``: ``COSTOPS_ADMIN_KEY`` changed) if there is. Returns True if the store changed."""
        now = self._control.now()
        digest = sha256_hex(secret)
        with self._control.write() as conn:
            row = conn.execute(select(api_keys).where(api_keys.c.id == BOOTSTRAP_KEY_ID)).mappings().first()
            if row is not None and (not replace or (row["key_hash"] == digest and row["revoked_ms"] is None)):
                return False
            action: AuditAction
            if row is None:
                conn.execute(
                    insert(api_keys).values(
                        id=BOOTSTRAP_KEY_ID,
                        name="bootstrap admin key",
                        key_hash=digest,
                        prefix=secret[:SHOWN_PREFIX],
                        organization_id=organization_id,
                        role="admin",
                        created_ms=to_ms(now),
                        created_by=actor.name,
                    )
                )
                action = "create"
            else:
                conn.execute(
                    update(api_keys)
                    .where(api_keys.c.id == BOOTSTRAP_KEY_ID)
                    .values(key_hash=digest, prefix=secret[:SHOWN_PREFIX], revoked_ms=None)
                )
                action = "rotate"
            after = _key(_key_row(conn, BOOTSTRAP_KEY_ID))
            before = None if row is None else _key(row)
            conn.execute(
                insert(audit_log).values(
                    audit_row(now, actor, action, BOOTSTRAP_KEY_ID, before, after, "api_key", organization_id)
                )
            )
        return True

    def has_bootstrap_key(self) -> bool:
        with self._control.read() as conn:
            return conn.scalar(select(api_keys.c.id).where(api_keys.c.id == BOOTSTRAP_KEY_ID)) is not None

    def keys(self, organization_id: str | None) -> list[ApiKey]:
        query = select(api_keys).order_by(api_keys.c.created_ms, api_keys.c.id)
        if organization_id is not None:
            query = query.where(api_keys.c.organization_id == organization_id)
        with self._control.read() as conn:
            return [_key(row) for row in conn.execute(query).mappings()]

    def key(self, key_id: str) -> ApiKey:
        with self._control.read() as conn:
            return _key(_key_row(conn, key_id))

    def key_by_secret(self, secret: str) -> ApiKey | None:
        with self._control.read() as conn:
            row = conn.execute(select(api_keys).where(api_keys.c.key_hash == sha256_hex(secret))).mappings().first()
        return None if row is None else _key(row)

    def revoke_key(self, key_id: str, actor: Actor) -> ApiKey:
        now = self._control.now()
        with self._control.write() as conn:
            before = _key(_key_row(conn, key_id))
            if before.revoked_at is not None:
                return before
            conn.execute(update(api_keys).where(api_keys.c.id == key_id).values(revoked_ms=to_ms(now)))
            after = _key(_key_row(conn, key_id))
            conn.execute(
                insert(audit_log).values(
                    audit_row(now, actor, "revoke", key_id, before, after, "api_key", after.organization_id)
                )
            )
        return after

    def rotate_key(self, key_id: str, actor: Actor, environment: KeyEnvironment = "live") -> CreatedApiKey:
        """A new secret for the key (same id, role and scopes); the old secret stops working."""
        now = self._control.now()
        secret = new_api_key(environment)
        with self._control.write() as conn:
            before = _key(_key_row(conn, key_id))
            if before.revoked_at is not None:
                raise InvalidInputError("invalid API key: revoked", {"id": f"API key {key_id} is revoked"})
            conn.execute(
                update(api_keys)
                .where(api_keys.c.id == key_id)
                .values(key_hash=sha256_hex(secret), prefix=secret[:SHOWN_PREFIX])
            )
            after = _key(_key_row(conn, key_id))
            conn.execute(
                insert(audit_log).values(
                    audit_row(now, actor, "rotate", key_id, before, after, "api_key", after.organization_id)
                )
            )
        return CreatedApiKey(**after.model_dump(), key=secret)

    def touch_keys(self, used: dict[str, datetime]) -> None:
        """Record when keys were last used (batched by the caller: not one write per request)."""
        if not used:
            return
        with self._control.write() as conn:
            for key_id, at in used.items():
                conn.execute(update(api_keys).where(api_keys.c.id == key_id).values(last_used_ms=to_ms(at)))

    # Users

    def create_user(self, user: UserInput, organization_id: str, actor: Actor) -> User:
        now = self._control.now()
        user_id = f"usr_{uuid.uuid4().hex[:20]}"
        password_hash = hash_password(user.password)
        with self._control.write() as conn:
            if conn.scalar(select(users.c.id).where(users.c.email == user.email)) is not None:
                raise InvalidInputError("invalid user: email", {"email": f"a user with email {user.email} exists"})
            conn.execute(
                insert(users).values(
                    id=user_id,
                    email=user.email,
                    name=user.name,
                    password_hash=password_hash,
                    organization_id=organization_id,
                    roles=json.dumps(user.roles),
                    active=1,
                    created_ms=to_ms(now),
                    created_by=actor.name,
                )
            )
            created = _user(_user_row(conn, user_id))
            conn.execute(
                insert(audit_log).values(
                    audit_row(now, actor, "create", user_id, None, created, "user", organization_id)
                )
            )
        return created

    def users(self, organization_id: str | None) -> list[User]:
        query = select(users).order_by(users.c.created_ms, users.c.id)
        if organization_id is not None:
            query = query.where(users.c.organization_id == organization_id)
        with self._control.read() as conn:
            return [_user(row) for row in conn.execute(query).mappings()]

    def user(self, user_id: str) -> User:
        with self._control.read() as conn:
            return _user(_user_row(conn, user_id))

    def user_by_email(self, email: str) -> tuple[User, str] | None:
        """The user and their password hash."""
        with self._control.read() as conn:
            row = conn.execute(select(users).where(users.c.email == email.strip().lower())).mappings().first()
        return None if row is None else (_user(row), str(row["password_hash"]))

    def set_roles(self, user_id: str, role_names: list[str], actor: Actor) -> User:
        now = self._control.now()
        with self._control.write() as conn:
            before = _user(_user_row(conn, user_id))
            conn.execute(update(users).where(users.c.id == user_id).values(roles=json.dumps(role_names)))
            after = _user(_user_row(conn, user_id))
            conn.execute(
                insert(audit_log).values(
                    audit_row(now, actor, "update", user_id, before, after, "user", after.organization_id)
                )
            )
        return after

    # Refresh tokens

    def issue_refresh(self, user_id: str, ttl: timedelta, family: str | None = None) -> str:
        token = new_token()
        now = self._control.now()
        with self._control.write() as conn:
            conn.execute(
                insert(refresh_tokens).values(
                    token_hash=sha256_hex(token),
                    user_id=user_id,
                    family=family or uuid.uuid4().hex,
                    expires_ms=to_ms(now + ttl),
                )
            )
        return token

    def use_refresh(self, token: str) -> tuple[str, str] | None:
        """Spend a refresh token: its (user id, family), or None if it is unknown, expired or
        spent. Presenting a spent token revokes its whole family: it was stolen or replayed."""
        now = to_ms(self._control.now())
        digest = sha256_hex(token)
        with self._control.write() as conn:
            row = conn.execute(select(refresh_tokens).where(refresh_tokens.c.token_hash == digest)).mappings().first()
            if row is None or row["expires_ms"] <= now:
                return None
            if row["used_ms"] is not None:
                conn.execute(
                    update(refresh_tokens)
                    .where(and_(refresh_tokens.c.family == row["family"], refresh_tokens.c.used_ms.is_(None)))
                    .values(used_ms=now)
                )
                return None
            conn.execute(update(refresh_tokens).where(refresh_tokens.c.token_hash == digest).values(used_ms=now))
        return str(row["user_id"]), str(row["family"])

    # Audit log

    def audit(self, query: AuditQuery) -> AuditPage:
        statement = select(audit_log).order_by(desc(audit_log.c.id)).limit(query.limit + 1)
        for column in ("organization_id", "actor", "entity_type", "entity_id", "action"):
            value = getattr(query, column)
            if value is not None:
                statement = statement.where(audit_log.c[column] == value)
        if query.since is not None:
            statement = statement.where(audit_log.c.at_ms >= to_ms(query.since))
        if query.until is not None:
            statement = statement.where(audit_log.c.at_ms < to_ms(query.until))
        if query.cursor is not None:
            statement = statement.where(audit_log.c.id < query.cursor)
        with self._control.read() as conn:
            entries = [audit_entry(row) for row in conn.execute(statement).mappings()]
        more = len(entries) > query.limit
        entries = entries[: query.limit]
        return AuditPage(data=entries, next_cursor=entries[-1].id if more else None)


def _organization(row: RowMapping) -> Organization:
    return Organization(
        id=row["id"], name=row["name"], created_at=from_ms(row["created_ms"]), created_by=row["created_by"]
    )


def _key_row(conn: Connection, key_id: str) -> RowMapping:
    row = conn.execute(select(api_keys).where(api_keys.c.id == key_id)).mappings().first()
    if row is None:
        raise NotFoundError(f"no API key {key_id}")
    return row


def _key(row: RowMapping) -> ApiKey:
    return ApiKey(
        id=row["id"],
        name=row["name"],
        prefix=row["prefix"],
        organization_id=row["organization_id"],
        role=row["role"],
        scopes=None if row["scopes"] is None else json.loads(row["scopes"]),
        created_at=from_ms(row["created_ms"]),
        created_by=row["created_by"],
        expires_at=None if row["expires_ms"] is None else from_ms(row["expires_ms"]),
        last_used_at=None if row["last_used_ms"] is None else from_ms(row["last_used_ms"]),
        revoked_at=None if row["revoked_ms"] is None else from_ms(row["revoked_ms"]),
    )


def _user_row(conn: Connection, user_id: str) -> RowMapping:
    row = conn.execute(select(users).where(users.c.id == user_id)).mappings().first()
    if row is None:
        raise NotFoundError(f"no user {user_id}")
    return row


def _user(row: RowMapping) -> User:
    return User(
        id=row["id"],
        email=row["email"],
        name=row["name"],
        organization_id=row["organization_id"],
        roles=json.loads(row["roles"]),
        active=bool(row["active"]),
        created_at=from_ms(row["created_ms"]),
        created_by=row["created_by"],
    )
