"""Exactly-once accounting under faults: real processes, the session's Tansu broker, chDB.

A publisher trickles N events of known exact cost into ``usage-events`` (a few percent of them
a second time, in other messages, as a producer's retry would; poison messages in between)
while the test, at random moments:

- SIGKILLs a worker three times, restarting it each time (two workers in one group, each
  killed in turn: its partitions move to the survivor and back; ``COSTOPS_FAULT_WORKERS=1``
  runs one);
- SIGKILLs the API+sink process while the sink is writing, and restarts it;
- makes ClickHouse refuse every write for a while (the table directories made immutable, so
  the engine's inserts fail as they do on a read-only or failed disk).

At the end, per organization and model, ClickHouse (read directly, after the pipeline stopped)
and the API both hold exactly the ground truth's cost, to the last decimal, and N distinct
events; the DLQ holds exactly the poison.

Tansu (0.6) hands a dead member's partitions on only after its session expired and a member
joined, so a killed process is restarted after its session timeout (docs/architecture.md,
"Delivery guarantees"). ``COSTOPS_FAULT_SOAK=1`` runs a longer variant (more events, kills).
The report prints the worker count with the figures.
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from llm_cost_ops.broker import EmbeddedBroker, free_port
from llm_cost_ops.settings import KafkaSettings, Settings
from llm_cost_ops.wire import build_codec
from schemas.usage import UsageEvent

from fault_diagnosis import diagnose
from processes import Process, api_client, pipeline_env, query_stopped_chdb, wait_ok

pytestmark = pytest.mark.integration

SOAK = os.environ.get("COSTOPS_FAULT_SOAK") == "1"
WORKERS = int(os.environ.get("COSTOPS_FAULT_WORKERS", "2"))
"""Worker processes in the group. With 2, a killed worker's partitions move to the survivor
and back when it returns (docs/delivery.md, "Several workers")."""
EVENTS = 400_000 if SOAK else 100_000
ROUNDS = 4 if SOAK else 1
"""How many times the fault schedule runs."""
DUPLICATE_SHARE = Decimal("0.03")
POISON = 40
ORGANIZATIONS = 8
PRICES = {  # per million tokens (input, output): the rules the test adds
    "fault-small": (Decimal("0.15"), Decimal("0.6")),
    "fault-large": (Decimal("2.5"), Decimal("10")),
}
SESSION_S = 10.0
"""The group session timeout of the worker and the sink (streams/app.py; aiokafka's default)."""
SETTLE_S = 60.0


Totals = dict[tuple[str, str], tuple[int, Decimal]]
"""(organization, model) -> (events, cost)."""


def generate(seed: int = 11) -> list[UsageEvent]:
    rng = random.Random(seed)
    events = []
    for n in range(EVENTS):
        prompt, completion = rng.randint(1, 20_000), rng.randint(0, 5_000)
        events.append(
            UsageEvent.parse(
                {
                    "id": f"evt-{n:07d}",
                    "timestamp": f"2025-04-{1 + n % 28:02d}T{n % 24:02d}:{n % 60:02d}:00Z",
                    "provider": "openai",
                    "model": rng.choice(sorted(PRICES)),
                    "organization_id": f"org-fault-{n % ORGANIZATIONS}",
                    "prompt_tokens": prompt,
                    "completion_tokens": completion,
                }
            )
        )
    return events


def ground_truth(events: list[UsageEvent]) -> Totals:
    totals: Totals = {}
    for event in events:
        rate_in, rate_out = PRICES[event.model.name]
        cost = (event.prompt_tokens * rate_in + event.completion_tokens * rate_out) / 1_000_000
        count, total = totals.get((event.organization_id, event.model.name), (0, Decimal(0)))
        totals[(event.organization_id, event.model.name)] = (count + 1, total + cost)
    return totals


Message = tuple[bytes, bytes, list[str]]
"""Key, value, and the ids of the events it carries."""


def messages(settings: Settings, events: list[UsageEvent], rng: random.Random) -> tuple[list[Message], int]:
    """Batch messages of up to 250 events of one organization, then a share of the events
    again in other messages, and the poison; shuffled. Returns them and the repeats' count."""
    codec = build_codec(settings)
    by_org: dict[str, list[UsageEvent]] = {}
    for event in events:
        by_org.setdefault(event.organization_id, []).append(event)
    out: list[Message] = []
    repeated = 0

    def add(org: str, group: list[UsageEvent]) -> None:
        out.append((org.encode(), codec.encode_usage_batch(group), [event.id for event in group]))

    for org, group in by_org.items():
        for start in range(0, len(group), 250):
            add(org, group[start : start + 250])
        again = rng.sample(group, int(len(group) * DUPLICATE_SHARE))
        repeated += len(again)
        for start in range(0, len(again), 100):
            add(org, again[start : start + 100])
    rng.shuffle(out)  # per-token prices: the order within an organization does not matter
    for n in range(POISON):
        out.insert(rng.randrange(len(out)), (b"org-poison", b"poison %d" % n, []))
    return out, repeated


class Publisher(threading.Thread):
    """Publishes ``batch`` over about ``seconds``, so every fault lands mid-stream."""

    def __init__(self, settings: Settings, batch: list[Message], seconds: float) -> None:
        super().__init__(daemon=True)
        self.settings, self.batch, self.interval = settings, batch, seconds / len(batch)
        self.sent = 0
        self.positions: dict[str, list[tuple[int, int]]] = {}
        """Each event id's (partition, offset) on the usage topic, per message that carried it."""
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._publish())
        except BaseException as exc:  # reported by the test
            self.error = exc

    async def _publish(self) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=self.settings.kafka.bootstrap_servers, acks="all")
        await producer.start()
        try:
            for key, value, ids in self.batch:
                sent = await producer.send_and_wait(self.settings.kafka.usage_topic, value, key=key)
                for event_id in ids:
                    self.positions.setdefault(event_id, []).append((sent.partition, sent.offset))
                self.sent += 1
                await asyncio.sleep(self.interval)
        finally:
            await producer.stop()


@contextmanager
def clickhouse_refuses_writes(data_dir: Path) -> Iterator[int]:
    """Every MergeTree table directory immutable (``chattr +i``, which binds root too): each
    insert fails in the engine until the context ends. Yields the number of tables."""
    tables = [str(path.parent) for path in (data_dir / "clickhouse" / "store").glob("*/*/detached")]
    assert tables, f"no ClickHouse table under {data_dir}"
    subprocess.run(["chattr", "+i", *tables], check=True)
    try:
        yield len(tables)
    finally:
        subprocess.run(["chattr", "-i", *tables], check=True)


def clickhouse_totals(data_dir: Path) -> tuple[Totals, int, int]:
    """Totals read from the stopped pipeline's ClickHouse: FINAL per (organization, model), and
    the rows stored against the distinct ids."""
    groups = query_stopped_chdb(
        data_dir,
        "SELECT organization_id, model, count(), sum(total_cost) FROM costops.usage_costs FINAL "
        "WHERE organization_id LIKE 'org-fault-%' GROUP BY organization_id, model",
    )
    ((rows, distinct),) = query_stopped_chdb(
        data_dir, "SELECT count(), uniqExact(organization_id, event_id) FROM costops.usage_costs"
    )
    totals = {(str(org), str(model)): (int(str(count)), Decimal(str(cost))) for org, model, count, cost in groups}
    return totals, int(str(rows)), int(str(distinct))


def api_totals(client: httpx.Client, organizations: set[str]) -> Totals:
    totals: Totals = {}
    for org in organizations:
        summary = client.get("/api/v1/costs/summary", params={"organization_id": org}).json()
        for model in summary["by_model"]:
            totals[(org, model["name"])] = (model["requests"], Decimal(model["total_cost"]))
    return totals


@dataclass
class FaultLog:
    """What the test did, for its report."""

    done: list[str] = field(default_factory=list)
    worker_kills: int = 0
    sink_kills: int = 0
    outage_s: float = 0.0
    sink_failures: float = 0.0


@dataclass
class Faults:
    api: Process
    workers: list[Process]
    client: httpx.Client
    data_dir: Path
    rng: random.Random
    log: FaultLog

    def wait_worker_ready(self, worker: Process) -> None:
        wait_ok(self.client, f"http://127.0.0.1:{worker.env['WORKER__WEB_PORT']}/ready", worker.logs)

    def kill_worker(self, worker: Process) -> None:
        worker.kill()
        self.log.worker_kills += 1
        time.sleep(SESSION_S + 3)  # the survivor carries its own partitions meanwhile
        worker.start()
        self.wait_worker_ready(worker)
        self.log.done.append(f"SIGKILL {worker.name}, restarted")

    def kill_sink(self) -> None:
        before = self._stored()
        deadline = time.monotonic() + 30
        while self._stored() == before and time.monotonic() < deadline:
            time.sleep(0.05)  # kill while the sink is writing
        self.api.kill()
        self.log.sink_kills += 1
        time.sleep(SESSION_S + 3)
        self.api.start()
        wait_ok(self.client, "/ready", self.api.logs)
        self.log.done.append("SIGKILL api+sink while writing, restarted")

    def clickhouse_outage(self, seconds: float) -> None:
        started = time.monotonic()
        with clickhouse_refuses_writes(self.data_dir):
            deadline = time.monotonic() + 60
            while self.client.get("/ready").status_code == 200:  # the sink notices at its next write
                assert time.monotonic() < deadline, "the sink never noticed ClickHouse refusing writes"
                time.sleep(0.2)
            time.sleep(seconds)
            self.log.sink_failures = self._metric("costops_sink_flush_failures_total")
        refused = time.monotonic() - started
        self.log.outage_s += refused
        wait_ok(self.client, "/ready", self.api.logs)  # resumes by itself
        self.log.done.append(
            f"ClickHouse refused writes for {refused:.0f} s, the sink was writing again "
            f"{time.monotonic() - started - refused:.0f} s later"
        )

    def schedule(self) -> list[Callable[[], None]]:
        a, b = self.workers[0], self.workers[-1]
        return [
            lambda: self.kill_worker(a),
            lambda: self.kill_worker(b),
            self.kill_sink,
            lambda: self.clickhouse_outage(15),
            lambda: self.kill_worker(self.rng.choice(self.workers)),
        ]

    def _stored(self) -> int:
        try:
            return int(self.client.get("/api/v1/usage/stats").json()["events"])
        except httpx.TransportError:
            return -1

    def _metric(self, name: str) -> float:
        for line in self.client.get("/metrics").text.splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
        return 0.0


def settle(client: httpx.Client, expected_events: int, logs: Path) -> int:
    """Wait until the API shows every event (or time runs out), then a little more: anything
    late would show as extra."""
    deadline = time.monotonic() + SETTLE_S
    stored = 0
    while time.monotonic() < deadline:
        stored = int(client.get("/api/v1/usage/stats").json()["events"])
        if stored >= expected_events:
            break
        time.sleep(0.5)
    time.sleep(3)
    return int(client.get("/api/v1/usage/stats").json()["events"])


def missing_report(
    broker: EmbeddedBroker,
    env: dict[str, str],
    data_dir: Path,
    events: list[UsageEvent],
    positions: dict[str, list[tuple[int, int]]],
    logs: Path,
) -> str:
    """Which stage lost the events ClickHouse lacks (tests/integration/fault_diagnosis.py)."""
    stored = query_stopped_chdb(
        data_dir, "SELECT DISTINCT event_id FROM costops.usage_costs WHERE organization_id LIKE 'org-fault-%'"
    )
    missing = {event.id for event in events} - {str(row[0]) for row in stored}
    return diagnose(broker.bootstrap_servers, env, missing, positions, logs)


def test_exactly_once_through_kills_and_a_clickhouse_outage(broker: EmbeddedBroker, tmp_path: Path) -> None:
    seed = int(os.environ.get("COSTOPS_FAULT_SEED", random.randrange(1_000_000)))
    rng = random.Random(seed)
    tag = uuid.uuid4().hex[:8]
    api_port = free_port()
    env = pipeline_env(broker.bootstrap_servers, tmp_path, tag, KAFKA__PARTITIONS="4", API_PORT=str(api_port))
    settings = Settings(
        kafka=KafkaSettings(
            bootstrap_servers=broker.bootstrap_servers,
            usage_topic=env["KAFKA__USAGE_TOPIC"],
            partitions=4,
            idempotent_producer=False,
        )
    )
    events = generate()
    truth = ground_truth(events)
    batch, repeated = messages(settings, events, rng)
    api = Process("api", ["api", "--role", "all"], env, tmp_path)
    workers = [
        Process(name, ["worker"], {**env, "WORKER__WEB_PORT": str(free_port())}, tmp_path)
        for name in ("worker-a", "worker-b")[:WORKERS]
    ]
    data_dir = Path(env["COSTOPS_DATA_DIR"])
    log = FaultLog()
    started = time.monotonic()
    try:
        api.start()
        with api_client(f"http://127.0.0.1:{api_port}", 60) as client:
            wait_ok(client, "/ready", tmp_path)
            for model, (rate_in, rate_out) in PRICES.items():
                structure = {
                    "type": "per_token",
                    "input_price_per_million": str(rate_in),
                    "output_price_per_million": str(rate_out),
                }
                rule = {"provider": "openai", "model": model, "pricing_structure": structure}
                assert client.post("/api/v1/pricing", json=rule).status_code == 201
            faults = Faults(api, workers, client, data_dir, rng, log)
            for worker in workers:
                worker.start()
            for worker in workers:
                faults.wait_worker_ready(worker)

            steps = faults.schedule() * ROUNDS
            # Longer than the schedule (a step takes 20-30 s): every fault, the outage included, meets traffic.
            publisher = Publisher(settings, batch, seconds=len(steps) * 30)
            publisher.start()
            for step in steps:
                time.sleep(rng.uniform(1, 4))
                step()
            publisher.join(timeout=600)
            assert publisher.error is None, f"publishing failed: {publisher.error!r}"
            assert publisher.sent == len(batch)

            stored = settle(client, EVENTS, tmp_path)
            through_api = api_totals(client, {org for org, _ in truth})
            deadline = time.monotonic() + SETTLE_S
            dead: list[dict[str, object]] = []
            while time.monotonic() < deadline:  # the last poison may still be on its way
                dead = client.get("/api/v1/dlq", params={"limit": 1000}).json()["data"]
                if len(dead) >= POISON:
                    break
                time.sleep(0.5)
    finally:
        for process in [*workers, api]:
            process.stop()
    in_clickhouse, rows, distinct = clickhouse_totals(data_dir)

    lost, extra = max(0, EVENTS - stored), max(0, stored - EVENTS)
    print(
        f"\nfaults (seed {seed}, {time.monotonic() - started:.0f} s): {EVENTS:,} events in {len(batch):,} messages, "
        f"{repeated:,} published twice, {POISON} poison; {WORKERS} worker(s), SIGKILLed {log.worker_kills}x, "
        f"API+sink SIGKILLed {log.sink_kills}x, ClickHouse refusing writes {log.outage_s:.0f} s "
        f"({log.sink_failures:.0f} failed inserts retried)\n"
        f"  steps: {'; '.join(log.done)}\n"
        f"  stored {stored:,} distinct events (lost {lost}, double-counted {extra}); ClickHouse holds "
        f"{rows:,} rows for {distinct:,} ids before FINAL; dead letters {len(dead)}"
    )
    assert (lost, extra) == (0, 0), missing_report(broker, env, data_dir, events, publisher.positions, tmp_path)
    assert in_clickhouse == truth
    assert through_api == truth
    assert len(dead) == POISON
    assert {letter["kind"] for letter in dead} == {"DECODE_ERROR"}
