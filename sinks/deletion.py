"""Deleting a usage event: a tombstone in ``usage_costs`` (see :mod:`sinks.migrations`).

The tombstone is a copy of the event's row with ``deleted = 1`` and ``priced_at`` =
:data:`~sinks.migrations.TOMBSTONE_VERSION`: ``usage_costs FINAL`` (hence every list,
aggregate and the rollup's recompute) no longer returns the event, and nothing written under
that id later outranks it, so a replay from Kafka or a reprice leaves it deleted.

What a delete does not reach: state the stream workers already counted (tumbling windows
and the alerts raised on them, budget spend for the period, the anomaly detectors' history)
and exports already taken.
"""

from __future__ import annotations

from sqlalchemy import insert

from llm_cost_ops.errors import NotFoundError
from schemas.control import Actor
from schemas.query import CostFilterParams, UsageRecord
from sinks.control_schema import audit_log, audit_row
from sinks.control_store import ControlStore
from sinks.migrations import TOMBSTONE_VERSION
from sinks.queries import CostQueries, Query, where_clause
from sinks.rollup import hour_of, mark_hour
from sinks.store import ClickHouseStore


def tombstone_query(table: str, event_id: str, filters: CostFilterParams, columns: tuple[str, ...]) -> Query:
    """Copy the event's current row (if it matches ``filters``: the caller's organization) as
    a deleted one that outranks every other version."""
    where, params = where_clause(filters)
    where = f"{where} AND" if where else " WHERE"
    params.update(event_id=event_id, version=TOMBSTONE_VERSION)
    copied = ", ".join(columns)
    sql = (
        f"INSERT INTO {table} ({copied}, priced_at, deleted) "
        f"SELECT {copied}, {{version:DateTime64(3, 'UTC')}}, 1 FROM {table} FINAL{where} event_id = {{event_id:String}}"
    )
    return Query(sql, params)


class UsageDeleter:
    """Deletes usage events, audited, and marks their hour for the rollup.

    Args:
        store: the ClickHouse store.
        control: the control store holding the audit log.
    """

    def __init__(self, store: ClickHouseStore, control: ControlStore) -> None:
        self._store = store
        self._control = control
        self._table = store.table("usage_costs")

    def columns(self) -> tuple[str, ...]:
        """The table's columns but those a tombstone sets (``priced_at``, ``deleted``) or the
        engine fills (``written_at``)."""
        rows = self._store.query(
            "SELECT name FROM system.columns WHERE database = {db:String} AND table = 'usage_costs' "
            "AND name NOT IN ('priced_at', 'deleted', 'written_at') ORDER BY position",
            {"db": self._store.database},
        )
        return tuple(row[0] for row in rows)

    def delete(self, event_id: str, filters: CostFilterParams, actor: Actor) -> UsageRecord:
        """Delete the event ``event_id`` if ``filters`` (the caller's organization) match it;
        returns it as it was. :class:`NotFoundError` otherwise (another organization's event
        is not found either).

        The audit row is written in the control store's transaction around the tombstone: a
        failed tombstone leaves no audit row. The hour is marked dirty after the tombstone
        (what the rollup needs) and also before it, which narrows the window in which a failed
        second mark would leave the hour's rollup stale."""
        before = CostQueries(self._store).usage(event_id, filters)
        if before is None:
            raise NotFoundError(f"no usage record with id {event_id}")
        hour = hour_of(before.timestamp)
        with self._control.write() as conn:
            row = audit_row(
                self._control.now(), actor, "delete", event_id, before, None, "usage", before.organization_id
            )
            conn.execute(insert(audit_log).values(row))
            mark_hour(self._store, before.organization_id, hour)
            query = tombstone_query(self._table, event_id, filters, self.columns())
            self._store.command(query.sql, query.parameters)
            mark_hour(self._store, before.organization_id, hour)
        return before
