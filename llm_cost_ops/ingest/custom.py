"""A mapping of one's own, from a TOML file: usage field -> path in the source message.

::

    id_from = ["trace", "span"]          # optional: the event id is derived from these values
                                         # (default: topic, partition and offset)
    [fields]                             # usage field = path (see llm_cost_ops.ingest.path)
    provider = "llm.vendor"
    model = "llm.model"
    organization_id = 'resource."tenant.id"'
    prompt_tokens = "usage.input"
    completion_tokens = "usage.output"
    timestamp = "ts"
    "metadata.route" = "http.route"      # nested fields as dotted names
    [defaults]                           # used where the path leads nowhere
    organization_id = "acme"
    [constants]                          # always these values
    source = { type = "billing-events" }

A path that leads nowhere leaves the field absent (its default, else validation names it).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from llm_cost_ops.errors import InvalidInputError
from llm_cost_ops.ingest.mapped import Mapped, MappingError, SourceRef, stable_id
from llm_cost_ops.ingest.path import MISSING, parse_path, resolve
from llm_cost_ops.ingest.provider_alias import canonical_provider
from schemas.usage import UsageEvent

_NESTED = {"model": ("name", "version", "context_window"), "source": ("type", "endpoint")}


class CustomMapping:
    """A TOML mapping (see the module docstring), checked when it is loaded.

    Args:
        fields: usage field (dotted for nested ones) -> path steps.
        defaults: usage field -> value where its path leads nowhere.
        constants: usage field -> value always.
        id_from: paths whose values make the event id.
    """

    def __init__(
        self,
        fields: dict[str, tuple[str | int, ...]],
        defaults: dict[str, Any],
        constants: dict[str, Any],
        id_from: list[tuple[str | int, ...]],
    ) -> None:
        self._fields, self._defaults, self._constants, self._id_from = fields, defaults, constants, id_from

    @classmethod
    def load(cls, path: Path) -> CustomMapping:
        """Read and check a mapping file; :class:`InvalidInputError` names each bad entry."""
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidInputError(f"cannot read the mapping {path}", {"mapping": str(exc)}) from None
        except tomllib.TOMLDecodeError as exc:
            raise InvalidInputError(f"the mapping {path} is not valid TOML", {"mapping": str(exc)}) from None
        problems: dict[str, str] = {}
        unknown = set(data) - {"fields", "defaults", "constants", "id_from"}
        for name in sorted(unknown):
            problems[name] = "is not a known section (fields, defaults, constants, id_from)"
        fields: dict[str, tuple[str | int, ...]] = {}
        for name, text in _flatten(data.get("fields", {})).items():
            if not _known_field(name):
                problems[f"fields.{name}"] = "is not a usage field"
            elif not isinstance(text, str):
                problems[f"fields.{name}"] = "must be a path (a string)"
            else:
                try:
                    fields[name] = parse_path(text)
                except ValueError as exc:
                    problems[f"fields.{name}"] = str(exc)
        values = {}
        for section in ("defaults", "constants"):
            values[section] = _flatten(data.get(section, {}))
            for name in values[section]:
                if not _known_field(name):
                    problems[f"{section}.{name}"] = "is not a usage field"
        id_from: list[tuple[str | int, ...]] = []
        raw_ids = data.get("id_from", [])
        if not isinstance(raw_ids, list) or not all(isinstance(p, str) for p in raw_ids):
            problems["id_from"] = "must be a list of paths"
        else:
            try:
                id_from = [parse_path(p) for p in raw_ids]
            except ValueError as exc:
                problems["id_from"] = str(exc)
        if problems:
            raise InvalidInputError(f"invalid mapping {path}", problems)
        return cls(fields, values["defaults"], values["constants"], id_from)

    def __call__(self, message: Any, source: SourceRef) -> list[Mapped]:
        flat: dict[str, Any] = dict(self._defaults)
        for name, steps in self._fields.items():
            value = resolve(message, steps)
            if value is not MISSING and value is not None:
                flat[name] = value
        flat.update(self._constants)
        record: dict[str, Any] = {}
        for name, value in flat.items():
            parent, dot, child = name.partition(".")
            if dot:
                record.setdefault(parent, {})[child] = value
            else:
                record[name] = value
        if "provider" in record:
            record["provider"] = canonical_provider(record["provider"])
        if "id" not in record:
            record["id"] = self._event_id(message, source)
        if isinstance(record["id"], MappingError):
            return [record["id"]]
        return [record]

    def _event_id(self, message: Any, source: SourceRef) -> str | MappingError:
        if not self._id_from:
            return source.event_id()
        parts = [resolve(message, steps) for steps in self._id_from]
        if any(part is MISSING or part is None for part in parts):
            return MappingError("the values of id_from are missing from the message")
        return stable_id("custom", *(str(part) for part in parts))


def _flatten(table: Any, prefix: str = "") -> dict[str, Any]:
    """``{"model": {"name": "x"}}`` -> ``{"model.name": "x"}``, except where the nested table is
    a whole value (a constant ``source = {type = ...}`` of a nested field, or metadata)."""
    result: dict[str, Any] = {}
    if not isinstance(table, dict):
        return result
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and (name in _NESTED or name == "metadata"):
            result.update(_flatten(value, f"{name}."))
        else:
            result[name] = value
    return result


def _known_field(name: str) -> bool:
    parent, dot, child = name.partition(".")
    if not dot:
        return parent in UsageEvent.model_fields
    if parent == "metadata":
        return bool(child)
    return child in _NESTED.get(parent, ())
