"""TickBatch: what one event-loop tick writes goes out as one write, in order."""

from __future__ import annotations

import asyncio

from server.transport.tick_batch import TickBatch


async def test_one_tick_is_one_write_and_the_next_tick_another() -> None:
    sent: list[bytes] = []
    batch = TickBatch(sent.append)
    for n in range(3):
        batch.add(f"SUBSCRIBE {n};".encode())
    assert sent == []  # nothing before the tick ends
    await asyncio.sleep(0)
    assert sent == [b"SUBSCRIBE 0;SUBSCRIBE 1;SUBSCRIBE 2;"]
    batch.add(b"UNSUBSCRIBE 1;")
    await asyncio.sleep(0)
    assert sent[1:] == [b"UNSUBSCRIBE 1;"]
