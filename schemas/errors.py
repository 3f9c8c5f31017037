"""Errors of the data layer: invalid events and undecodable bytes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from llm_cost_ops.errors import InvalidInputError, PipelineError, UnavailableError

M = TypeVar("M", bound=BaseModel)


class EventValidationError(InvalidInputError):
    """A usage event broke a validation rule; ``field_errors`` names every bad field."""

    @classmethod
    def from_pydantic(cls, exc: ValidationError, prefix: str = "") -> EventValidationError:
        fields = field_errors(exc, prefix)
        names = ", ".join(fields)
        return cls(f"invalid usage record: {names}", fields)


class DecodeError(InvalidInputError):
    """Bytes that are not a message of a known schema (bad magic byte, unknown id, bad Avro)."""

    code = "DECODE_ERROR"


class SchemaRegistryError(PipelineError):
    """The Schema Registry refused a schema (e.g. incompatible): our deployment's fault, not
    the caller's. An id the registry does not know is a :class:`DecodeError` instead."""

    code = "SCHEMA_ERROR"


class SchemaRegistryUnavailableError(UnavailableError):
    """The Schema Registry did not answer, or failed (5xx); retry later."""

    code = "SCHEMA_REGISTRY_UNAVAILABLE"


def validated(model: type[M], data: object, what: str) -> M:
    """``model`` validated from ``data``; InvalidInputError ("invalid <what>: ...") naming each
    bad field otherwise."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        fields = field_errors(exc)
        raise InvalidInputError(f"invalid {what}: {', '.join(fields)}", fields) from None


def field_errors(exc: ValidationError, prefix: str = "") -> dict[str, str]:
    """Flatten pydantic errors to ``{"model.name": "is required"}``, one reason per field."""
    return field_errors_from(exc.errors(), prefix)


def field_errors_from(errors: Sequence[Any], prefix: str = "") -> dict[str, str]:
    """Same as :func:`field_errors` for an error list (FastAPI's request errors among them)."""
    result: dict[str, str] = {}
    for err in errors:
        loc = tuple(err["loc"])
        if loc and loc[0] in ("query", "body", "path", "header"):
            loc = loc[1:]
        path = _path(loc) or str(err.get("ctx", {}).get("field", ""))
        name = f"{prefix}.{path}" if prefix and path else (prefix or path or "body")
        result.setdefault(name, _reason(err))
    return result


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("function-after", "function-before", "function-plain"):
            continue
        else:
            out += f".{part}" if out else str(part)
    return out


_MESSAGES: dict[str, str] = {
    "missing": "is required",
    "greater_than_equal": "must be greater than or equal to {ge}",
    "greater_than": "must be greater than {gt}",
    "less_than_equal": "must be less than or equal to {le}",
    "string_too_short": "must not be empty",
    "string_too_long": "must be at most {max_length} characters",
    "too_long": "must have at most {max_length} items",
    "string_type": "must be a string",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be a whole number",
    "extra_forbidden": "is not a known field",
    "datetime_from_date_parsing": "must be an ISO 8601 timestamp with a time zone",
    "datetime_parsing": "must be an ISO 8601 timestamp with a time zone",
    "datetime_type": "must be an ISO 8601 timestamp with a time zone",
    "timezone_aware": "must include a time zone (e.g. Z or +00:00)",
    "string_pattern_mismatch": "must not be empty or contain whitespace",
    "model_type": "must be a JSON object",
    "list_type": "must be a list",
    "dict_type": "must be an object",
    "json_invalid": "must be valid JSON",
    "model_attributes_type": "must be a JSON object",
    "literal_error": "must be one of: {expected}",
    "decimal_parsing": "must be a number",
    "decimal_type": "must be a number",
    "finite_number": "must be a finite number",
    "decimal_max_places": "must have at most {decimal_places} decimal places",
    "union_tag_invalid": "must be one of: {expected_tags}",
    "union_tag_not_found": "is required (one of: per_token, per_request, tiered)",
}


def _reason(err: Any) -> str:
    template = _MESSAGES.get(err["type"])
    if err["type"] == "string_too_short" and err.get("ctx", {}).get("min_length", 1) > 1:
        template = "must be at least {min_length} characters"
    if template is not None:
        try:
            return template.format(**err.get("ctx", {}))
        except (KeyError, IndexError):
            pass
    msg = str(err["msg"])
    msg = msg.removeprefix("Value error, ")
    return msg[:1].lower() + msg[1:]
