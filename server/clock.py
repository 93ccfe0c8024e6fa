"""Clocks injected into the app: the rules never read time themselves."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now_ms(self) -> int: ...


class SystemClock:
    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


class OffsetClock:
    """Wall time plus an offset that tests and QA (MANOR_DEV_CLOCK=1) move forward.

    Only forward: moving back would let a player sign in twice for one business day.
    """

    def __init__(self, base: Clock | None = None, offset_ms: int = 0) -> None:
        self._base = base or SystemClock()
        self.offset_ms = offset_ms

    def now_ms(self) -> int:
        return self._base.now_ms() + self.offset_ms

    def advance(self, delta_ms: int) -> int:
        if delta_ms < 0:
            raise ValueError("the clock only moves forward")
        self.offset_ms += delta_ms
        return self.now_ms()


class FrozenClock:
    """A clock that stands still until told to move: unit and integration tests."""

    def __init__(self, now_ms: int) -> None:
        self._now_ms = now_ms

    def now_ms(self) -> int:
        return self._now_ms

    def advance(self, delta_ms: int) -> int:
        if delta_ms < 0:
            raise ValueError("the clock only moves forward")
        self._now_ms += delta_ms
        return self._now_ms
