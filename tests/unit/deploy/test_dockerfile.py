"""The Dockerfile, read by a line parser (no Docker engine here): multi-stage, the runtime
stage on python:3.11-slim as a non-root user, writes confined to /data, a HEALTHCHECK, and
``cost-ops`` as the entrypoint."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from deploy_files import ROOT

DOCKERFILE = ROOT / "Dockerfile"


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]

    def last(self, keyword: str) -> str | None:
        found = self.all(keyword)
        return found[-1] if found else None


def instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction: comments dropped, ``\\`` continuations joined."""
    result: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = (pending + stripped).strip()
        pending = ""
        keyword, _, args = full.partition(" ")
        result.append((keyword.upper(), " ".join(args.split())))
    assert not pending, "the Dockerfile ends inside a continued line"
    return result


def stages(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the build stages."""
    args: dict[str, str] = {}
    found: list[Stage] = []
    for keyword, rest in instructions(text):
        if keyword == "FROM":
            words = rest.split()
            words = [w for w in words if not w.startswith("--platform")]
            base = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m[1], m[0]), words[0])
            name = words[2] if len(words) > 2 and words[1].upper() == "AS" else None
            found.append(Stage(base, name))
        elif not found:
            if keyword == "ARG":
                key, _, value = rest.partition("=")
                args[key] = value
        else:
            found[-1].instructions.append((keyword, rest))
    return args, found


def exec_form(args: str) -> list[str]:
    """A JSON exec-form argument list (``["cost-ops"]``), else the shell words."""
    if args.startswith("["):
        value = json.loads(args)
        assert isinstance(value, list)
        return [str(v) for v in value]
    return shlex.split(args)


def runtime_problems(text: str) -> list[str]:
    _, built = stages(text)
    problems = []
    if len(built) < 2:
        problems.append("not multi-stage")
        return problems
    final = built[-1]
    if final.base != "python:3.11-slim":
        problems.append(f"runtime base {final.base}")
    if not any(args.startswith("--from=") for args in final.all("COPY")):
        problems.append("the runtime stage copies nothing from the builder")
    user = final.last("USER")
    if user is None or user.split(":")[0] in ("root", "0"):
        problems.append(f"runs as {user or 'root'}")
    check = final.last("HEALTHCHECK")
    if check is None or check.upper() == "NONE":
        problems.append("no HEALTHCHECK")
    entrypoint = final.last("ENTRYPOINT")
    if entrypoint is None or exec_form(entrypoint) != ["cost-ops"]:
        problems.append(f"ENTRYPOINT {entrypoint}")
    return problems


@pytest.fixture(scope="module")
def text() -> str:
    return DOCKERFILE.read_text()


def test_the_image_is_multi_stage_non_root_healthchecked_with_the_cli_as_entrypoint(text: str) -> None:
    assert runtime_problems(text) == []


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda t: t.replace("USER 10001:10001", "USER root"), "runs as root"),
        (lambda t: re.sub(r"HEALTHCHECK[^\n]*\\\n[^\n]*\n", "", t), "no HEALTHCHECK"),
        (lambda t: t.replace('ENTRYPOINT ["cost-ops"]', 'ENTRYPOINT ["python"]'), 'ENTRYPOINT ["python"]'),
    ],
    ids=["root", "no-healthcheck", "entrypoint"],
)
def test_a_broken_dockerfile_is_caught(text: str, edit: Callable[[str], str], problem: str) -> None:
    broken = edit(text)
    assert broken != text
    assert problem in runtime_problems(broken)


def test_the_runtime_user_is_uid_10001_and_owns_only_data(text: str) -> None:
    final = stages(text)[1][-1]
    assert final.last("USER") == "10001:10001"
    runs = " ".join(final.all("RUN"))
    assert "--uid 10001" in runs
    assert "chown 10001:10001 /data" in runs
    assert final.all("VOLUME") == ['["/data"]']
    assert final.last("WORKDIR") == "/data"
    env = " ".join(final.all("ENV"))
    for setting in ("COSTOPS_DATA_DIR=/data", "HOME=/data", "PYTHONDONTWRITEBYTECODE=1"):
        assert setting in env


def test_builder_installs_dependencies_from_pyproject_into_the_copied_venv(text: str) -> None:
    _, built = stages(text)
    builder, final = built[0], built[-1]
    assert builder.name == "builder"
    assert "pyproject.toml" in " ".join(builder.all("COPY"))
    runs = " ".join(builder.all("RUN"))
    assert "python -m venv /opt/venv" in runs
    assert "pip install --no-deps ." in runs
    assert "--from=builder /opt/venv /opt/venv" in final.all("COPY")
    # Every package of pyproject.toml's setuptools config is copied into the build context.
    copied = {args.split()[0] for args in builder.all("COPY")}
    for package in ("llm_cost_ops", "schemas", "streams", "sinks", "api", "benchmarks"):
        assert package in copied


def test_roles_are_chosen_by_the_command_and_the_healthcheck_script_is_shipped(text: str) -> None:
    final = stages(text)[1][-1]
    assert exec_form(final.last("CMD") or "") == ["api"]
    check = final.last("HEALTHCHECK") or ""
    assert "CMD" in check and "/opt/costops/healthcheck.py" in check
    assert "deploy/docker/healthcheck.py /opt/costops/healthcheck.py" in final.all("COPY")
    assert Path(ROOT / "deploy" / "docker" / "healthcheck.py").is_file()
    exposed = set(" ".join(final.all("EXPOSE")).split())
    assert {"8080", "8081", "6066"} <= exposed


def test_the_build_context_keeps_what_the_build_copies() -> None:
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    for needed in ("pyproject.toml", "README.md", "llm_cost_ops", "deploy/docker", "deploy"):
        assert needed not in ignored
    assert {".git", ".venv", "tests", ".env"} <= ignored
