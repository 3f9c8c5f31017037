"""A real PostgreSQL server for the control store tests (pgserver: PostgreSQL binaries in a
wheel, listening on a Unix socket only). Started once per session; one database per test."""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import create_engine, text

from sinks.control_store import database_url

if TYPE_CHECKING:
    from pgserver.postgres_server import PostgresServer


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """The server, or a failure that says why it cannot start (never a skip)."""
    with warnings.catch_warnings():
        # platformdirs warns at pgserver's import when XDG_RUNTIME_DIR is unset (containers, CI)
        # and falls back to /tmp/runtime-<uid>, which serves pgserver's lock file as well.
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
        from pgserver.postgres_server import get_server

    # As root, pgserver creates a "pgserver" system user and runs PostgreSQL as that user
    # (PostgreSQL refuses to run as root), so this works in containers too.
    try:
        server = get_server(tmp_path_factory.mktemp("postgres") / "pgdata", cleanup_mode="delete")
    except Exception as exc:
        pytest.fail(f"PostgreSQL (pgserver) did not start: {exc!r}", pytrace=False)
    yield server
    server.cleanup()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh database on the session's server, dropped after the test."""
    name = f"control_{uuid.uuid4().hex[:12]}"
    admin = create_engine(database_url(postgres_server.get_uri()))
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield str(postgres_server.get_uri(database=name))
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    admin.dispose()
