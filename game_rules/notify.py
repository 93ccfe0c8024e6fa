"""Push-notification triggers for offline players: quiet hours, a daily cap, collapse keys.

The shell calls `decide` once per trigger it offers: once per crop cycle, streak
reminder and expiry batch, so those keys never spend the cap twice. Thefts are the
exception: several theft batches closing on one business day share the collapse key
stolen:<owner>:<day>, and each spends a slot of the daily cap, although the gateway
collapses them into one notification.

A trigger that falls inside the quiet hours is deferred to their end and counted against
the business day on which it will be sent: a crop ripening at 23:00 is the first push of
the next morning, so it takes a slot of tomorrow's cap, not of a day that already ended.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from game_rules.calendar import business_day
from game_rules.rules import NotifyRules, Rules

Kind = Literal["ripe", "stolen", "expiry", "streak"]
KINDS: tuple[Kind, ...] = ("ripe", "stolen", "expiry", "streak")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)
_ONE_DAY = timedelta(days=1)
# The parts each kind's collapse key is made of, with their types.
_KEY_PARTS: dict[str, dict[str, type]] = {
    "ripe": {"plot": int, "cycle": int},
    "stolen": {"day": date},
    "expiry": {"batch": date},
    "streak": {"day": date},
}


@dataclass(frozen=True, slots=True)
class NotifyState:
    """Triggers sent to one player on business day `day`."""

    day: date | None = None
    sent: int = 0

    def __post_init__(self) -> None:
        if self.sent < 0 or (self.day is None and self.sent != 0):
            raise ValueError(f"sent must be >= 0, and 0 without a day: {self!r}")

    def on(self, day: date) -> NotifyState:
        """The count for `day`: fresh on a later day; on the same or an earlier day (a
        clock gone back) the count goes on, so a skewed clock never resets the cap."""
        if self.day is None or day > self.day:
            return NotifyState(day)
        return self

    def to_wire(self) -> dict[str, object]:
        return {"d": None if self.day is None else self.day.isoformat(), "n": self.sent}

    @classmethod
    def from_wire(cls, data: object) -> NotifyState:
        """Inverse of to_wire; anything else raises ValueError (the store is not trusted)."""
        if not isinstance(data, dict) or set(data) != {"d", "n"}:
            raise ValueError(f"notify state must be a map with keys 'd' and 'n', got {data!r}")
        raw_day, sent = data["d"], data["n"]
        if isinstance(sent, bool) or not isinstance(sent, int):
            raise ValueError(f"notify state 'n' must be an integer, got {sent!r}")
        if raw_day is None:
            return cls(None, sent)
        if not isinstance(raw_day, str):
            raise ValueError(f"notify state 'd' must be a date string or nil, got {raw_day!r}")
        day = date.fromisoformat(raw_day)
        if day.isoformat() != raw_day:
            raise ValueError(f"notify state 'd' must be YYYY-MM-DD, got {raw_day!r}")
        return cls(day, sent)


@dataclass(frozen=True, slots=True)
class NotifyDecision:
    send_at_ms: int | None  # None: dropped, the day's cap is spent
    state: NotifyState


def decide(state: NotifyState, rules: Rules, now_ms: int, kind: str) -> NotifyDecision:
    """When to send a trigger of `kind` raised at `now_ms`: now, or at the end of the quiet
    hours when now is inside them (start inclusive, end exclusive); None when the
    player's cap for the business day of sending is spent (the state still moves to
    that day)."""
    if kind not in KINDS:
        raise ValueError(f"notification kind must be one of {KINDS}, got {kind!r}")
    quiet_end = quiet_end_ms(rules.notify, rules.tz, now_ms)
    send_at_ms = now_ms if quiet_end is None else quiet_end
    state = state.on(business_day(send_at_ms, rules.tz))
    if state.sent >= rules.notify.triggers_per_day_max:
        return NotifyDecision(None, state)
    return NotifyDecision(send_at_ms, replace(state, sent=state.sent + 1))


def quiet_end_ms(notify: NotifyRules, tz: ZoneInfo, now_ms: int) -> int | None:
    """The end of the quiet hours that `now_ms` falls in, or None when it is not in them.
    Local wall times: a window may wrap midnight; start == end means no quiet hours."""
    start, end = notify.quiet_start, notify.quiet_end
    if start == end:
        return None
    local = (_EPOCH + timedelta(milliseconds=now_ms)).astimezone(tz)
    wall = local.time().replace(tzinfo=None)
    if start < end:
        inside = start <= wall < end
        end_day = local.date()
    else:
        inside = wall >= start or wall < end
        end_day = local.date() + _ONE_DAY if wall >= start else local.date()
    if not inside:
        return None
    return max(local_time_ms(end_day, end, tz), now_ms)


def local_time_ms(day: date, at: time, tz: ZoneInfo) -> int:
    """Epoch ms of the wall time `at` on `day` in `tz`. A wall time that happens twice
    (fall back) is the first; one that does not exist (spring forward) reads with the
    offset before the gap, which lands just as far past the gap."""
    moment = datetime.combine(day, at).replace(tzinfo=tz, fold=0)
    return (moment.astimezone(UTC) - _EPOCH) // _ONE_MS


def streak_reminder_ms(rules: Rules, now_ms: int) -> int:
    """The evening streak reminder of the business day of `now_ms`."""
    today = business_day(now_ms, rules.tz)
    return local_time_ms(today, rules.notify.streak_reminder_at, rules.tz)


def collapse_key(kind: str, owner_id: str, **parts: object) -> str:
    """The gateway's collapse key: one push per key.

    ripe:<owner>:<plot>:<cycle>   (plot=, cycle=)  one per crop cycle
    stolen:<owner>:<YYYY-MM-DD>   (day=)           thefts batched per business day
    expiry:<owner>:<YYYY-MM-DD>   (batch=)         one per expiry batch
    streak:<owner>:<YYYY-MM-DD>   (day=)           one reminder per day
    """
    expected = _KEY_PARTS.get(kind)
    if expected is None:
        raise ValueError(f"notification kind must be one of {KINDS}, got {kind!r}")
    if not owner_id:
        raise ValueError("owner_id must be non-empty")
    if set(parts) != set(expected):
        raise ValueError(f"{kind} key takes {sorted(expected)}, got {sorted(parts)}")
    shown = []
    for name, kind_type in expected.items():
        value = parts[name]
        if isinstance(value, bool) or type(value) is not kind_type:
            raise ValueError(f"{kind} key part {name} must be {kind_type.__name__}: {value!r}")
        shown.append(value.isoformat() if isinstance(value, date) else str(value))
    return ":".join([kind, owner_id, *shown])


# --- thefts from an offline player, batched into one trigger -----------------------------

THIEVES_NAMED_MAX = 5


@dataclass(frozen=True, slots=True)
class TheftBatch:
    """Thefts waiting to become one `stolen` trigger when the batch window closes."""

    until_ms: int = 0  # 0: no batch is open
    count: int = 0
    coins: int = 0
    thieves: tuple[str, ...] = ()  # the first few, for the notification text

    def to_wire(self) -> dict[str, object]:
        return {"u": self.until_ms, "n": self.count, "c": self.coins, "t": list(self.thieves)}

    @classmethod
    def from_wire(cls, data: object) -> TheftBatch:
        if not isinstance(data, dict) or set(data) != {"u", "n", "c", "t"}:
            raise ValueError(f"theft batch must be a map with keys u, n, c, t, got {data!r}")
        numbers = [data["u"], data["n"], data["c"]]
        if any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in numbers):
            raise ValueError(f"theft batch numbers must be integers >= 0, got {data!r}")
        thieves = data["t"]
        if not isinstance(thieves, list) or not all(isinstance(t, str) for t in thieves):
            raise ValueError(f"theft batch 't' must be a list of ids, got {thieves!r}")
        return cls(data["u"], data["n"], data["c"], tuple(thieves))


def add_theft(
    batch: TheftBatch, rules: Rules, now_ms: int, thief_id: str, coins: int
) -> tuple[TheftBatch, int | None]:
    """Add a theft that reached no socket. Returns the batch and the ms its trigger is due
    when a timer must be armed (the theft opened the batch, or the batch's timer was lost:
    its window passed without it closing), else None."""
    if batch.until_ms == 0:
        opened = TheftBatch(now_ms + rules.notify.theft_batch_ms, 1, coins, (thief_id,))
        return opened, opened.until_ms
    named = thief_id in batch.thieves or len(batch.thieves) >= THIEVES_NAMED_MAX
    thieves = batch.thieves if named else (*batch.thieves, thief_id)
    grown = TheftBatch(batch.until_ms, batch.count + 1, batch.coins + coins, thieves)
    return grown, (now_ms if now_ms >= batch.until_ms else None)


def theft_summary(batch: TheftBatch) -> dict[str, object]:
    """The trigger's data when the batch closes."""
    return {"thefts": batch.count, "coins": batch.coins, "thieves": list(batch.thieves)}
