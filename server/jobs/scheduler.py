"""Background jobs on APScheduler, each behind a Redis lease so one process runs it at once.

Jobs: fire due timers, relay stale outbox orders, and the daily cron jobs the rules
ask for (evening streak reminder). Every job is bounded by its own per-run limits.
"""

from __future__ import annotations

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

    def every(self, name: str, interval_s: float, job: Job) -> None:
        """Run `job` every `interval_s` on whichever process holds the lease `name`."""
        ttl_ms = int(interval_s * 3000)  # a holder that misses three runs loses the lease

        async def leased() -> None:
            if not await self.leases.hold(name, ttl_ms):
                return
            try:
                await job()
                self.runs[name] = self.runs.get(name, 0) + 1
            except Exception:  # a failed run is logged; the next run tries again
                log.exception("job %s failed", name)

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
            if not await self.leases.hold(name, 3_600_000):  # nobody else this hour
                return
            try:
                await job()
                self.runs[name] = self.runs.get(name, 0) + 1
            except Exception:
                log.exception("daily job %s failed", name)

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

    def stop(self) -> None:
        if self.apscheduler.running:
            self.apscheduler.shutdown(wait=False)
