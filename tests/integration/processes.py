"""Running the pipeline's real processes from tests: spawn, wait until ready, stop."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from llm_cost_ops.broker import free_port
from llm_cost_ops.settings import KafkaSettings


class Process:
    """One ``cost-ops <args>`` process that a test may SIGKILL and start again; each start logs
    to ``logs/<name>-<start>.log``."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], logs: Path) -> None:
        self.name, self.args, self.env, self.logs = name, args, env, logs
        self.starts = 0
        self._popen: subprocess.Popen[bytes] | None = None
        self._log: BinaryIO | None = None

    @property
    def pid(self) -> int:
        assert self._popen is not None, f"{self.name} was never started"
        return self._popen.pid

    def start(self) -> None:
        self.starts += 1
        self._log = (self.logs / f"{self.name}-{self.starts}.log").open("wb")
        self._popen = subprocess.Popen(
            [sys.executable, "-m", "llm_cost_ops.cli.main", *self.args],
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def kill(self) -> None:
        """SIGKILL: no clean-up, no leaving the consumer group, no flush."""
        assert self._popen is not None, f"{self.name} was never started"
        self._popen.kill()
        self._popen.wait(30)
        self._close_log()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 30 s."""
        if self._popen is not None and self._popen.poll() is None:
            self._popen.terminate()
            try:
                self._popen.wait(30)
            except subprocess.TimeoutExpired:
                self._popen.kill()
                self._popen.wait(30)
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


@contextmanager
def cost_ops_processes(commands: dict[str, list[str]], env: dict[str, str], logs: Path) -> Iterator[None]:
    """Run ``cost-ops <args>`` for each named command (see ``Process``); stop them in reverse
    order on exit."""
    processes = [Process(name, args, env, logs) for name, args in commands.items()]
    try:
        for process in processes:
            process.start()
        yield
    finally:
        for process in reversed(processes):
            process.stop()


def query_stopped_chdb(data_dir: Path, sql: str) -> list[list[object]]:
    """Rows of ``sql`` on a stopped pipeline's chDB data, read in a process of its own (chDB
    opens one data path per process); values come back as JSON (decimals as strings)."""
    script = (
        "import json, sys, clickhouse_connect\n"
        "client = clickhouse_connect.get_client(interface='chdb', path=sys.argv[1])\n"
        "rows = client.query(sys.argv[2]).result_rows\n"
        "print(json.dumps([[str(v) if not isinstance(v, int | float | type(None)) else v for v in r] for r in rows]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(data_dir / "clickhouse"), sql], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    rows: list[list[object]] = json.loads(done.stdout.strip().splitlines()[-1])
    return rows


async def group_offsets(
    bootstrap_servers: str, group: str, topic: str, partitions: int
) -> tuple[dict[int, int], dict[int, int | None]]:
    """The end offset of each partition of ``topic`` and ``group``'s committed offset there
    (read by a consumer that names the group but never joins it)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        ends = await consumer.end_offsets(tps)
        committed = {tp.partition: await consumer.committed(tp) for tp in tps}
    finally:
        await consumer.stop()
    return {tp.partition: ends[tp] for tp in tps}, committed


async def group_lag(bootstrap_servers: str, group: str, topic: str, partitions: int) -> int:
    """Messages of ``topic`` the consumer group has not committed yet."""
    ends, committed = await group_offsets(bootstrap_servers, group, topic, partitions)
    return sum(end - (committed[p] or 0) for p, end in ends.items())


def wait_consumed(bootstrap_servers: str, group: str, topic: str, partitions: int, timeout_s: float = 120) -> None:
    """Until the group has committed every message of ``topic`` (it has caught up)."""

    def caught_up() -> bool:
        # Tansu's end offsets can lag behind what was committed after a burst (docs/architecture.md).
        return asyncio.run(group_lag(bootstrap_servers, group, topic, partitions)) <= 0

    wait_for(caught_up, f"group {group} to consume all of {topic}", timeout_s, every_s=1)


def wait_for(condition: Callable[[], object], what: str, timeout_s: float = 120, every_s: float = 0.3) -> None:
    """Poll ``condition`` until it is true; fail naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(every_s)
    pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}")


def wait_ok(client: httpx.Client, path: str, logs: Path, timeout_s: float = 90) -> None:
    """Poll ``path`` until it answers 200; fail with the logs' location otherwise."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if client.get(path).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    pytest.fail(f"{path} not ready after {timeout_s:.0f} s; logs in {logs}")


ADMIN_KEY = "sk_test_integration_admin_key_0123456789abcdef"
"""The bootstrap admin key of every test pipeline (``COSTOPS_ADMIN_KEY``)."""
ADMIN_HEADERS = {"Authorization": f"Bearer {ADMIN_KEY}"}


def api_client(base_url: str, timeout_s: float = 60) -> httpx.Client:
    """An HTTP client of a test pipeline's API, with the admin key."""
    return httpx.Client(base_url=base_url, timeout=timeout_s, headers=ADMIN_HEADERS)


def tagged_kafka(bootstrap_servers: str, tag: str, **extra: Any) -> KafkaSettings:
    """Kafka settings with topics of this test alone (``tag``), four partitions, and no
    idempotent producer (Tansu refuses ``InitProducerId``); ``extra`` adds or overrides."""
    return KafkaSettings(
        bootstrap_servers=bootstrap_servers,
        usage_topic=f"usage-{tag}",
        priced_topic=f"priced-{tag}",
        dlq_topic=f"dlq-{tag}",
        control_topic=f"control-{tag}",
        windows_topic=f"windows-{tag}",
        alerts_topic=f"alerts-{tag}",
        partitions=4,
        idempotent_producer=False,
        **extra,
    )


def pipeline_env(bootstrap_servers: str, root: Path, tag: str, **extra: str) -> dict[str, str]:
    """The environment of a test pipeline's processes: the session broker, topics, groups and
    a data directory of its own (``tag``), quick rebalances; ``extra`` adds or overrides."""
    return {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap_servers,
        "KAFKA__USAGE_TOPIC": f"usage-{tag}",
        "KAFKA__PRICED_TOPIC": f"priced-{tag}",
        "KAFKA__DLQ_TOPIC": f"dlq-{tag}",
        "KAFKA__CONTROL_TOPIC": f"control-{tag}",
        "KAFKA__WINDOWS_TOPIC": f"windows-{tag}",
        "KAFKA__ALERTS_TOPIC": f"alerts-{tag}",
        "KAFKA__IDEMPOTENT_PRODUCER": "false",
        "KAFKA__SINGLE_RECORD_BATCHES": "true",
        "KAFKA__REBALANCE_TIMEOUT_S": "2",
        "WORKER__APP_ID": f"worker-{tag}",
        "SINK__GROUP_ID": f"sink-{tag}",
        "WEBHOOKS__GROUP_ID": f"webhooks-{tag}",
        "SINK__FLUSH_SECONDS": "0.2",
        "COSTOPS_DATA_DIR": str(root / "data"),
        "COSTOPS_ADMIN_KEY": ADMIN_KEY,
        "RATE_LIMIT_PER_SECOND": "100000",  # tests publish as fast as they can
        "RATE_LIMIT_BURST": "100000",
        **extra,
    }


@contextmanager
def worker_process(env: dict[str, str], logs: Path, name: str) -> Iterator[None]:
    """One ``cost-ops worker`` (its web port from ``env``), ready (partitions assigned) on entry."""
    with (
        cost_ops_processes({name: ["worker"]}, env, logs),
        httpx.Client(timeout=10) as client,
    ):
        wait_ok(client, f"http://127.0.0.1:{env['WORKER__WEB_PORT']}/ready", logs)
        yield


@dataclass
class ApiPipeline:
    """The API+sink process (role ``all``) on the session broker, with topics, groups and a
    data directory of its own; workers are started by the tests that need them."""

    api: httpx.Client
    env: dict[str, str]
    root: Path

    def worker(self, name: str, **extra: str) -> AbstractContextManager[None]:
        return worker_process({**self.env, **extra}, self.root, name)


@contextmanager
def api_pipeline(bootstrap_servers: str, root: Path) -> Iterator[ApiPipeline]:
    api_port = free_port()
    env = pipeline_env(
        bootstrap_servers,
        root,
        uuid.uuid4().hex[:8],
        KAFKA__PARTITIONS="2",
        WORKER__WEB_PORT=str(free_port()),
        API_PORT=str(api_port),
        COSTOPS_API_URL=f"http://127.0.0.1:{api_port}",
    )
    with (
        cost_ops_processes({"api": ["api", "--role", "all"]}, env, root),
        api_client(f"http://127.0.0.1:{api_port}") as client,
    ):
        wait_ok(client, "/ready", root)
        yield ApiPipeline(client, env, root)
