"""A player's growth state as the shell stores it (the `growth` field of the state hash).

Bounded by construction: sums per calendar month and event (at most MONTHS_KEPT_MAX months,
one entry per event of the rules), standing ("ever") events, today's counts, and the last
RECENT_MAX reports for the operators' lookup. Nothing grows with the number of reports.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from game_rules.rulefile.growth_sections import WINDOW_MONTHS_MAX

RECENT_MAX = 10  # reports kept for the operators' lookup, newest last
MONTHS_KEPT_MAX = WINDOW_MONTHS_MAX + 1  # the window, plus the current calendar year
EVENTS_PER_MONTH_MAX = 64  # event names per month: the rules allow 32, old rules add some
REF_LEN_MAX = 128

Sums = tuple[tuple[str, int, int], ...]  # (event, count, points), sorted by event
Recent = tuple[int, str, int, str]  # (at_ms, event, points added, ref)


@dataclass(frozen=True, slots=True)
class GrowthState:
    """shown: the value as of the last recompute (what the player sees and the level is
    computed from); level: the level index last shown (a change is pushed); period: the
    first day of the recompute period `shown` belongs to; pending: points added since.
    months: (YYYYMM, sums) oldest first; ever: sums of standing events; day, day_counts,
    day_reports: today's counts (caps per day, reports_per_day_max)."""

    shown: int = 0
    level: int = 0
    period: date | None = None
    pending: int = 0
    months: tuple[tuple[int, Sums], ...] = ()
    ever: Sums = ()
    day: date | None = None
    day_counts: tuple[tuple[str, int], ...] = ()
    day_reports: int = 0
    recent: tuple[Recent, ...] = ()

    def __post_init__(self) -> None:
        numbers = (self.shown, self.level, self.pending, self.day_reports)
        if any(n < 0 for n in numbers):
            raise ValueError(f"growth numbers must be >= 0: {self!r}")
        if len(self.months) > MONTHS_KEPT_MAX or len(self.recent) > RECENT_MAX:
            raise ValueError(f"growth history over its bounds: {self!r}")
        if any(len(sums) > EVENTS_PER_MONTH_MAX for _, sums in self.months):
            raise ValueError("growth month with too many events")
        months = [m for m, _ in self.months]
        if months != sorted(set(months)):
            raise ValueError(f"growth months must be unique and ascending, got {months}")

    def to_wire(self) -> dict[str, object]:
        return {
            "v": self.shown,
            "l": self.level,
            "p": _day_out(self.period),
            "q": self.pending,
            "m": [[month, _sums_out(sums)] for month, sums in self.months],
            "e": _sums_out(self.ever),
            "d": _day_out(self.day),
            "c": [list(pair) for pair in self.day_counts],
            "r": self.day_reports,
            "h": [list(entry) for entry in self.recent],
        }

    @classmethod
    def from_wire(cls, data: object) -> GrowthState:
        """Inverse of to_wire; anything else raises ValueError (the store is not trusted)."""
        keys = {"v", "l", "p", "q", "m", "e", "d", "c", "r", "h"}
        if not isinstance(data, dict) or set(data) != keys:
            raise ValueError(f"growth state must be a map with keys {sorted(keys)}, got {data!r}")
        months = tuple((_int(m[0]), _sums_in(m[1])) for m in _list(data["m"], 2))
        counts = tuple((_str(c[0]), _int(c[1])) for c in _list(data["c"], 2))
        recent = tuple(
            (_int(h[0]), _str(h[1]), _int(h[2]), _str(h[3])) for h in _list(data["h"], 4)
        )
        return cls(
            _int(data["v"]),
            _int(data["l"]),
            _day_in(data["p"]),
            _int(data["q"]),
            months,
            _sums_in(data["e"]),
            _day_in(data["d"]),
            counts,
            _int(data["r"]),
            recent,
        )


def _sums_out(sums: Sums) -> list[list[object]]:
    return [list(entry) for entry in sums]


def _sums_in(value: object) -> Sums:
    return tuple((_str(s[0]), _int(s[1]), _int(s[2])) for s in _list(value, 3))


def _list(value: object, width: int) -> list[list[object]]:
    if not isinstance(value, list) or not all(
        isinstance(item, list) and len(item) == width for item in value
    ):
        raise ValueError(f"growth state: expected a list of {width}-lists, got {value!r}")
    return value


def _int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"growth state: expected an integer, got {value!r}")
    return value


def _str(value: object) -> str:
    if not isinstance(value, str) or len(value) > REF_LEN_MAX:
        raise ValueError(f"growth state: expected a short string, got {value!r}")
    return value


def _day_out(day: date | None) -> str | None:
    return None if day is None else day.isoformat()


def _day_in(value: object) -> date | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"growth state: expected a date string or nil, got {value!r}")
    day = date.fromisoformat(value)
    if day.isoformat() != value:
        raise ValueError(f"growth state: dates are YYYY-MM-DD, got {value!r}")
    return day


def month_of(day: date) -> int:
    """YYYYMM: how months are named in the state."""
    return day.year * 100 + day.month
