"""The producer's spool segments: order, acknowledgement, torn tails, the size bound, the lock."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from llm_cost_ops.delivery.errors import SpoolFullError, SpoolLockedError
from llm_cost_ops.delivery.spool import Spool, frame


def fill(spool: Spool, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        spool.append(f"org-{i % 3}".encode(), f"value-{i}".encode())


def values(spool: Spool) -> list[str]:
    return [e.value.decode() for e in spool.read(max_entries=10_000)]


def test_reads_back_in_order_across_segments(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=64)
    fill(spool, 20)
    assert len(list(tmp_path.glob("segment-*.log"))) > 3
    entries = spool.read(max_entries=100)
    assert [e.value.decode() for e in entries] == [f"value-{i}" for i in range(20)]
    assert entries[4].key == b"org-1"
    assert [e.value.decode() for e in spool.read(entries[5].next_position, max_entries=3)] == [
        "value-6",
        "value-7",
        "value-8",
    ]
    spool.close()


def test_partial_ack_keeps_the_rest_and_deletes_only_whole_segments(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=64)
    fill(spool, 20)
    segments = len(list(tmp_path.glob("segment-*.log")))
    entries = spool.read(max_entries=100)
    spool.ack(entries[6])
    assert values(spool) == [f"value-{i}" for i in range(7, 20)]
    left = len(list(tmp_path.glob("segment-*.log")))
    assert 0 < left < segments
    assert not spool.is_empty()
    spool.close()

    # A new process resumes at the persisted cursor.
    again = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=64)
    assert values(again) == [f"value-{i}" for i in range(7, 20)]
    again.ack(again.read(max_entries=100)[-1])
    assert again.is_empty()
    assert list(tmp_path.glob("segment-*.log")) == []
    assert again.size_bytes == 0
    again.close()


def test_appends_after_a_restart_come_after_the_old_messages(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    fill(spool, 3)
    spool.close()
    again = Spool(tmp_path, max_bytes=1 << 20)
    fill(again, 2, start=3)
    assert values(again) == [f"value-{i}" for i in range(5)]
    again.close()


def test_truncated_last_record_is_skipped_with_a_log(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    fill(spool, 3)
    spool.close()
    # A crash in the middle of a write: half of a fourth frame.
    (segment,) = tmp_path.glob("segment-*.log")
    with segment.open("ab") as f:
        f.write(frame(b"org-0", b"value-3")[:9])

    again = Spool(tmp_path, max_bytes=1 << 20)
    with caplog.at_level(logging.WARNING, logger="llm_cost_ops.delivery.spool"):
        assert values(again) == ["value-0", "value-1", "value-2"]
    assert "truncated or corrupt frame" in caplog.text
    fill(again, 1, start=4)
    entries = again.read(max_entries=100)
    assert [e.value.decode() for e in entries] == ["value-0", "value-1", "value-2", "value-4"]
    again.ack(entries[-1])
    assert again.is_empty()
    assert list(tmp_path.glob("segment-*.log")) == []
    again.close()


def test_corrupt_record_is_detected_by_its_checksum(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    fill(spool, 2)
    spool.close()
    (segment,) = tmp_path.glob("segment-*.log")
    data = bytearray(segment.read_bytes())
    data[-1] ^= 0xFF
    segment.write_bytes(bytes(data))
    again = Spool(tmp_path, max_bytes=1 << 20)
    assert values(again) == ["value-0"]
    again.close()


def test_max_bytes_refuses_what_does_not_fit(tmp_path: Path) -> None:
    size = len(frame(b"org-0", b"value-0"))
    spool = Spool(tmp_path, max_bytes=size * 3)
    fill(spool, 3)
    with pytest.raises(SpoolFullError) as caught:
        spool.append(b"org-0", b"value-3")
    assert caught.value.spool_bytes == size * 3
    assert values(spool) == ["value-0", "value-1", "value-2"]
    spool.ack(spool.read(max_entries=1)[0])  # one acknowledged, but its segment is still there
    with pytest.raises(SpoolFullError):
        spool.append(b"org-0", b"value-3")
    spool.ack(spool.read(max_entries=10)[-1])
    fill(spool, 3, start=3)
    assert values(spool) == ["value-3", "value-4", "value-5"]
    spool.close()


def test_one_process_per_directory(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20)
    with pytest.raises(SpoolLockedError):
        Spool(tmp_path, max_bytes=1 << 20)
    spool.close()
    Spool(tmp_path, max_bytes=1 << 20).close()
