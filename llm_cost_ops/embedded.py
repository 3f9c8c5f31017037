"""The embedded pipeline's processes on one machine: broker, API+sink, worker.

Used by ``cost-ops up`` (with a terminal UI around it) and ``cost-ops bench``. Children log to
``<data_dir>/logs/<name>.log`` and run in their own sessions, so a terminal's Ctrl-C reaches
only the parent, which stops them in reverse order, the broker last.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx

from llm_cost_ops.broker import EmbeddedBroker, free_port, port_open
from llm_cost_ops.errors import PipelineError
from llm_cost_ops.settings import Settings

Progress = Callable[[str], None]


class StartupError(PipelineError):
    code = "STARTUP_ERROR"


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path


class EmbeddedPipeline:
    """Starts, watches and stops the processes of one embedded pipeline.

    Args:
        settings: read for the data directory, API host/port and broker port.
        progress: receives one line per start-up step.
        extra_env: more environment for the API and worker (e.g. tuning for a benchmark).
    """

    def __init__(
        self, settings: Settings, progress: Progress, extra_env: dict[str, str] | None = None, workers: int = 1
    ) -> None:
        self._settings = settings
        self._workers = workers
        self._progress = progress
        self._extra_env = extra_env or {}
        self.data_dir = settings.data_dir.resolve()
        self.logs = self.data_dir / "logs"
        self.children: list[Child] = []
        self._log_files: list[IO[bytes]] = []
        self.broker: EmbeddedBroker | None = None
        self.env: dict[str, str] = {}
        self.api_url = ""
        self.worker_url = ""

    def start(self) -> None:
        s = self._settings
        if port_open("127.0.0.1", s.api.port):
            raise StartupError(f"port {s.api.port} is in use; set API_PORT to a free port")
        self.start_broker()
        self.recover()
        self.start_api()
        self.start_workers()

    def start_broker(self) -> None:
        s = self._settings
        api_port = s.api.port
        self.logs.mkdir(parents=True, exist_ok=True)
        self._progress("[1/3 broker] starting Tansu (embedded Kafka)...")
        self.broker = EmbeddedBroker(s.embedded.broker_port, self._log("broker")[0])
        self.broker.start()
        self._progress(f"[1/3 broker] listening on {self.broker.bootstrap_servers}")

        self.env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": self.broker.bootstrap_servers,
            # Tansu's memory storage rejects InitProducerId: no idempotent producer here.
            "KAFKA__IDEMPOTENT_PRODUCER": "false",
            "KAFKA__SINGLE_RECORD_BATCHES": "true",
            "COSTOPS_DATA_DIR": str(self.data_dir),
            "API_PORT": str(api_port),
            **self._extra_env,
        }
        host = "127.0.0.1" if s.api.host in ("0.0.0.0", "::") else s.api.host
        self.api_url = f"http://{host}:{api_port}"

    def recover(self, timeout_s: float = 600.0) -> None:
        """Seed the new broker from ClickHouse and the ingestion journal (llm_cost_ops/recovery.py)
        before anything consumes from it: ``cost-ops recover``, in a child of its own, because
        chDB serves one data path per process and the API opens it next."""
        self._progress("[recover] seeding the new broker from ClickHouse and the ingestion journal...")
        handle, path = self._log("recover")
        done = subprocess.run(
            [sys.executable, "-m", "llm_cost_ops.cli.main", "recover"],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=self.env,
            timeout=timeout_s,
            check=False,
        )
        if done.returncode != 0:
            raise StartupError(f"recovery failed with code {done.returncode}; see {path}")
        lines = path.read_text(errors="replace").strip().splitlines()
        self._progress(f"[recover] {lines[-1] if lines else 'done'}")

    def start_api(self) -> None:
        self._progress("[2/3 api+sink] starting (ClickHouse engine: chDB under data/clickhouse)...")
        self.spawn("api", ["api", "--role", "all"])
        self._wait_http(f"{self.api_url}/ready", timeout_s=90)
        self._progress(f"[2/3 api+sink] ready at {self.api_url}")

    def start_workers(self) -> None:
        urls = []
        for n in range(self._workers):
            name = "worker" if self._workers == 1 else f"worker-{n + 1}"
            self._progress(f"[3/3 {name}] starting the Faust pricing worker...")
            port = free_port()
            self.spawn(name, ["worker"], {"WORKER__WEB_PORT": str(port)})
            urls.append(f"http://127.0.0.1:{port}")
        # Workers of one group share the partitions; each is ready once it owns some.
        for url in urls:
            self._wait_http(f"{url}/ready", timeout_s=180)
        self.worker_url = urls[0]
        who = "worker" if self._workers == 1 else f"{self._workers} workers"
        self._progress(f"[3/3 {who}] consuming (metrics at {self.worker_url}/metrics)")

    def client_settings(self) -> Settings:
        """The settings of a client of this pipeline's broker (no idempotent producer: Tansu)."""
        if self.broker is None:
            raise StartupError("the broker is not started")
        kafka = self._settings.kafka.model_copy(
            update={"bootstrap_servers": self.broker.bootstrap_servers, "idempotent_producer": False}
        )
        return self._settings.model_copy(update={"kafka": kafka})

    def pids(self) -> dict[str, int]:
        found = {c.name: c.process.pid for c in self.children}
        if self.broker is not None and self.broker.process is not None:
            found["broker"] = self.broker.process.pid
        return found

    def _log(self, name: str) -> tuple[IO[bytes], Path]:
        path = self.logs / f"{name}.log"
        handle = path.open("ab")
        self._log_files.append(handle)
        return handle, path

    def spawn(self, name: str, args: list[str], env: dict[str, str] | None = None) -> None:
        """Start ``cost-ops <args>`` as a child named ``name``."""
        handle, path = self._log(name)
        process = subprocess.Popen(
            [sys.executable, "-m", "llm_cost_ops.cli.main", *args],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env={**self.env, **(env or {})},
            start_new_session=True,
        )
        self.children.append(Child(name, process, path))

    def _wait_http(self, url: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        child = self.children[-1]
        while time.monotonic() < deadline:
            if (problem := self.failed()) is not None:
                raise StartupError(problem)
            try:
                if httpx.get(url, timeout=2.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        raise StartupError(f"{url} was not ready within {timeout_s:.0f}s; see the logs in {child.log_path.parent}")

    def failed(self, allow_exit: frozenset[str] = frozenset()) -> str | None:
        """Why the pipeline is broken (a process exited), or None. Children named in
        ``allow_exit`` may end with code 0."""
        broker = self.broker.process if self.broker else None
        if broker is not None and broker.poll() is not None:
            return f"the broker exited with code {broker.returncode}; see {self.logs / 'broker.log'}"
        for child in self.children:
            code = child.process.poll()
            if code is None or (code == 0 and child.name in allow_exit):
                continue
            return f"{child.name} exited with code {code}; see {child.log_path}"
        return None

    def stop(self) -> None:
        """Stop children in reverse order (SIGTERM, SIGKILL after 20 s), then the broker."""
        for child in reversed(self.children):
            if child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)
                try:
                    child.process.wait(20)
                except subprocess.TimeoutExpired:
                    self._progress(f"{child.name} did not stop in 20s; killing it")
                    child.process.kill()
                    child.process.wait()
        try:
            if self.broker is not None:
                self.broker.stop()
        finally:
            for handle in self._log_files:
                handle.close()
