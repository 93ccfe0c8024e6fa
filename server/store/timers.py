"""Timers in Redis: one sorted set per bucket, claimed atomically, fired by the lease holder.

A timer only pushes news ("your crop is ripe"); game state never depends on it, so a timer
lost to a crash costs a notification, not a coin. Members read `kind|part|part...`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from server.store.keys import BUCKETS, timers
from server.store.store import Store

log = logging.getLogger(__name__)

CLAIM_PER_BUCKET_MAX = 100  # per tick; the rest waits for the next tick
FIRE_CONCURRENCY_MAX = 64

Handler = Callable[[list[str], int, int], Awaitable[None]]  # (parts, due_ms, now_ms)


def member(kind: str, *parts: object) -> str:
    text = "|".join([kind, *(str(p) for p in parts)])
    if len(text) > 512:
        raise ValueError("timer member too long")
    return text


@dataclass
class TickReport:
    fired: int = 0
    failed: int = 0
    late_ms_max: int = 0


class Timers:
    def __init__(self, store: Store, handlers: dict[str, Handler]) -> None:
        self.store = store
        self.handlers = handlers
        self.fired_total = 0
        self.late_ms_max = 0

    async def claim(self, now_ms: int, buckets: range = range(BUCKETS)) -> list[tuple[str, int]]:
        """Every due timer of the given buckets, removed from Redis (one pipelined round trip)."""
        calls = [
            self.store.script("claim_timers", [timers(b)], [now_ms, CLAIM_PER_BUCKET_MAX])
            for b in buckets
        ]
        claimed: list[tuple[str, int]] = []
        for flat in await asyncio.gather(*calls):
            claimed += [(flat[i].decode(), int(flat[i + 1])) for i in range(0, len(flat), 2)]
        return claimed

    async def tick(self, now_ms: int) -> TickReport:
        report = TickReport()
        claimed = await self.claim(now_ms)
        gate = asyncio.Semaphore(FIRE_CONCURRENCY_MAX)

        async def fire(name: str, due_ms: int) -> None:
            kind, *parts = name.split("|")
            handler = self.handlers.get(kind)
            async with gate:
                try:
                    if handler is None:
                        raise LookupError(f"no handler for timer kind {kind!r}")
                    await handler(parts, due_ms, now_ms)
                    report.fired += 1
                except Exception:  # one bad timer must not stop the others
                    report.failed += 1
                    log.exception("timer %s failed", name)
            report.late_ms_max = max(report.late_ms_max, now_ms - due_ms)

        await asyncio.gather(*(fire(name, due_ms) for name, due_ms in claimed))
        self.fired_total += report.fired
        self.late_ms_max = max(self.late_ms_max, report.late_ms_max)
        return report

    async def pending(self) -> int:
        counts = await asyncio.gather(
            *(self.store.call("ZCARD", timers(b)) for b in range(BUCKETS))
        )
        return sum(int(c) for c in counts)
