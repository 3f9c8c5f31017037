"""Integration fixtures: chDB store per test, Kafka settings with unique topics per test."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import clickhouse_connect
import pytest
from clickhouse_connect.driver.client import Client

from llm_cost_ops.broker import EmbeddedBroker
from llm_cost_ops.settings import Settings, SinkSettings, WebhookSettings
from sinks.store import ClickHouseStore

from processes import ApiPipeline, api_pipeline, tagged_kafka


@pytest.fixture(scope="session")
def chdb_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    """The session's chDB engine (chDB serves one data path per process)."""
    path: Path = tmp_path_factory.mktemp("chdb")
    client = clickhouse_connect.get_client(interface="chdb", path=str(path))
    yield client
    client.close()


@pytest.fixture
def store(chdb_client: Client) -> ClickHouseStore:
    """A migrated, empty database of its own for this test."""
    store = ClickHouseStore(chdb_client, f"test_{uuid.uuid4().hex[:12]}")
    store.migrate()
    return store


@pytest.fixture(scope="module")
def pipeline(
    broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[ApiPipeline]:
    """The module's API+sink process on the session broker (see ``processes.api_pipeline``);
    the module starts the workers it needs."""
    name = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    with api_pipeline(broker.bootstrap_servers, tmp_path_factory.mktemp(name)) as running:
        yield running


@pytest.fixture
def kafka_settings(broker: EmbeddedBroker, tmp_path: Path) -> Callable[..., Settings]:
    """Settings on the session broker with topics and groups of this test alone."""

    def build(**overrides: Any) -> Settings:
        tag = uuid.uuid4().hex[:8]
        kafka = tagged_kafka(broker.bootstrap_servers, tag, rebalance_timeout_s=2.0)
        base: dict[str, Any] = {
            "data_dir": tmp_path / "data",
            "kafka": kafka,
            "sink": SinkSettings(group_id=f"sink-{tag}", flush_seconds=0.2),
            "webhooks": WebhookSettings(group_id=f"webhooks-{tag}"),
        }
        base.update(overrides)
        return Settings(**base)

    return build
