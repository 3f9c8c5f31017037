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
import time

from llm_cost_ops.cli.console import err, out
from llm_cost_ops.embedded import EmbeddedPipeline, StartupError
from llm_cost_ops.runtime import Runtime
from llm_cost_ops.settings import Settings


class Supervisor:
    """``cost-ops up``: the embedded pipeline with a terminal around it."""

    def __init__(self, settings: Settings, demo_rate: float | None) -> None:
        self._settings = settings
        self._demo_rate = demo_rate
        self._pipeline = EmbeddedPipeline(settings, out)
        self._stopping = False

    def run(self) -> int:
        existing = Runtime.read(self._settings.runtime_file)
        if existing is not None:
            raise StartupError(
                f"a pipeline is already running from {self._pipeline.data_dir} "
                f"(pid {existing.pid}, API {existing.api_url})"
            )
        # SIGINT too, explicitly: a process started in the background of a script inherits
        # SIGINT ignored, and Python then raises no KeyboardInterrupt for it.
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)
        try:
            self._start()
            return self._watch()
        except KeyboardInterrupt:
            return 0
        finally:
            self._stop()

    def _on_signal(self, signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    def _start(self) -> None:
        pipeline = self._pipeline
        key_file = self._settings.admin_key_file
        had_key = key_file.exists()
        pipeline.start()
        assert pipeline.broker is not None
        Runtime(
            pid=os.getpid(),
            api_url=pipeline.api_url,
            kafka_bootstrap_servers=pipeline.broker.bootstrap_servers,
            worker_url=pipeline.worker_url,
        ).write(self._settings.runtime_file)
        if self._demo_rate is not None:
            pipeline.spawn("demo", ["demo", "--rate", str(self._demo_rate)])
            out(f"[demo] publishing a synthetic stream at up to {self._demo_rate:g} events/s")
        out("")
        out(f"LLM-CostOps is up. API: {pipeline.api_url}")
        if not had_key and key_file.exists():  # this start made the admin key: show it, once
            out(f"Admin API key (shown once; kept in {key_file}, mode 0600; the CLI uses it):")
            out(f"  {key_file.read_text().strip()}")
        elif self._settings.auth.admin_key is None:
            out(f"Admin API key: in {key_file} (the CLI uses it)")
        out("  cost-ops ingest --file usage.json    cost-ops summary --period last-30-days")
        out(f"Logs: {pipeline.logs}. Press Ctrl-C to stop.")

    def _watch(self) -> int:
        while True:
            problem = self._pipeline.failed(allow_exit=frozenset({"demo"}))
            if problem is not None:
                err(f"error: {problem}")
                return 1
            time.sleep(0.5)

    def _stop(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        # A second Ctrl-C must not abandon children half-stopped (they hold ports and the chDB path).
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        out("stopping...")
        try:
            self._pipeline.stop()
        finally:
            self._settings.runtime_file.unlink(missing_ok=True)
        out("stopped.")
