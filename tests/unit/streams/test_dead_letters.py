"""DLQ cursors, ids and headers (the Kafka side is tested in tests/integration/test_dlq.py)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from schemas.dlq import REPLAYED_FROM, DeadLetter
from streams.dlq import _identity, parse_cursor, parse_ids


def test_cursor_round_trip() -> None:
    assert parse_cursor(None) == {}
    assert parse_cursor("0:12,3:4") == {0: 12, 3: 4}


@pytest.mark.parametrize("bad", ["0", "a:1", "0:1:2", "0:1,"])
def test_malformed_cursors_and_ids_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_cursor(bad)
    with pytest.raises(ValueError):
        parse_ids(bad.split(","))


def test_a_replayed_message_that_fails_again_says_where_it_came_from() -> None:
    letter = DeadLetter(kind="DECODE_ERROR", reason="bad", field_errors={})
    original = [("trace", b"t-1"), (REPLAYED_FROM, b"1:0"), ("x-dlq-reason", b"older reason")]
    headers = dict(letter.headers("usage", 0, 7, original))
    assert headers["trace"] == b"t-1"
    assert headers[REPLAYED_FROM] == b"1:0"
    assert headers["x-dlq-reason"] == b"bad"  # ours, not the older one
    assert headers["x-dlq-source-offset"] == b"7"


def record(partition: int, offset: int, headers: list[tuple[str, bytes]]) -> SimpleNamespace:
    return SimpleNamespace(partition=partition, offset=offset, headers=headers)


def test_a_message_dead_lettered_twice_is_one_dead_letter() -> None:
    """A worker that crashes before its commit dead-letters the message again after restart."""
    letter = DeadLetter(kind="DECODE_ERROR", reason="bad", field_errors={})
    first = record(0, 3, letter.headers("usage", 2, 40))
    again = record(0, 9, letter.headers("usage", 2, 40))
    other = record(0, 10, letter.headers("usage", 2, 41))
    in_batch = record(0, 11, DeadLetter("VALIDATION_ERROR", "bad", {}, batch_index=4).headers("usage", 2, 41))
    replayed = record(0, 12, letter.headers("usage", 2, 40, [(REPLAYED_FROM, b"0:3")]))
    identities = [_identity(r) for r in (first, again, other, in_batch, replayed)]
    assert identities[0] == identities[1]
    assert len(set(identities)) == 4
    foreign = record(1, 0, [])  # written by something else: its own position is its identity
    assert _identity(foreign) == ("dlq", "1", "0")
