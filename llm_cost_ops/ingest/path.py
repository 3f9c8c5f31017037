"""JSONPath-like dotted paths into a decoded JSON message: ``a.b[0].c``, with quoted keys for
names that hold dots (``attributes."gen_ai.system"`` or ``attributes["gen_ai.system"]``)."""

from __future__ import annotations

import re
from typing import Any

_TOKEN = re.compile(
    r"""\s*(?:\.?"((?:[^"\\]|\\.)*)"|\[\s*"((?:[^"\\]|\\.)*)"\s*\]|\[\s*(-?\d+)\s*\]|\.?([^.\[\]"]+))"""
)

MISSING: Any = object()
"""What :func:`resolve` answers for a path that leads nowhere (``None`` is a JSON value)."""


def parse_path(path: str) -> tuple[str | int, ...]:
    """The steps of ``path``; ``ValueError`` when it is malformed. A leading ``$`` is allowed."""
    text = path.strip()
    text = text[1:] if text.startswith("$") else text
    steps: list[str | int] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            raise ValueError(f"malformed path {path!r} at character {pos + 1}")
        quoted, bracketed, index, plain = match.groups()
        if index is not None:
            steps.append(int(index))
        else:
            name = quoted if quoted is not None else bracketed if bracketed is not None else plain
            steps.append(name.replace('\\"', '"'))
        pos = match.end()
    if not steps:
        raise ValueError(f"empty path {path!r}")
    return tuple(steps)


def resolve(value: Any, steps: tuple[str | int, ...]) -> Any:
    """The value at ``steps`` inside ``value``, or :data:`MISSING`."""
    for step in steps:
        if isinstance(step, int):
            if not isinstance(value, list) or not -len(value) <= step < len(value):
                return MISSING
            value = value[step]
        elif isinstance(value, dict) and step in value:
            value = value[step]
        else:
            return MISSING
    return value
