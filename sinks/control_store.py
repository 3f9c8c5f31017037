"""The control plane's relational store: pricing rules and the audit log of their changes.

SQLite under the data directory by default, PostgreSQL when ``DATABASE_URL`` is set; the
same SQLAlchemy Core statements run on both. Methods are synchronous (the API calls them
through ``asyncio.to_thread``) and safe to share between threads.

Every write is one transaction that also appends its audit row, and writes are serialized:
within the process by a lock, across processes by ``BEGIN IMMEDIATE`` (SQLite) or a
transaction-scoped advisory lock (PostgreSQL). Serializing them makes two guarantees: the
overlap check and the insert that follows see the same rules, and audit ids commit in
increasing order, so whoever has read up to :meth:`ControlStore.version` never misses a
change committed later with a lower id.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, delete, event, func, insert, or_, select, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, make_url
from sqlalchemy.sql.elements import ColumnElement

from llm_cost_ops.errors import InvalidInputError, NotFoundError
from schemas.control import Actor, AuditEntry
from schemas.pricing_rule import PricingRule, PricingRuleInput, Scope, new_rule_id
from sinks.control_schema import (
    apply_migrations,
    audit_entry,
    audit_log,
    audit_row,
    from_ms,
    pricing_rule,
    pricing_rules,
    rule_row,
    to_ms,
)
from sinks.errors import ControlStoreUnavailableError

logger = logging.getLogger(__name__)

_WRITE = "control_write"
"""Execution option that marks a connection whose transaction writes (SQLite: BEGIN IMMEDIATE)."""
_PG_LOCK_KEY = 0x636F_6E74_726F_6C  # "control": the advisory lock every write takes

Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(UTC)


def database_url(url: str) -> URL:
    """The SQLAlchemy URL for a settings URL: ``postgres(ql)://`` uses the psycopg 3 driver."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def create_control_engine(url: str) -> Engine:
    """An engine for SQLite (its directory created) or PostgreSQL, shareable between threads."""
    parsed = database_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(parsed, pool_pre_ping=True)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(parsed, connect_args={"check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, record: Any) -> None:
        # The driver's own implicit BEGIN is turned off so that _begin below chooses the kind.
        dbapi_connection.isolation_level = None
        dbapi_connection.execute("PRAGMA journal_mode=WAL")  # readers do not wait for a writer

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        # IMMEDIATE takes the write lock at BEGIN, before the overlap check reads: two
        # processes cannot both check, then both insert.
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(_WRITE) else "BEGIN")

    return engine


class ControlStore:
    """Pricing rules with an audit log, on SQLite or PostgreSQL.

    Args:
        engine: from :func:`create_control_engine`; the store disposes of it on :meth:`close`.
        clock: the time of changes (UTC); tests pass a fixed one.
    """

    def __init__(self, engine: Engine, clock: Clock = _utc_now) -> None:
        self._engine = engine
        self._clock = clock
        self._write_lock = threading.Lock()

    @classmethod
    def open(cls, url: str) -> ControlStore:
        """Connect to ``url`` (``settings.control_db_url``) and apply pending migrations."""
        store = cls(create_control_engine(url))
        try:
            with store._write() as conn:
                applied = apply_migrations(conn)
        except BaseException:
            store.close()
            raise
        if applied:
            logger.info("applied control store migrations %s", applied, extra={"operation": "migrate"})
        return store

    def close(self) -> None:
        self._engine.dispose()

    def create_rule(self, rule: PricingRuleInput, actor: Actor) -> PricingRule:
        """Store a new rule. Raises InvalidInputError if it overlaps a rule of the same key."""
        now = self._now()
        created = _stored(rule, new_rule_id(), created_at=now, updated_at=now, created_by=actor.name)
        with self._write() as conn:
            _refuse_overlap(conn, created)
            conn.execute(insert(pricing_rules).values(rule_row(created)))
            conn.execute(
                insert(audit_log).values(
                    audit_row(now, actor, "create", created.id, None, created, organization_id=created.organization_id)
                )
            )
        return created

    def update_rule(self, rule_id: str, rule: PricingRuleInput, actor: Actor) -> PricingRule:
        """Replace a rule's fields; its id, ``created_at`` and ``created_by`` stay."""
        now = self._now()
        with self._write() as conn:
            before = _get(conn, rule_id)
            after = _stored(rule, rule_id, created_at=before.created_at, updated_at=now, created_by=before.created_by)
            _refuse_overlap(conn, after)
            conn.execute(update(pricing_rules).where(pricing_rules.c.id == rule_id).values(rule_row(after)))
            conn.execute(
                insert(audit_log).values(
                    audit_row(now, actor, "update", rule_id, before, after, organization_id=after.organization_id)
                )
            )
        return after

    def delete_rule(self, rule_id: str, actor: Actor) -> PricingRule:
        """Delete a rule and return it as it was."""
        now = self._now()
        with self._write() as conn:
            before = _get(conn, rule_id)
            conn.execute(delete(pricing_rules).where(pricing_rules.c.id == rule_id))
            conn.execute(
                insert(audit_log).values(
                    audit_row(now, actor, "delete", rule_id, before, None, organization_id=before.organization_id)
                )
            )
        return before

    def get_rule(self, rule_id: str) -> PricingRule:
        with self._read() as conn:
            return _get(conn, rule_id)

    def list_rules(
        self,
        provider: str | None = None,
        model: str | None = None,
        organization_id: str | None = None,
        scope: Scope | None = None,
        active_at: datetime | None = None,
        visible_to: str | None = None,
    ) -> list[PricingRule]:
        """Rules matching every filter given; ``active_at`` keeps those in force at that instant;
        ``visible_to``: only the deployment-wide rules and that organization's."""
        query = select(pricing_rules)
        if visible_to is not None:
            query = query.where(
                or_(pricing_rules.c.organization_id.is_(None), pricing_rules.c.organization_id == visible_to)
            )
        if provider is not None:
            query = query.where(pricing_rules.c.provider == provider.strip().lower())
        if model is not None:
            query = query.where(pricing_rules.c.model == model)
        if organization_id is not None:
            query = query.where(pricing_rules.c.organization_id == organization_id)
        if scope is not None:
            query = query.where(pricing_rules.c.scope == scope)
        if active_at is not None:
            at = to_ms(active_at)
            query = query.where(
                pricing_rules.c.effective_ms <= at,
                or_(pricing_rules.c.end_ms.is_(None), pricing_rules.c.end_ms > at),
            )
        query = query.order_by(
            pricing_rules.c.provider,
            pricing_rules.c.model,
            pricing_rules.c.organization_id,
            pricing_rules.c.project_id,
            pricing_rules.c.effective_ms,
        )
        with self._read() as conn:
            return [pricing_rule(row) for row in conn.execute(query).mappings()]

    def all_rules(self) -> list[PricingRule]:
        return self.list_rules()

    def snapshot(self) -> tuple[list[PricingRule], int]:
        """All rules and a version they are at least as new as (read first: a publisher must
        never label older rules with a newer version)."""
        version = self.version()
        return self.all_rules(), version

    def version(self) -> int:
        """The id of the latest change (0 before any): what a reader has seen up to."""
        with self._read() as conn:
            return conn.scalar(select(func.max(audit_log.c.id))) or 0

    def history(self, entity_id: str) -> list[AuditEntry]:
        """Every change to one entity, oldest first (kept after the entity is deleted)."""
        query = select(audit_log).where(audit_log.c.entity_id == entity_id).order_by(audit_log.c.id)
        with self._read() as conn:
            return [audit_entry(row) for row in conn.execute(query).mappings()]

    def _now(self) -> datetime:
        # Stored in milliseconds: truncate now, so the returned rule equals the stored one.
        return from_ms(to_ms(self._clock()))

    def now(self) -> datetime:
        """The store's clock, truncated to what it stores (milliseconds)."""
        return self._now()

    def write(self) -> AbstractContextManager[Connection]:
        """A write transaction (serialized across processes), for stores of other entities."""
        return self._write()

    def read(self) -> AbstractContextManager[Connection]:
        return self._read()

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self._write_lock, _guard(), self._engine.connect() as conn:
            conn.execution_options(**{_WRITE: True})
            with conn.begin():
                if conn.dialect.name == "postgresql":
                    conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_LOCK_KEY})")
                yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with _guard(), self._engine.connect() as conn:
            yield conn


@contextmanager
def _guard() -> Iterator[None]:
    """Driver errors become ours at this boundary: a database that is down or locked is
    retryable; anything else is a bug and stays as it is."""
    try:
        yield
    except (sa_exc.OperationalError, sa_exc.InterfaceError) as exc:
        raise ControlStoreUnavailableError(f"the control store failed: {exc.orig or exc}") from exc


def _stored(rule: PricingRuleInput, rule_id: str, **meta: Any) -> PricingRule:
    return PricingRule.model_validate({**rule.model_dump(), "id": rule_id, **meta})


def _get(conn: Connection, rule_id: str) -> PricingRule:
    row = conn.execute(select(pricing_rules).where(pricing_rules.c.id == rule_id)).mappings().first()
    if row is None:
        raise NotFoundError(f"no pricing rule {rule_id}")
    return pricing_rule(row)


def _refuse_overlap(conn: Connection, rule: PricingRule) -> None:
    """Two rules of one key in force at once would make the price ambiguous."""
    query = (
        select(pricing_rules)
        .where(
            pricing_rules.c.id != rule.id,
            pricing_rules.c.provider == rule.provider,
            pricing_rules.c.model == rule.model,
            pricing_rules.c.scope == rule.scope,
            _equals(pricing_rules.c.organization_id, rule.organization_id),
            _equals(pricing_rules.c.project_id, rule.project_id),
        )
        .order_by(pricing_rules.c.effective_ms)
    )
    for row in conn.execute(query).mappings():
        other = pricing_rule(row)
        if rule.overlaps(other):
            span = f"from {_iso(other.effective_date)} to {_iso(other.end_date) if other.end_date else 'open'}"
            fix = (
                "set its end_date first"
                if other.effective_date <= rule.effective_date
                else f"end this rule by {_iso(other.effective_date)}"
            )
            raise InvalidInputError(
                "invalid pricing: effective_date", {"effective_date": f"overlaps {other.id} ({span}); {fix}"}
            )


def _equals(column: ColumnElement[str | None], value: str | None) -> ColumnElement[bool]:
    return column.is_(None) if value is None else column == value


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")
