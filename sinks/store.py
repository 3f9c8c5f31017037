"""The ClickHouse connection behind one interface, two backends.

* embedded: chDB, the ClickHouse engine in this process, data under ``<data_dir>/clickhouse``
  (chDB serves one data path per process: the process that owns it writes and queries);
* server: a ClickHouse server or cluster at ``CLICKHOUSE_URL``.

Both are clickhouse-connect clients, so every query and insert below runs unchanged on either.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

import clickhouse_connect
import pyarrow as pa
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError, ProgrammingError

from llm_cost_ops.settings import Settings
from sinks.errors import QueryError, StoreUnavailableError
from sinks.migrations import apply_migrations

logger = logging.getLogger(__name__)


def open_client(settings: Settings) -> Client:
    """Connect to the configured backend (server when ``CLICKHOUSE_URL`` is set, else chDB)."""
    try:
        if settings.clickhouse.url:
            return clickhouse_connect.get_client(dsn=settings.clickhouse.url.get_secret_value())
        path = settings.chdb_path
        path.mkdir(parents=True, exist_ok=True)
        return clickhouse_connect.get_client(interface="chdb", path=str(path.resolve()))
    except OperationalError as exc:
        raise StoreUnavailableError(f"ClickHouse is unreachable: {exc}") from exc


class ClickHouseStore:
    """Migrated database plus guarded insert/query. Thread-safe: the API's worker threads
    and the sink share one instance.

    Args:
        client: a clickhouse-connect client (chDB or server).
        database: the database holding the pipeline's tables.
    """

    def __init__(self, client: Client, database: str) -> None:
        self.client = client
        self.database = database
        # chDB sessions can be shared across threads, but one statement at a time keeps
        # inserts and FINAL reads from interleaving inside the embedded engine.
        self._lock = threading.Lock()

    @classmethod
    def open(cls, settings: Settings) -> ClickHouseStore:
        store = cls(open_client(settings), settings.clickhouse.database)
        try:
            store.migrate()
        except BaseException:
            store.close()
            raise
        return store

    def migrate(self) -> list[int]:
        with self._lock:
            applied: list[int] = _guard(lambda: apply_migrations(self.client, self.database))
        if applied:
            logger.info("applied migrations %s", applied, extra={"operation": "migrate"})
        return applied

    def table(self, name: str) -> str:
        return f"{self.database}.{name}"

    def insert(self, table: str, rows: Sequence[Sequence[Any]], columns: Sequence[str]) -> None:
        with self._lock:
            _guard(lambda: self.client.insert(self.table(table), rows, column_names=list(columns)))

    def insert_arrow(self, table: str, data: pa.Table, settings: dict[str, Any] | None = None) -> None:
        """Insert a whole Arrow table (columns by name): the engine parses it, no row in Python."""
        with self._lock:
            _guard(lambda: self.client.insert_arrow(self.table(table), data, settings=settings))

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        with self._lock:
            result = _guard(lambda: self.client.query(sql, parameters=parameters or {}))
        return [tuple(row) for row in result.result_rows]

    def command(self, sql: str, parameters: dict[str, Any] | None = None) -> None:
        """A statement without a result (``INSERT … SELECT``, DDL)."""
        with self._lock:
            _guard(lambda: self.client.command(sql, parameters=parameters or {}))

    def query_arrow(self, sql: str, parameters: dict[str, Any] | None = None) -> pa.Table:
        """A query's result as one Arrow table (text as strings, not bytes)."""
        with self._lock:
            result: pa.Table = _guard(
                lambda: self.client.query_arrow(sql, parameters=parameters or {}, use_strings=True)
            )
        return result

    def ping(self) -> bool:
        try:
            self.query("SELECT 1")
        except StoreUnavailableError:
            return False
        return True

    def close(self) -> None:
        with self._lock:
            self.client.close()


def _guard(call: Any) -> Any:
    try:
        return call()
    except OperationalError as exc:
        raise StoreUnavailableError(f"ClickHouse failed: {exc}") from exc
    except (ProgrammingError, DatabaseError) as exc:
        # Errors from a chDB engine come back as DatabaseError; a broken statement is ours
        # to fix, not the caller's to retry.
        raise QueryError(f"ClickHouse rejected the statement: {exc}") from exc
