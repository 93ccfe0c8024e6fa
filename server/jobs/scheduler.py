"""Background jobs, each behind a Redis lease so one process runs it at once: interval
jobs in loops of our own (`every`), daily ones on APScheduler's cron trigger (`daily`).

Jobs: fire due timers, relay stale outbox orders, and the daily cron jobs the rules
ask for (evening streak reminder). Every job is bounded by its own per-run limits.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from server.store.lease import Leases

log = logging.getLogger(__name__)

Job = Callable[[], Awaitable[Any]]


class Scheduler:
    def __init__(self, leases: Leases) -> None:
        self.leases = leases
        self.apscheduler = AsyncIOScheduler()
        self.runs: dict[str, int] = {}
        self._running: set[asyncio.Task[Any]] = set()  # job runs in progress
        self._stopping = False
        self._every: list[tuple[str, float, int, Job]] = []
        self._loops: list[asyncio.Task[None]] = []

    async def _run(self, name: str, job: Job) -> None:
        """One run of a job whose lease this process holds; a failed run is logged and
        the next run tries again; a run cut short by stop() ends quietly."""
        task = asyncio.current_task()
        assert task is not None
        self._running.add(task)
        try:
            await job()
            self.runs[name] = self.runs.get(name, 0) + 1
        except asyncio.CancelledError:
            if not self._stopping:
                raise
        except Exception:
            log.exception("job %s failed", name)
        finally:
            self._running.discard(task)

    def every(self, name: str, interval_s: float, job: Job) -> None:
        """Run `job` every `interval_s` on whichever process holds the lease `name`.

        A loop task of our own, not APScheduler's interval trigger: with one instance at a
        time, that trigger skipped the run due while the last one overran (a 1.1 s timer
        tick made the next one start 2 s later); here an overrun starts the next run at once.
        """
        ttl_ms = int(interval_s * 3000)  # a holder that misses three runs loses the lease
        self._every.append((name, interval_s, ttl_ms, job))

    async def _repeat(self, name: str, interval_s: float, ttl_ms: int, job: Job) -> None:
        loop = asyncio.get_running_loop()
        due_s = loop.time() + interval_s
        while not self._stopping:
            await asyncio.sleep(max(0.0, due_s - loop.time()))
            due_s = loop.time() + interval_s
            try:
                held = await self.leases.hold(name, ttl_ms)
            except Exception as exc:  # noqa: BLE001 - the store is down: try at the next run
                log.warning("job %s: lease not taken: %r", name, exc)
                continue
            if held:
                await self._run(name, job)

    def daily(self, name: str, hour: int, minute: int, timezone: str, job: Job) -> None:
        """Run `job` once a day at hour:minute local time, on one process only."""

        async def once() -> None:
            if await self.leases.hold(name, 3_600_000):  # nobody else this hour
                await self._run(name, job)

        self.apscheduler.add_job(
            once,
            "cron",
            hour=hour,
            minute=minute,
            timezone=timezone,
            id=name,
            max_instances=1,
            coalesce=True,
        )

    def start(self) -> None:
        self.apscheduler.start()
        loop = asyncio.get_running_loop()
        self._loops = [loop.create_task(self._repeat(*every)) for every in self._every]

    async def stop(self) -> None:
        """No new runs; the runs in progress are cancelled and awaited (a timer tick or a
        relay pass cut short is finished by the next holder: timers are at least once,
        outbox orders stay until credited), without a traceback for each."""
        self._stopping = True
        if self.apscheduler.running:
            self.apscheduler.shutdown(wait=False)
        running = [*self._running, *self._loops]
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
