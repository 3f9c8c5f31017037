"""Dead letters: list ``usage-dlq`` and replay it into ``usage-events`` after a fix."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field, model_validator

from api.deps import ContextDep, ProducerDep
from llm_cost_ops.errors import InvalidInputError
from schemas.dlq import DeadLetterPage
from streams.dlq import MAX_PAGE, DeadLetters, parse_cursor, parse_ids

router = APIRouter(prefix="/api/v1/dlq", tags=["dlq"])


@router.get("", response_model=DeadLetterPage)
async def list_dead_letters(
    context: ContextDep,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    kind: Annotated[str | None, Query(description="DECODE_ERROR or VALIDATION_ERROR")] = None,
) -> DeadLetterPage:
    """Dead letters oldest first (per partition), each with its reason, field errors and where
    it came from; ``id`` (``partition:offset``) is what a replay takes."""
    try:
        parse_cursor(cursor)
    except ValueError:
        raise InvalidInputError("invalid cursor", {"cursor": "must be a next_cursor from a previous page"}) from None
    return await DeadLetters(context.settings).page(cursor, limit, kind)


class ReplayRequest(BaseModel):
    """Either ``ids`` or ``all`` (optionally narrowed by ``kind``)."""

    model_config = ConfigDict(extra="forbid")

    ids: Annotated[list[str], Field(max_length=10_000)] | None = None
    all: bool = False
    kind: str | None = None

    @model_validator(mode="after")
    def _one_choice(self) -> ReplayRequest:
        if bool(self.ids) == self.all:
            raise ValueError("give ids, or all: true")
        return self


class ReplayResult(BaseModel):
    replayed: int
    ids: list[str]
    """The dead letters re-published to the usage topic (``partition:offset``)."""


@router.post("/replay", response_model=ReplayResult)
async def replay_dead_letters(request: ReplayRequest, context: ContextDep, producer: ProducerDep) -> ReplayResult:
    """Re-publish dead letters' original bytes to ``usage-events`` and wait for the broker's
    acknowledgement. Safe to repeat: an event counts once by id, and one still invalid goes
    back to the DLQ with its reason."""
    try:
        ids = parse_ids(request.ids) if request.ids else None
    except ValueError:
        raise InvalidInputError("invalid ids", {"ids": "each must be partition:offset, as listed"}) from None
    chosen = await DeadLetters(context.settings).originals(ids, request.kind)
    if ids is not None:
        missing = ids - parse_ids(found for found, *_ in chosen)
        if missing:
            names = ", ".join(f"{p}:{o}" for p, o in sorted(missing))
            raise InvalidInputError("unknown dead letters", {"ids": f"not in the DLQ: {names}"})
    await producer.publish_raw([(key, value, headers) for _, key, value, headers in chosen])
    context.metrics.dlq_replayed.inc(len(chosen))
    return ReplayResult(replayed=len(chosen), ids=[found for found, *_ in chosen])
