"""Timers in Redis: one sorted set per bucket, claimed atomically, fired by the lease holder.

A claim leases the due timers (moves them TIMER_LEASE_MS ahead) instead of removing them;
a timer is removed once its handler ran (or failed, except for the kinds in RETRIED_KINDS).
A process that dies in between leaves the timer to fire again after the lease: timers fire
at least once, so every handler must be idempotent (a repeated push at worst). Game state
never depends on a timer firing on time: a crop is ripe by its timestamps, and a checkout
hold past its expiry is void on the player's next commit (commit.lua); a timer brings the
news, or the void to players nobody touches. Members read `kind|part|part...`.
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
TIMER_LEASE_MS = 60_000  # a claimed timer not done by then fires again
# Kinds whose failed handler is retried after the lease (others are dropped, logged): the
# void of a checkout hold must happen even if the store failed once under it.
RETRIED_KINDS = frozenset({"hold"})
FIRE_CONCURRENCY_MAX = 64
TICK_CHUNK_BUCKETS = 64  # buckets claimed, fired and marked done together within a tick
# Members are names, not payloads (every claim returns them): data goes in keys of its own.
MEMBER_BYTES_MAX = 512

Handler = Callable[[list[str], int, int], Awaitable[None]]  # (parts, due_ms, now_ms)


def member(kind: str, *parts: object) -> str:
    text = "|".join([kind, *(str(p) for p in parts)])
    if len(text.encode()) > MEMBER_BYTES_MAX:
        raise ValueError(f"timer member over {MEMBER_BYTES_MAX} bytes: {text[:64]!r}...")
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
        # Buckets looked at (one read each, due or not): the polling's fixed load on the
        # store, which metrics report and the bench leaves out of a request's commands.
        self.polls = 0

    async def _claim(self, now_ms: int, buckets: range) -> list[tuple[int, str, int]]:
        # A look first: most buckets have nothing due in most ticks, and a read costs the
        # store a fraction of a script call (which reads the same and then leases).
        self.polls += len(buckets)
        firsts = await self.store.call_many(
            *(("ZRANGE", timers(b), "-inf", now_ms, "BYSCORE", "LIMIT", 0, 1) for b in buckets)
        )
        due = [b for b, first in zip(buckets, firsts, strict=True) if first]
        lease_until = now_ms + TIMER_LEASE_MS
        calls = [
            self.store.script(
                "claim_timers", [timers(b)], [now_ms, CLAIM_PER_BUCKET_MAX, lease_until]
            )
            for b in due
        ]
        claimed: list[tuple[int, str, int]] = []
        for bucket, flat in zip(due, await asyncio.gather(*calls), strict=True):
            claimed += [
                (bucket, flat[i].decode(), int(flat[i + 1])) for i in range(0, len(flat), 2)
            ]
        return claimed

    async def claim(self, now_ms: int, buckets: range = range(BUCKETS)) -> list[tuple[str, int]]:
        """Every due timer of the given buckets, leased until now_ms + TIMER_LEASE_MS (one
        pipelined round trip). Nobody else claims them meanwhile; unless `tick` marks them
        done, they are due again when the lease ends."""
        return [(name, due_ms) for _, name, due_ms in await self._claim(now_ms, buckets)]

    async def tick(self, now_ms: int, clock: Callable[[], int] | None = None) -> TickReport:
        """Claim, fire and mark done the due timers of every bucket, TICK_CHUNK_BUCKETS at a
        time. With `clock`, each chunk claims what is due by then: a bucket is visited at
        about the same point of every tick, so a timer waits about one interval at most,
        not an interval plus the whole tick's work (claims first, then every firing)."""
        report = TickReport()
        for start in range(0, BUCKETS, TICK_CHUNK_BUCKETS):
            chunk_now_ms = max(now_ms, clock()) if clock is not None else now_ms
            await self._tick_chunk(
                chunk_now_ms, range(start, min(start + TICK_CHUNK_BUCKETS, BUCKETS)), report
            )
        self.fired_total += report.fired
        self.late_ms_max = max(self.late_ms_max, report.late_ms_max)
        return report

    async def _tick_chunk(self, now_ms: int, buckets: range, report: TickReport) -> None:
        claimed = await self._claim(now_ms, buckets)
        gate = asyncio.Semaphore(FIRE_CONCURRENCY_MAX)
        done: dict[int, list[str]] = {}

        async def fire(bucket: int, name: str, due_ms: int) -> None:
            kind, *parts = name.split("|")
            handler = self.handlers.get(kind)
            report.late_ms_max = max(report.late_ms_max, now_ms - due_ms)
            async with gate:
                try:
                    if handler is None:
                        raise LookupError(f"no handler for timer kind {kind!r}")
                    await handler(parts, due_ms, now_ms)
                    report.fired += 1
                except Exception:  # one bad timer must not stop the others
                    report.failed += 1
                    log.exception("timer %s failed", name)
                    if handler is not None and kind in RETRIED_KINDS:
                        return  # leased: it fires again when the lease ends
                done.setdefault(bucket, []).append(name)

        await asyncio.gather(*(fire(b, name, due_ms) for b, name, due_ms in claimed))
        lease_until = now_ms + TIMER_LEASE_MS
        await asyncio.gather(
            *(
                self.store.script(
                    "timer_done", [timers(b)], [x for n in names for x in (n, lease_until)]
                )
                for b, names in done.items()
            )
        )

    async def pending(self) -> int:
        counts = await asyncio.gather(
            *(self.store.call("ZCARD", timers(b)) for b in range(BUCKETS))
        )
        return sum(int(c) for c in counts)
