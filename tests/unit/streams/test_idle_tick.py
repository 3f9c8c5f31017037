"""Idle ticks (streams/idle_tick.py): which partitions get one, and what a tick does to windows."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from llm_cost_ops.settings import WindowSettings
from streams.idle_tick import TICK_HEADER, IdleTicker, tick_ms
from streams.windows import DictWindows, TakeMessage, advance, settle

CONFIG = WindowSettings(sizes_s=(60, 3600), grace_s=60, idle_s=10)
NOW_MS = 1_800_000_000_000


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def ticker(marks: dict[int, int | None], clock: Clock, sent: list[tuple[int, int]]) -> IdleTicker:
    async def send(partition: int, ms: int) -> None:
        sent.append((partition, ms))

    return IdleTicker(CONFIG, marks.get, lambda: sorted(marks), send, clock, lambda: NOW_MS)


def test_only_idle_live_partitions_are_due() -> None:
    clock = Clock()
    live = NOW_MS - 30_000
    marks = {0: live, 1: live, 2: NOW_MS - 10 * 86_400_000, 3: None, 4: NOW_MS - 5_000}
    ticks = ticker(marks, clock, [])
    assert ticks.due(NOW_MS) == {}  # first seen now: idle from now on
    clock.now += 11
    ticks.saw([1])  # partition 1 just had a message
    # 2: a replay of old traffic; 3: nothing yet; 4: its watermark is past now - idle_s.
    assert ticks.due(NOW_MS) == {0: NOW_MS - 10_000}


def test_a_sent_tick_restarts_the_idle_clock() -> None:
    clock, sent = Clock(), []
    ticks = ticker({0: NOW_MS - 30_000}, clock, sent)
    ticks.due(NOW_MS)
    clock.now += 11
    assert asyncio.run(ticks.tick()) == 1 and len(sent) == 1
    assert asyncio.run(ticks.tick()) == 0


def test_tick_messages_are_recognised_by_their_header() -> None:
    assert tick_ms(SimpleNamespace(headers=[(TICK_HEADER, b"123")])) == 123
    assert tick_ms(SimpleNamespace(headers={TICK_HEADER: b"7"})) == 7
    assert tick_ms(SimpleNamespace(headers=[("content-type", b"x")])) is None
    assert tick_ms(SimpleNamespace(headers=None)) is None
    assert tick_ms(SimpleNamespace(headers=[(TICK_HEADER, b"nope")])) is None


def test_a_tick_moves_the_watermark_and_closes_windows_like_an_event() -> None:
    from test_windows import priced

    store = DictWindows()
    config = WindowSettings(sizes_s=(60,), grace_s=60)
    first = advance([TakeMessage(0, 0, priced({"at": 10}))], store, config, NOW_MS)
    settle(first, store)
    assert first.closed == []
    result = advance([TakeMessage(0, 1, None, tick_ms=119_000)], store, config, NOW_MS)
    assert result.closed == []  # 60 + 60 grace > 119
    result = advance([TakeMessage(0, 2, None, tick_ms=120_000)], store, config, NOW_MS)
    settle(result, store)
    assert [(w.key.start_s, w.key.dimension) for w in result.closed] == [(0, "model"), (0, "organization")]
    again = advance([TakeMessage(0, 2, None, tick_ms=120_000)], store, config, NOW_MS)
    assert again.closed == []  # a replayed tick changes nothing
