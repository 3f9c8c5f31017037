"""The image's HEALTHCHECK: ``GET /health`` on the port of the role this container runs.

One image serves every role, each on its own port: ``cost-ops api`` on ``--port`` or
``API_PORT`` (8080), ``cost-ops sink`` on ``--port`` (8081), ``cost-ops worker`` on
``WORKER__WEB_PORT`` (6066). The role is read from the running ``cost-ops`` process's command
line (PID 1, or a child of an init process); a port given as the first argument wins.
Standard library only: the slim image has no curl.
"""

from __future__ import annotations

import os
import sys
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

COMMANDS = ("api", "sink", "worker", "up")


def role_port(argv: Sequence[str], env: Mapping[str, str]) -> int:
    """The health port of a ``cost-ops`` command line (``argv`` starts at the program)."""
    args = list(argv[1:])
    command = next((arg for arg in args if arg in COMMANDS), "api")
    if "--port" in args:
        return int(args[args.index("--port") + 1])
    port_arg = next((arg for arg in args if arg.startswith("--port=")), None)
    if port_arg is not None:
        return int(port_arg.split("=", 1)[1])
    if command == "worker":
        return int(env.get("WORKER__WEB_PORT") or 6066)
    if command == "sink":
        return 8081
    return int(env.get("API_PORT") or 8080)


def running_command(proc: Path = Path("/proc")) -> list[str]:
    """The command line of the ``cost-ops`` process in this container (PID 1 first)."""
    pids = sorted((p for p in proc.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    for pid in pids:
        try:
            argv = (pid / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        words = [w.decode(errors="replace") for w in argv if w]
        for i, word in enumerate(words):
            if word.endswith("cost-ops"):
                return words[i:]
    return ["cost-ops", "api"]


def main(argv: Sequence[str]) -> int:
    port = int(argv[1]) if len(argv) > 1 else role_port(running_command(), os.environ)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=4) as response:
            return 0 if response.status == 200 else 1
    except OSError as exc:
        sys.stderr.write(f"unhealthy: port {port}: {exc}\n")
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
