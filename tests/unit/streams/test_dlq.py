"""DLQ cursors, ids and headers (the Kafka side is tested in tests/integration/test_dlq.py)."""

from __future__ import annotations

import pytest

from schemas.dlq import REPLAYED_FROM, DeadLetter
from streams.dlq import parse_cursor, parse_ids


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
