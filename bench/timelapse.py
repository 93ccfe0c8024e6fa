"""A clock for the bench server: one business day passes every `day_ms` of real time.

With a normal clock only the first sign-in of a day credits coins; the rest are cheap
`already` reads. Time-lapse makes nearly every sign-in a real credit through commit.lua.
"""

from __future__ import annotations

import time

DAY_MS = 86_400_000


class TimeLapseClock:
    """`now_ms()` = `start_ms` + real elapsed time x (DAY_MS / `day_ms`); only moves forward."""

    def __init__(self, day_ms: float, start_ms: int | None = None) -> None:
        if day_ms <= 0:
            raise ValueError(f"day_ms must be positive, got {day_ms}")
        self.day_ms = day_ms
        self.speedup = DAY_MS / day_ms
        self.start_ms = time.time_ns() // 1_000_000 if start_ms is None else start_ms
        self._origin_ns = time.monotonic_ns()

    def now_ms(self) -> int:
        elapsed_ms = (time.monotonic_ns() - self._origin_ns) / 1_000_000
        return self.start_ms + int(elapsed_ms * self.speedup)
