"""The usage event: one LLM call, as a service reports it (the seeds' usage format).

Token conventions (OpenAI's, which the other providers map onto):
``cached_tokens`` (cache reads) and ``cache_write_tokens`` (tokens written to the prompt
cache, Anthropic's ``cache_creation_input_tokens``) are part of ``prompt_tokens``,
``reasoning_tokens`` are part of
``completion_tokens``, and ``total_tokens = prompt_tokens + completion_tokens``.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from schemas.errors import EventValidationError
from schemas.provider import allowed_providers

MAX_TOKENS = 10**12
MAX_TAGS = 50
MAX_METADATA_KEYS = 50
MAX_METADATA_VALUE = 1000
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
FUTURE_TOLERANCE = timedelta(days=1)

Identifier = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128, pattern=r"^[^\s]+$")]
Tag = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
TokenCount = Annotated[int, Field(ge=0, le=MAX_TOKENS)]


def _field_error(field: str, reason: str) -> PydanticCustomError:
    # A cross-field rule still names one field: schemas.errors reads ctx["field"].
    return PydanticCustomError("cross_field", reason, {"field": field})


def _now() -> datetime:
    return datetime.now(UTC)


def _to_millis(value: datetime) -> datetime:
    # Avro timestamp-millis and DateTime64(3) hold milliseconds: truncate once, here,
    # so the event that is validated is the event that is stored.
    value = value.astimezone(UTC)
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


class ModelRef(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    version: Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)] | None = None
    context_window: Annotated[int, Field(ge=1, le=100_000_000)] | None = None


class Source(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=50)]
    endpoint: Annotated[str, StringConstraints(max_length=500)] | None = None


class UsageEvent(BaseModel):
    """A validated usage event. Build it with :meth:`parse` to get the seeds' error format.

    Optional on input: ``id`` (a UUID is generated), ``timestamp`` and ``ingested_at``
    (now), ``total_tokens`` (computed), ``cached_tokens``/``cache_write_tokens``/``reasoning_tokens`` (0).
    ``model`` may be a plain name or ``{"name", "version", "context_window"}``.
    Validation context ``{"providers": frozenset}`` widens the accepted providers.
    """

    # validate_default: generated timestamps go through the same millisecond truncation.
    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    id: Identifier = Field(default_factory=lambda: str(uuid.uuid4()))
    timestamp: AwareDatetime = Field(default_factory=_now)
    provider: Annotated[str, StringConstraints(strip_whitespace=True, to_lower=True, min_length=1)]
    model: ModelRef
    organization_id: Identifier
    project_id: Identifier | None = None
    user_id: Identifier | None = None
    prompt_tokens: TokenCount
    completion_tokens: TokenCount
    total_tokens: TokenCount | None = None
    cached_tokens: TokenCount = 0
    cache_write_tokens: TokenCount = 0
    reasoning_tokens: TokenCount = 0
    latency_ms: Annotated[int, Field(ge=0, le=86_400_000)] | None = None
    tags: Annotated[list[Tag], Field(max_length=MAX_TAGS)] = Field(default_factory=list)
    metadata: dict[str, str] = Field(default_factory=dict)
    source: Source | None = None
    ingested_at: AwareDatetime = Field(default_factory=_now)

    @field_validator("model", mode="before")
    @classmethod
    def _model_from_name(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    @field_validator("provider")
    @classmethod
    def _known_provider(cls, value: str, info: ValidationInfo) -> str:
        context = info.context or {}
        allowed = context.get("providers") or allowed_providers()
        if value not in allowed:
            raise ValueError(f"must be one of: {', '.join(sorted(allowed))}")
        return value

    @field_validator("timestamp")
    @classmethod
    def _sane_timestamp(cls, value: datetime) -> datetime:
        value = _to_millis(value)
        if value < EARLIEST:
            raise ValueError("must not be before 2000-01-01")
        if value > _now() + FUTURE_TOLERANCE:
            raise ValueError("must not be more than one day in the future")
        return value

    @field_validator("ingested_at")
    @classmethod
    def _ingested_millis(cls, value: datetime) -> datetime:
        return _to_millis(value)

    @field_validator("metadata", mode="before")
    @classmethod
    def _metadata_scalars(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        if len(value) > MAX_METADATA_KEYS:
            raise ValueError(f"must have at most {MAX_METADATA_KEYS} keys")
        out: dict[str, str] = {}
        for key, item in value.items():
            if not isinstance(key, str) or not 0 < len(key) <= 100:
                raise ValueError("keys must be strings of 1 to 100 characters")
            if isinstance(item, bool):
                item = "true" if item else "false"
            elif isinstance(item, int | float):
                item = str(item)
            elif not isinstance(item, str):
                raise ValueError(f"value of {key!r} must be a string, number or boolean")
            if len(item) > MAX_METADATA_VALUE:
                raise ValueError(f"value of {key!r} must be at most {MAX_METADATA_VALUE} characters")
            out[key] = item
        return out

    @model_validator(mode="after")
    def _consistent_tokens(self) -> UsageEvent:
        expected = self.prompt_tokens + self.completion_tokens
        if self.total_tokens is None:
            object.__setattr__(self, "total_tokens", expected)
        elif self.total_tokens != expected:
            raise _field_error("total_tokens", f"must equal prompt_tokens + completion_tokens ({expected})")
        if self.cached_tokens > self.prompt_tokens:
            raise _field_error("cached_tokens", "must not exceed prompt_tokens")
        if self.cached_tokens + self.cache_write_tokens > self.prompt_tokens:
            raise _field_error("cache_write_tokens", "cached_tokens + cache_write_tokens must not exceed prompt_tokens")
        if self.reasoning_tokens > self.completion_tokens:
            raise _field_error("reasoning_tokens", "must not exceed completion_tokens")
        return self

    @classmethod
    def parse(cls, data: Any, providers: frozenset[str] | None = None, field_prefix: str = "") -> UsageEvent:
        """Validate one record; raise :class:`EventValidationError` naming every bad field."""
        try:
            return cls.model_validate(data, context={"providers": providers} if providers else None)
        except ValidationError as exc:
            raise EventValidationError.from_pydantic(exc, field_prefix) from None

    @property
    def tokens_total(self) -> int:
        # total_tokens is always set after validation; this spares callers the Optional.
        return self.total_tokens if self.total_tokens is not None else 0
