"""Tables of the control plane's relational store, the migrations that create them, and
the conversions between their rows and the models.

Defined with SQLAlchemy Core, so one definition compiles to the DDL of SQLite and of
PostgreSQL. Instants are epoch milliseconds in UTC (``BIGINT``): exact on both databases,
where SQLite has no time-zone-aware timestamp type. JSON columns are text; their Decimals
are strings, so prices survive the round trip digit for digit.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    RowMapping,
    String,
    Table,
    Text,
    insert,
    select,
)

from schemas.control import Actor, AuditAction, AuditEntry
from schemas.pricing_rule import PricingRule

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)

metadata = MetaData()

pricing_rules = Table(
    "pricing_rules",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("provider", String(100), nullable=False),
    Column("model", String(200), nullable=False),
    Column("scope", String(16), nullable=False),
    Column("organization_id", String(128)),
    Column("project_id", String(128)),
    Column("currency", String(3), nullable=False),
    Column("effective_ms", BigInteger, nullable=False),
    Column("end_ms", BigInteger),  # exclusive; null means open-ended
    Column("pricing_structure", Text, nullable=False),
    Column("description", Text),
    Column("created_ms", BigInteger, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
    Column("created_by", String(200)),
    # The overlap check and the API's filters both start from provider and model.
    Index("pricing_rules_provider_model", "provider", "model"),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at_ms", BigInteger, nullable=False),
    Column("actor", String(200), nullable=False),
    Column("action", String(16), nullable=False),
    Column("entity_type", String(32), nullable=False),
    Column("entity_id", String(64), nullable=False),
    Column("before", Text),
    Column("after", Text),
    Column("organization_id", String(128)),  # v4: the organization the change belongs to
    Column("source", String(200)),  # v4: where the request came from (client address)
    Index("audit_log_entity", "entity_id"),
    # AUTOINCREMENT: SQLite must never reuse an id, since the highest one is the version.
    sqlite_autoincrement=True,
)

webhooks = Table(
    "webhooks",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("url", Text, nullable=False),
    Column("events", Text, nullable=False),  # JSON list
    Column("organization_id", String(128)),  # null: every organization's alerts
    Column("secret", Text, nullable=False),
    Column("description", Text),
    Column("created_ms", BigInteger, nullable=False),
    Column("created_by", String(200)),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("webhook_id", String(64), nullable=False),
    Column("delivery_id", String(64), nullable=False),
    Column("event", String(32), nullable=False),
    Column("alert_id", Text, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("at_ms", BigInteger, nullable=False),
    Column("status_code", Integer),
    Column("error", Text),
    Column("success", Integer, nullable=False),
    Column("duration_ms", Integer, nullable=False),
    Index("webhook_deliveries_webhook", "webhook_id", "id"),
    sqlite_autoincrement=True,
)

budgets = Table(
    "budgets",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("organization_id", String(128), nullable=False),
    Column("body", Text, nullable=False),  # the Budget as JSON (Decimals as strings)
    Column("created_ms", BigInteger, nullable=False),
    Index("budgets_organization", "organization_id"),
)

organizations = Table(
    "organizations",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("created_by", String(200)),
)

roles = Table(
    "roles",  # custom roles; the built-in ones live in code (schemas.auth.BUILTIN_ROLES)
    metadata,
    Column("name", String(64), primary_key=True),
    Column("description", Text, nullable=False),
    Column("permissions", Text, nullable=False),  # JSON list
    Column("created_ms", BigInteger, nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("key_hash", String(64), nullable=False, unique=True),  # SHA-256 hex of the secret
    Column("prefix", String(32), nullable=False),
    Column("organization_id", String(128), nullable=False),
    Column("role", String(64), nullable=False),
    Column("scopes", Text),  # JSON list, or null: every permission of the role
    Column("created_ms", BigInteger, nullable=False),
    Column("created_by", String(200)),
    Column("expires_ms", BigInteger),
    Column("last_used_ms", BigInteger),
    Column("revoked_ms", BigInteger),
    Index("api_keys_organization", "organization_id"),
)

users = Table(
    "users",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("email", String(254), nullable=False, unique=True),
    Column("name", String(200), nullable=False),
    Column("password_hash", Text, nullable=False),
    Column("organization_id", String(128), nullable=False),
    Column("roles", Text, nullable=False),  # JSON list
    Column("active", Integer, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("created_by", String(200)),
    Index("users_organization", "organization_id"),
)

refresh_tokens = Table(
    "refresh_tokens",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("user_id", String(64), nullable=False),
    Column("family", String(64), nullable=False),  # every rotation of one login
    Column("expires_ms", BigInteger, nullable=False),
    Column("used_ms", BigInteger),
    Index("refresh_tokens_family", "family"),
)

reports = Table(
    "reports",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("organization_id", String(128)),  # null: every organization (an admin's report)
    Column("type", String(16), nullable=False),
    Column("format", String(8), nullable=False),
    Column("params", Text, nullable=False),  # JSON: the request's filters and group_by
    Column("status", String(16), nullable=False),
    Column("error", Text),
    Column("row_count", BigInteger),
    Column("size", BigInteger),
    # The file itself, so any API replica serves the download (capped by api.max_report_mb).
    Column("content", LargeBinary),
    Column("created_ms", BigInteger, nullable=False),
    Column("completed_ms", BigInteger),
    Column("created_by", String(200)),
    # When the generating process last confirmed it is still at work (see ReportStore.fail_stale).
    Column("heartbeat_ms", BigInteger),
    Index("reports_organization", "organization_id", "created_ms"),
    Index("reports_status", "status"),
)

schema_migrations = Table(
    "control_schema_migrations",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("applied_ms", BigInteger, nullable=False),
)

Migration = Callable[[Connection], None]


def _v1_tables(conn: Connection) -> None:
    # Creates the tables as defined above. A later migration that alters a table must first
    # copy that table's v1 definition in here, so a new database still replays every step.
    v1 = MetaData()
    Table(
        "audit_log",
        v1,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("at_ms", BigInteger, nullable=False),
        Column("actor", String(200), nullable=False),
        Column("action", String(16), nullable=False),
        Column("entity_type", String(32), nullable=False),
        Column("entity_id", String(64), nullable=False),
        Column("before", Text),
        Column("after", Text),
        Index("audit_log_entity", "entity_id"),
        sqlite_autoincrement=True,
    )
    metadata.create_all(conn, tables=[pricing_rules])
    v1.create_all(conn)


def _v2_webhooks(conn: Connection) -> None:
    metadata.create_all(conn, tables=[webhooks, webhook_deliveries])


def _v3_budgets(conn: Connection) -> None:
    metadata.create_all(conn, tables=[budgets])


def _v4_access(conn: Connection) -> None:
    metadata.create_all(conn, tables=[organizations, roles, api_keys, users, refresh_tokens])
    for column in ("organization_id VARCHAR(128)", "source VARCHAR(200)"):
        conn.exec_driver_sql(f"ALTER TABLE audit_log ADD COLUMN {column}")
    conn.exec_driver_sql("CREATE INDEX audit_log_organization ON audit_log (organization_id, id)")


def _v5_reports(conn: Connection) -> None:
    metadata.create_all(conn, tables=[reports])


MIGRATIONS: dict[int, Migration] = {1: _v1_tables, 2: _v2_webhooks, 3: _v3_budgets, 4: _v4_access, 5: _v5_reports}
"""Version -> step. Append only: an applied step never changes."""


def apply_migrations(conn: Connection) -> list[int]:
    """Apply the steps the database lacks, in order, inside the caller's transaction.

    The caller holds the store's write lock, so two processes opening one database do not
    both apply a step. Returns the versions applied.
    """
    schema_migrations.create(conn, checkfirst=True)
    done = set(conn.scalars(select(schema_migrations.c.version)))
    applied: list[int] = []
    for version in sorted(MIGRATIONS):
        if version in done:
            continue
        MIGRATIONS[version](conn)
        conn.execute(insert(schema_migrations).values(version=version, applied_ms=to_ms(datetime.now(UTC))))
        applied.append(version)
    return applied


def audit_row(
    at: datetime,
    actor: Actor,
    action: AuditAction,
    entity_id: str,
    before: BaseModel | None,
    after: BaseModel | None,
    entity_type: str = "pricing_rule",
    organization_id: str | None = None,
) -> dict[str, Any]:
    """The audit row of one change; ``organization_id``: the organization it belongs to (None:
    a deployment-wide entity such as a global pricing rule or a role)."""
    return {
        "at_ms": to_ms(at),
        "actor": actor.name,
        "organization_id": organization_id,
        "source": actor.source,
        "action": action,
        "entity_type": entity_type,
        "entity_id": entity_id,
        "before": None if before is None else before.model_dump_json(),
        "after": None if after is None else after.model_dump_json(),
    }


def audit_entry(row: RowMapping) -> AuditEntry:
    return AuditEntry(
        id=row["id"],
        at=from_ms(row["at_ms"]),
        actor=row["actor"],
        action=row["action"],
        entity_type=row["entity_type"],
        entity_id=row["entity_id"],
        before=None if row["before"] is None else json.loads(row["before"]),
        after=None if row["after"] is None else json.loads(row["after"]),
        organization_id=row["organization_id"],
        source=row["source"],
    )


def rule_row(rule: PricingRule) -> dict[str, Any]:
    return {
        "id": rule.id,
        "provider": rule.provider,
        "model": rule.model,
        "scope": rule.scope,
        "organization_id": rule.organization_id,
        "project_id": rule.project_id,
        "currency": rule.currency,
        "effective_ms": to_ms(rule.effective_date),
        "end_ms": None if rule.end_date is None else to_ms(rule.end_date),
        # JSON mode writes Decimals as strings: exact, where a JSON number would be a float.
        "pricing_structure": rule.pricing_structure.model_dump_json(),
        "description": rule.description,
        "created_ms": to_ms(rule.created_at),
        "updated_ms": to_ms(rule.updated_at),
        "created_by": rule.created_by,
    }


def pricing_rule(row: RowMapping) -> PricingRule:
    return PricingRule.model_validate(
        {
            "id": row["id"],
            "provider": row["provider"],
            "model": row["model"],
            "scope": row["scope"],
            "organization_id": row["organization_id"],
            "project_id": row["project_id"],
            "currency": row["currency"],
            "effective_date": from_ms(row["effective_ms"]),
            "end_date": None if row["end_ms"] is None else from_ms(row["end_ms"]),
            "pricing_structure": json.loads(row["pricing_structure"]),
            "description": row["description"],
            "created_at": from_ms(row["created_ms"]),
            "updated_at": from_ms(row["updated_ms"]),
            "created_by": row["created_by"],
        }
    )


def to_ms(value: datetime) -> int:
    """Epoch milliseconds, by integer arithmetic (a float timestamp could be off by one)."""
    return (value - _EPOCH) // _MS


def from_ms(ms: int) -> datetime:
    return _EPOCH + ms * _MS
