"""The runtime file: how CLI commands find the pipeline that ``cost-ops up`` started."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from llm_cost_ops.settings import Settings


@dataclass(frozen=True)
class Runtime:
    pid: int
    api_url: str
    kafka_bootstrap_servers: str
    worker_url: str

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        tmp.replace(path)

    @classmethod
    def read(cls, path: Path) -> Runtime | None:
        """The runtime of a live ``up`` process, or None (no file, stale file, bad file)."""
        try:
            runtime = cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            return None
        return runtime if _alive(runtime.pid) else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def api_url(settings: Settings) -> str:
    """Where the API is: ``COSTOPS_API_URL``, else the embedded pipeline, else API_HOST:API_PORT."""
    if settings.api.url:
        return settings.api.url.rstrip("/")
    runtime = Runtime.read(settings.runtime_file)
    if runtime is not None:
        return runtime.api_url
    host = "127.0.0.1" if settings.api.host in ("0.0.0.0", "::") else settings.api.host
    return f"http://{host}:{settings.api.port}"
