"""The service producer (``llm_cost_ops.delivery.UsageProducer``) against real Tansu brokers:
delivery, a broker outage bridged by the spool, a restart replaying a previous spool."""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

import llm_cost_ops
from llm_cost_ops.broker import EmbeddedBroker, free_port
from llm_cost_ops.delivery import DeliveryError, SpoolFullError, UsageProducer
from llm_cost_ops.kafka import ensure_topics
from llm_cost_ops.settings import Settings
from llm_cost_ops.wire import build_codec
from schemas.errors import EventValidationError
from schemas.usage import UsageEvent

from processes import ApiPipeline, tagged_kafka, wait_for

UsageFactory = Callable[..., dict[str, Any]]

README_EXAMPLE = """\
from llm_cost_ops import UsageProducer
producer = UsageProducer()  # KAFKA_BOOTSTRAP_SERVERS
producer.send({"provider": "openai", "model": "gpt-4o", "organization_id": "org-123", "prompt_tokens": 1200, "completion_tokens": 300})
"""  # noqa: E501 (the example as the README shows it)
"""The README's example of the service producer, run as it is written."""


def settings_for(servers: str, data_dir: Path) -> Settings:
    return Settings(data_dir=data_dir, kafka=tagged_kafka(servers, uuid.uuid4().hex[:8]))


def read_events(settings: Settings, expect: int, timeout_s: float = 60) -> list[tuple[str, str, list[str]]]:
    """``(key, organization, event ids)`` of every message of the usage topic, in partition and
    offset order, once ``expect`` events have been read."""
    codec = build_codec(settings)
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka.bootstrap_servers,
            "group.id": f"reader-{uuid.uuid4().hex[:8]}",  # never joined: partitions are assigned
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(settings.kafka.usage_topic, p, OFFSET_BEGINNING) for p in range(4)])
    found: list[tuple[int, int, str, str, list[str]]] = []

    def take(wait_s: float) -> None:
        for message in consumer.consume(500, wait_s):
            assert message.error() is None, message.error()
            table = codec.decode_usage(message.value()).to_pydict()
            (org,) = set(table["organization_id"])
            key = (message.key() or b"").decode()
            found.append((message.partition() or 0, message.offset() or 0, key, org, table["event_id"]))

    deadline = time.monotonic() + timeout_s
    try:
        while sum(len(m[4]) for m in found) < expect and time.monotonic() < deadline:
            take(0.5)
        take(1.0)  # anything beyond what was expected shows up too
    finally:
        consumer.close()
    return [(key, org, ids) for _, _, key, org, ids in sorted(found)]


def first_seen_by_org(messages: list[tuple[str, str, list[str]]]) -> dict[str, list[str]]:
    """Each organization's event ids in the order they first appear (a replay may repeat some)."""
    seen: set[str] = set()
    by_org: dict[str, list[str]] = {}
    for _, org, ids in messages:
        for event_id in ids:
            if event_id not in seen:
                seen.add(event_id)
                by_org.setdefault(org, []).append(event_id)
    return by_org


class Deliveries:
    """An ``on_delivery`` callback that records outcomes."""

    def __init__(self) -> None:
        self.ok: list[str] = []
        self.failed: list[tuple[str, DeliveryError]] = []
        self._lock = threading.Lock()

    def __call__(self, event: UsageEvent, error: DeliveryError | None) -> None:
        with self._lock:
            if error is None:
                self.ok.append(event.id)
            else:
                self.failed.append((event.id, error))


def sample(registry_value: float | None) -> float:
    return registry_value or 0.0


@pytest.fixture
def outage_broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    """A broker of this test alone, which it may stop and start again on the same port."""
    log = (tmp_path / "tansu.log").open("wb")
    broker = EmbeddedBroker(log=log)
    broker.start()
    yield broker
    broker.stop()
    log.close()


def test_every_record_once_keyed_by_organization(
    broker: EmbeddedBroker, tmp_path: Path, usage_record: UsageFactory
) -> None:
    settings = settings_for(broker.bootstrap_servers, tmp_path)
    asyncio.run(ensure_topics(settings))
    deliveries = Deliveries()
    sent: dict[str, list[str]] = {}
    with UsageProducer(settings, flush_on_exit=False) as producer:
        for n in range(1200):
            record = usage_record(organization_id=f"org-{n % 5}")
            producer.send(record, on_delivery=deliveries)
            sent.setdefault(record["organization_id"], []).append(record["id"])
        assert producer.flush(30) == 0
        assert producer.metrics.registry.get_sample_value("costops_producer_records_delivered_total") == 1200

    messages = read_events(settings, 1200)
    ids = [i for _, _, batch in messages for i in batch]
    assert sorted(ids) == sorted(i for batch in sent.values() for i in batch)  # each once
    assert all(key == org for key, org, _ in messages)
    assert first_seen_by_org(messages) == sent
    assert len(deliveries.ok) == 1200 and not deliveries.failed


def test_invalid_record_is_refused_naming_its_fields(broker: EmbeddedBroker, tmp_path: Path) -> None:
    settings = settings_for(broker.bootstrap_servers, tmp_path)
    with UsageProducer(settings, flush_on_exit=False) as producer:
        with pytest.raises(EventValidationError) as caught:
            producer.send({"provider": "openai", "model": "gpt-4o", "prompt_tokens": -1})
        assert "prompt_tokens" in caught.value.field_errors
        assert "organization_id" in caught.value.field_errors
        assert producer.metrics.registry.get_sample_value("costops_producer_records_sent_total") == 0


def test_outage_spools_and_replays_in_order(
    outage_broker: EmbeddedBroker, tmp_path: Path, usage_record: UsageFactory
) -> None:
    settings = settings_for(outage_broker.bootstrap_servers, tmp_path)
    asyncio.run(ensure_topics(settings))
    deliveries = Deliveries()
    sent: dict[str, list[str]] = {}
    producer = UsageProducer(settings, delivery_timeout_s=3, linger_s=0.02, flush_on_exit=False)

    def send(n: int) -> float:
        record = usage_record(organization_id=f"org-{n % 4}")
        began = time.perf_counter()
        producer.send(record, on_delivery=deliveries)
        took = time.perf_counter() - began
        sent.setdefault(record["organization_id"], []).append(record["id"])
        return took

    try:
        for n in range(200):
            send(n)
        assert producer.flush(30) == 0
        before = first_seen_by_org(read_events(settings, 200))
        assert before == sent  # the broker's memory goes with it: what it had is checked now

        outage_broker.stop()
        sent.clear()
        slowest = 0.0
        for n in range(3000):
            slowest = max(slowest, send(n))
            if n % 100 == 0:
                time.sleep(0.05)  # a service's steady trickle across the outage
        # Blocking on the broker would take the delivery timeout (3 s); the bound leaves room
        # for a loaded CI machine's scheduling pauses (0.2 s seen) without hiding a block.
        assert slowest < 1.0, f"send() blocked {slowest:.3f}s while the broker was down"
        registry = producer.metrics.registry
        deadline = time.monotonic() + 30
        while sample(registry.get_sample_value("costops_producer_records_spooled_total")) < 3000:
            assert time.monotonic() < deadline, "records were not spooled"
            time.sleep(0.2)
        assert list((settings.data_dir / "spool" / settings.kafka.usage_topic).glob("segment-*.log"))
        assert sample(registry.get_sample_value("costops_producer_spool_bytes")) > 0

        restarted = EmbeddedBroker(port=outage_broker.port)
        restarted.start()
        outage_broker._process = restarted.process  # the fixture stops it
        asyncio.run(ensure_topics(settings))
        assert producer.flush(90) == 0
    finally:
        producer.close(5)

    after = first_seen_by_org(read_events(settings, 3000))
    assert after == sent  # none lost, in order per organization
    assert len(deliveries.ok) == 3200 and not deliveries.failed
    assert not list((settings.data_dir / "spool" / settings.kafka.usage_topic).glob("segment-*.log"))


def test_new_producer_replays_what_a_closed_one_spooled(tmp_path: Path, usage_record: UsageFactory) -> None:
    port = free_port()
    settings = settings_for(f"127.0.0.1:{port}", tmp_path)
    spool_dir = tmp_path / "spool"
    first = UsageProducer(settings, spool_dir=spool_dir, delivery_timeout_s=2, flush_on_exit=False)
    records = [usage_record(organization_id=f"org-{n % 3}") for n in range(700)]
    for record in records:
        first.send(record)
    assert first.close(timeout=1) == 700  # the broker is down: all of them stay in the spool
    assert list(spool_dir.glob("segment-*.log"))

    broker = EmbeddedBroker(port=port)
    broker.start()
    try:
        asyncio.run(ensure_topics(settings))
        second = UsageProducer(settings, spool_dir=spool_dir, flush_on_exit=False)
        assert second.flush(60) == 0
        second.close()
        messages = read_events(settings, 700)
    finally:
        broker.stop()
    expected: dict[str, list[str]] = {}
    for record in records:
        expected.setdefault(record["organization_id"], []).append(record["id"])
    assert first_seen_by_org(messages) == expected
    assert not list(spool_dir.glob("segment-*.log"))


def test_full_spool_refuses_records_with_a_clear_error(tmp_path: Path, usage_record: UsageFactory) -> None:
    settings = settings_for(f"127.0.0.1:{free_port()}", tmp_path)  # nothing listens there
    deliveries = Deliveries()
    producer = UsageProducer(settings, spool_max_bytes=20_000, delivery_timeout_s=1, flush_on_exit=False)
    try:
        deadline = time.monotonic() + 30
        with pytest.raises(SpoolFullError, match=r"spool .* is full"):
            while time.monotonic() < deadline:
                producer.send(usage_record(), on_delivery=deliveries)
                time.sleep(0.002)
        registry = producer.metrics.registry
        assert registry.get_sample_value("costops_producer_records_rejected_total", {"reason": "spool_full"}) == 1
        # The batch that did not fit was accepted earlier: its records failed loudly, not silently.
        assert deliveries.failed and all(isinstance(e, SpoolFullError) for _, e in deliveries.failed)
        assert registry.get_sample_value("costops_producer_records_failed_total") == len(deliveries.failed)
    finally:
        producer.close(timeout=0.5)


def test_readme_example(broker: EmbeddedBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_for(broker.bootstrap_servers, tmp_path)
    asyncio.run(ensure_topics(settings))
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap_servers)
    monkeypatch.setenv("KAFKA__IDEMPOTENT_PRODUCER", "false")  # Tansu
    monkeypatch.setenv("KAFKA__USAGE_TOPIC", settings.kafka.usage_topic)
    monkeypatch.setenv("COSTOPS_DATA_DIR", str(tmp_path))
    assert llm_cost_ops.UsageProducer is UsageProducer  # the snippet's import is the real one
    namespace: dict[str, Any] = {}
    assert README_EXAMPLE in (Path(__file__).parents[2] / "README.md").read_text()
    exec(README_EXAMPLE, namespace)
    producer = namespace["producer"]
    try:
        assert producer.flush(30) == 0
    finally:
        producer.close()
    (message,) = read_events(settings, 1)
    assert message[:2] == ("org-123", "org-123")


def test_outage_then_duplicate_replay_lands_exactly_once(
    pipeline: ApiPipeline, tmp_path: Path, usage_record: UsageFactory
) -> None:
    """End to end: records spooled while Kafka was unreachable, replayed, and replayed once more
    (as after a lost acknowledgement) are stored once each by the real worker and sink."""
    env = pipeline.env
    live = settings_for(env["KAFKA_BOOTSTRAP_SERVERS"], tmp_path)
    live = live.model_copy(update={"kafka": live.kafka.model_copy(update={"usage_topic": env["KAFKA__USAGE_TOPIC"]})})
    down = live.model_copy(
        update={"kafka": live.kafka.model_copy(update={"bootstrap_servers": f"127.0.0.1:{free_port()}"})}
    )
    spool_dir = tmp_path / "spool"
    offline = UsageProducer(down, spool_dir=spool_dir, delivery_timeout_s=1, flush_on_exit=False)
    for n in range(300):
        offline.send(usage_record(organization_id=f"org-e2e-{n % 3}"))
    assert offline.close(timeout=0.5) == 300
    shutil.copytree(spool_dir, tmp_path / "spool-copy", ignore=shutil.ignore_patterns(".lock"))

    with pipeline.worker("service-producer-worker"):
        with UsageProducer(live, spool_dir=spool_dir, flush_on_exit=False) as replaying:
            for n in range(200):
                replaying.send(usage_record(organization_id=f"org-e2e-{n % 3}"))
            assert replaying.flush(60) == 0
        with UsageProducer(live, spool_dir=tmp_path / "spool-copy", flush_on_exit=False) as again:
            assert again.flush(60) == 0  # the same 300 events a second time

        def stored() -> int:
            return int(pipeline.api.get("/api/v1/usage/stats", params={"start_date": "2025-01-01"}).json()["events"])

        wait_for(lambda: stored() >= 500, "the producer's 500 events stored")
        time.sleep(3)  # duplicates, had they been counted, would have landed by now
        assert stored() == 500
