"""Budgets in the control plane's store (SQLite or PostgreSQL), each change audited."""

from __future__ import annotations

import uuid

from sqlalchemy import Connection, delete, insert, select, update

from llm_cost_ops.errors import NotFoundError
from schemas.budget import Budget, BudgetInput
from schemas.control import Actor, AuditEntry
from sinks.control_schema import audit_log, audit_row, budgets, to_ms
from sinks.control_store import ControlStore


class BudgetStore:
    """Create, replace, delete and read budgets; ``snapshot`` is what the control topic carries."""

    def __init__(self, control: ControlStore) -> None:
        self._control = control

    def create(self, budget: BudgetInput, actor: Actor) -> Budget:
        now = self._control.now()
        created = Budget(
            **budget.model_dump(), id=f"bud_{uuid.uuid4().hex[:20]}", created_at=now, created_by=actor.name
        )
        with self._control.write() as conn:
            conn.execute(
                insert(budgets).values(
                    id=created.id,
                    organization_id=created.organization_id,
                    body=created.model_dump_json(),
                    created_ms=to_ms(now),
                )
            )
            conn.execute(
                insert(audit_log).values(
                    audit_row(now, actor, "create", created.id, None, created, "budget", created.organization_id)
                )
            )
        return created

    def replace(self, budget_id: str, budget: BudgetInput, actor: Actor) -> Budget:
        """A new definition under the same id (the thresholds already reached stay reached)."""
        now = self._control.now()
        with self._control.write() as conn:
            before = self._get(conn, budget_id)
            after = Budget(
                **budget.model_dump(), id=budget_id, created_at=before.created_at, created_by=before.created_by
            )
            conn.execute(
                update(budgets)
                .where(budgets.c.id == budget_id)
                .values(organization_id=after.organization_id, body=after.model_dump_json())
            )
            conn.execute(
                insert(audit_log).values(
                    audit_row(now, actor, "update", budget_id, before, after, "budget", after.organization_id)
                )
            )
        return after

    def delete(self, budget_id: str, actor: Actor) -> Budget:
        now = self._control.now()
        with self._control.write() as conn:
            before = self._get(conn, budget_id)
            conn.execute(delete(budgets).where(budgets.c.id == budget_id))
            conn.execute(
                insert(audit_log).values(
                    audit_row(now, actor, "delete", budget_id, before, None, "budget", before.organization_id)
                )
            )
        return before

    def get(self, budget_id: str) -> Budget:
        with self._control.read() as conn:
            return self._get(conn, budget_id)

    def all(self, organization_id: str | None = None) -> list[Budget]:
        query = select(budgets.c.body).order_by(budgets.c.created_ms, budgets.c.id)
        if organization_id is not None:
            query = query.where(budgets.c.organization_id == organization_id)
        with self._control.read() as conn:
            return [Budget.model_validate_json(body) for body in conn.scalars(query)]

    def history(self, budget_id: str) -> list[AuditEntry]:
        entries = self._control.history(budget_id)
        if not entries:
            raise NotFoundError(f"no budget {budget_id}")
        return entries

    def snapshot(self) -> tuple[list[Budget], int]:
        """Every budget and a version they are at least as new as (the version is read first)."""
        version = self._control.version()
        return self.all(), version

    @staticmethod
    def _get(conn: Connection, budget_id: str) -> Budget:
        body = conn.scalar(select(budgets.c.body).where(budgets.c.id == budget_id))
        if body is None:
            raise NotFoundError(f"no budget {budget_id}")
        return Budget.model_validate_json(body)
