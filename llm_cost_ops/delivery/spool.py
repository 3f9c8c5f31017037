"""The producer's local spool: encoded messages kept on disk, in order, until Kafka has them.

Layout of ``spool_dir``::

    segment-00000000000000000001.log   append-only frames, oldest segment first
    segment-00000000000000000002.log
    cursor.json                        {"segment": 1, "offset": 4096}: everything before it is acknowledged
    .lock                              held (flock) by the one process that owns the spool

A frame is ``length (u32, big-endian) | crc32 (u32) | payload``, where the payload is
``key length (u16) | key | value`` and the CRC covers the payload. A process that crashed
mid-write leaves a truncated or corrupt last frame: reading stops there, logs it, and the
rest of that segment is skipped (a frame is written whole or not at all as far as we know).
Appends always go to a new segment after an open, so nothing is written after such a tail.

A segment is deleted only once every frame in it is acknowledged (the cursor moved past its
end). The cursor is rewritten atomically (write, then rename) on each :meth:`Spool.ack`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from llm_cost_ops.delivery.errors import SpoolFullError, SpoolLockedError

logger = logging.getLogger(__name__)

_FRAME = struct.Struct(">II")
_KEY_LEN = struct.Struct(">H")
_PREFIX = "segment-"
_SUFFIX = ".log"
_CURSOR = "cursor.json"


@dataclass(frozen=True)
class SpoolEntry:
    """One spooled message, with where it starts (``segment``, ``offset``) and ends (``end``)."""

    segment: int
    offset: int
    end: int
    key: bytes
    value: bytes

    @property
    def position(self) -> tuple[int, int]:
        return (self.segment, self.offset)

    @property
    def next_position(self) -> tuple[int, int]:
        return (self.segment, self.end)


def frame(key: bytes, value: bytes) -> bytes:
    """The bytes of one spooled message."""
    payload = _KEY_LEN.pack(len(key)) + key + value
    return _FRAME.pack(len(payload), zlib.crc32(payload)) + payload


class Spool:
    """An ordered, bounded, on-disk queue of ``(key, value)`` messages, owned by one process.

    Args:
        directory: where the segments live (created if missing).
        max_bytes: most bytes on disk; :meth:`append` raises :class:`SpoolFullError` past it.
        segment_bytes: a segment is closed, and a new one begun, once it is this large.
    """

    def __init__(self, directory: Path, max_bytes: int, segment_bytes: int = 8 * 1024 * 1024) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        directory.mkdir(parents=True, exist_ok=True)
        self._lock = (directory / ".lock").open("a+b")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise SpoolLockedError(f"spool {directory} is in use by another process") from None
        self._sizes: dict[int, int] = {n: self._path(n).stat().st_size for n in self._segment_ids()}
        self._cursor = self._read_cursor()
        # A fresh segment for this process: never append after a previous process's (maybe torn) tail.
        self._active = max(self._sizes, default=0) + 1
        self._writer: BinaryIO | None = None
        self._collect()

    @property
    def size_bytes(self) -> int:
        """Bytes on disk, acknowledged frames of a segment not yet deleted included."""
        return sum(self._sizes.values())

    def is_empty(self) -> bool:
        """No message is waiting for an acknowledgement."""
        return self._at_end(self._cursor)

    @property
    def cursor(self) -> tuple[int, int]:
        """The position of the oldest message not acknowledged yet."""
        return self._cursor

    def append(self, key: bytes, value: bytes) -> SpoolEntry:
        """Add one message at the end; :class:`SpoolFullError` if it does not fit in ``max_bytes``."""
        data = frame(key, value)
        if self.size_bytes + len(data) > self.max_bytes:
            raise SpoolFullError(
                f"producer spool {self.directory} is full ({self.size_bytes} of {self.max_bytes} bytes)",
                spool_bytes=self.size_bytes,
            )
        if self._writer is None or self._sizes.get(self._active, 0) >= self.segment_bytes:
            self._roll()
        assert self._writer is not None
        offset = self._sizes[self._active]
        self._writer.write(data)
        # Flushed to the OS at once: a crash of this process loses nothing written (no fsync:
        # a crash of the machine may lose the newest frames, which the next open detects).
        self._writer.flush()
        self._sizes[self._active] = offset + len(data)
        return SpoolEntry(self._active, offset, offset + len(data), key, value)

    def read(self, start: tuple[int, int] | None = None, max_entries: int = 1000) -> list[SpoolEntry]:
        """Up to ``max_entries`` messages in order from ``start`` (default: the cursor)."""
        segment, offset = start or self._cursor
        entries: list[SpoolEntry] = []
        for n in sorted(s for s in self._sizes if s >= segment):
            if n not in self._sizes:
                continue  # deleted meanwhile: it held only a torn tail
            begin = offset if n == segment else 0
            entries.extend(self._read_segment(n, begin, max_entries - len(entries)))
            if len(entries) >= max_entries:
                break
        self._collect()
        return entries

    def ack(self, entry: SpoolEntry) -> None:
        """Everything up to and including ``entry`` is acknowledged; segments wholly behind
        the cursor are deleted."""
        if entry.next_position <= self._cursor:
            return
        self._cursor = entry.next_position
        self._collect()
        tmp = self.directory / (_CURSOR + ".tmp")
        tmp.write_text(json.dumps({"segment": self._cursor[0], "offset": self._cursor[1]}))
        tmp.replace(self.directory / _CURSOR)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self.is_empty():
            self._collect()
        fcntl.flock(self._lock, fcntl.LOCK_UN)
        self._lock.close()

    def _path(self, n: int) -> Path:
        return self.directory / f"{_PREFIX}{n:020d}{_SUFFIX}"

    def _segment_ids(self) -> list[int]:
        ids = []
        for path in self.directory.glob(f"{_PREFIX}*{_SUFFIX}"):
            with contextlib.suppress(ValueError):
                ids.append(int(path.name[len(_PREFIX) : -len(_SUFFIX)]))
        return sorted(ids)

    def _read_cursor(self) -> tuple[int, int]:
        try:
            data = json.loads((self.directory / _CURSOR).read_text())
            return (int(data["segment"]), int(data["offset"]))
        except FileNotFoundError:
            return (min(self._sizes, default=0), 0)
        except (ValueError, KeyError, TypeError) as exc:
            # Replaying from the oldest segment is safe: downstream collapses duplicate event ids.
            logger.warning("unreadable spool cursor in %s, replaying every segment: %r", self.directory, exc)
            return (min(self._sizes, default=0), 0)

    def _roll(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._active += 1
        self._writer = self._path(self._active).open("ab")
        self._sizes[self._active] = 0

    def _at_end(self, position: tuple[int, int]) -> bool:
        segment, offset = position
        return all(n < segment or (n == segment and size <= offset) for n, size in self._sizes.items())

    def _collect(self) -> None:
        """Delete the segments every frame of which is acknowledged (the active one included:
        the next append then begins a new segment)."""
        segment, offset = self._cursor
        for n, size in sorted(self._sizes.items()):
            if n < segment or (n == segment and offset >= size):
                if n == self._active:
                    if self._writer is not None:
                        self._writer.close()
                        self._writer = None
                    self._active += 1
                self._path(n).unlink(missing_ok=True)
                del self._sizes[n]

    def _read_segment(self, n: int, offset: int, limit: int) -> list[SpoolEntry]:
        entries: list[SpoolEntry] = []
        size = self._sizes[n]
        with self._path(n).open("rb") as f:
            f.seek(offset)
            while len(entries) < limit and offset < size:
                header = f.read(_FRAME.size)
                length, crc = _FRAME.unpack(header) if len(header) == _FRAME.size else (0, 0)
                payload = f.read(length) if len(header) == _FRAME.size else b""
                if len(header) < _FRAME.size or len(payload) < length or zlib.crc32(payload) != crc or length < 2:
                    logger.warning(
                        "truncated or corrupt frame in spool segment %s at offset %d; skipping the %d bytes after it",
                        self._path(n).name,
                        offset,
                        size - offset,
                        extra={"operation": "spool_read", "offset": offset},
                    )
                    # The rest of the segment counts as read: acknowledging past it deletes it.
                    self._sizes[n] = offset
                    break
                (key_len,) = _KEY_LEN.unpack_from(payload)
                key = payload[2 : 2 + key_len]
                end = offset + _FRAME.size + length
                entries.append(SpoolEntry(n, offset, end, key, payload[2 + key_len :]))
                offset = end
        return entries
