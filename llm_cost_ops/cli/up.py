"""``cost-ops up``: the whole pipeline on one machine.

Processes (each a child of this supervisor, logs under ``<data_dir>/logs/``):

1. the Tansu broker (memory storage) on a configured or free port;
2. ``cost-ops api --role all``: ingestion, queries and the ClickHouse sink in one process,
   because chDB serves one data path per process;
3. ``cost-ops worker``: the Faust pricing worker;
4. with ``--demo``, ``cost-ops demo``: a synthetic stream.

Ctrl-C (or SIGTERM) stops them in reverse order. If any child dies, everything stops and the
command exits non-zero, naming the child and its log.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx

from llm_cost_ops.broker import EmbeddedBroker, free_port, port_open
from llm_cost_ops.cli.console import err, out
from llm_cost_ops.errors import PipelineError
from llm_cost_ops.runtime import Runtime
from llm_cost_ops.settings import Settings


class StartupError(PipelineError):
    code = "STARTUP_ERROR"


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path


class Supervisor:
    """Starts, watches and stops the embedded pipeline's processes."""

    def __init__(self, settings: Settings, demo_rate: float | None) -> None:
        self._settings = settings
        self._demo_rate = demo_rate
        self._data_dir = settings.data_dir.resolve()
        self._logs = self._data_dir / "logs"
        self._children: list[Child] = []
        self._log_files: list[IO[bytes]] = []
        self._broker: EmbeddedBroker | None = None
        self._stopping = False

    def run(self) -> int:
        existing = Runtime.read(self._settings.runtime_file)
        if existing is not None:
            raise StartupError(
                f"a pipeline is already running from {self._data_dir} (pid {existing.pid}, API {existing.api_url})"
            )
        self._logs.mkdir(parents=True, exist_ok=True)
        signal.signal(signal.SIGTERM, self._on_signal)
        try:
            self._start_all()
            return self._watch()
        except KeyboardInterrupt:
            return 0
        finally:
            self._stop_all()

    def _on_signal(self, signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    def _log(self, name: str) -> tuple[IO[bytes], Path]:
        path = self._logs / f"{name}.log"
        handle = path.open("ab")
        self._log_files.append(handle)
        return handle, path

    def _start_all(self) -> None:
        s = self._settings
        api_port = s.api.port
        if port_open("127.0.0.1", api_port):
            raise StartupError(f"port {api_port} is in use; set API_PORT to a free port")
        step = "1/3 broker"
        out(f"[{step}] starting Tansu (embedded Kafka)...")
        broker_log, _ = self._log("broker")
        self._broker = EmbeddedBroker(s.embedded.broker_port, broker_log)
        self._broker.start()
        out(f"[{step}] listening on {self._broker.bootstrap_servers}")

        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": self._broker.bootstrap_servers,
            # Tansu's memory storage rejects InitProducerId: no idempotent producer here.
            "KAFKA__IDEMPOTENT_PRODUCER": "false",
            "COSTOPS_DATA_DIR": str(self._data_dir),
            "API_PORT": str(api_port),
        }
        api_url = f"http://{'127.0.0.1' if s.api.host in ('0.0.0.0', '::') else s.api.host}:{api_port}"
        out("[2/3 api+sink] starting (ClickHouse engine: chDB under data/clickhouse)...")
        self._spawn("api", ["api", "--role", "all"], env)
        self._wait_http(f"{api_url}/ready", "api", timeout_s=90)
        out(f"[2/3 api+sink] ready at {api_url}")

        worker_port = free_port()
        out("[3/3 worker] starting the Faust pricing worker...")
        self._spawn("worker", ["worker"], {**env, "WORKER__WEB_PORT": str(worker_port)})
        worker_url = f"http://127.0.0.1:{worker_port}"
        self._wait_http(f"{worker_url}/ready", "worker", timeout_s=90)
        out(f"[3/3 worker] consuming (metrics at {worker_url}/metrics)")

        Runtime(
            pid=os.getpid(),
            api_url=api_url,
            kafka_bootstrap_servers=self._broker.bootstrap_servers,
            worker_url=worker_url,
        ).write(self._settings.runtime_file)
        if self._demo_rate is not None:
            self._spawn("demo", ["demo", "--rate", str(self._demo_rate)], env)
            out(f"[demo] publishing a synthetic stream at up to {self._demo_rate:g} events/s")
        out("")
        out(f"LLM-CostOps is up. API: {api_url}  (docs: {api_url}/docs)")
        out("  cost-ops ingest --file usage.json    cost-ops summary --period last-30-days")
        out(f"Logs: {self._logs}. Press Ctrl-C to stop.")

    def _spawn(self, name: str, args: list[str], env: dict[str, str]) -> None:
        handle, path = self._log(name)
        process = subprocess.Popen(
            [sys.executable, "-m", "llm_cost_ops.cli.main", *args],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # Ctrl-C reaches the supervisor only; it stops children in order
        )
        self._children.append(Child(name, process, path))

    def _wait_http(self, url: str, name: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        child = self._children[-1]
        while time.monotonic() < deadline:
            if child.process.poll() is not None:
                raise StartupError(f"{name} exited with code {child.process.returncode}; see {child.log_path}")
            try:
                if httpx.get(url, timeout=2.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        raise StartupError(f"{name} was not ready within {timeout_s:.0f}s; see {child.log_path}")

    def _watch(self) -> int:
        while True:
            broker = self._broker.process if self._broker else None
            if broker is not None and broker.poll() is not None:
                err(f"error: the broker exited with code {broker.returncode}; see {self._logs / 'broker.log'}")
                return 1
            for child in self._children:
                code = child.process.poll()
                if code is None:
                    continue
                if child.name == "demo" and code == 0:
                    self._children.remove(child)
                    break
                err(f"error: {child.name} exited with code {code}; see {child.log_path}")
                return 1
            time.sleep(0.5)

    def _stop_all(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        # A second Ctrl-C must not abandon children half-stopped (they hold ports and the chDB path).
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        out("stopping...")
        for child in reversed(self._children):
            if child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)
                try:
                    child.process.wait(20)
                except subprocess.TimeoutExpired:
                    err(f"{child.name} did not stop in 20s; killing it")
                    child.process.kill()
                    child.process.wait()
        try:
            if self._broker is not None:
                self._broker.stop()
        finally:
            self._settings.runtime_file.unlink(missing_ok=True)
            for handle in self._log_files:
                handle.close()
        out("stopped.")
