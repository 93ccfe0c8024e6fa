"""Background jobs on APScheduler, each behind a Redis lease so one process runs it at once.

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
        """Run `job` every `interval_s` on whichever process holds the lease `name`."""
        ttl_ms = int(interval_s * 3000)  # a holder that misses three runs loses the lease

        async def leased() -> None:
            if await self.leases.hold(name, ttl_ms):
                await self._run(name, job)

        self.apscheduler.add_job(
            leased,
            "interval",
            seconds=interval_s,
            id=name,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
        )

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

    async def stop(self) -> None:
        """No new runs; the runs in progress are cancelled and awaited (a timer tick or a
        relay pass cut short is finished by the next holder: timers are at least once,
        outbox orders stay until credited), without a traceback for each."""
        self._stopping = True
        if self.apscheduler.running:
            self.apscheduler.shutdown(wait=False)
        running = list(self._running)
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
