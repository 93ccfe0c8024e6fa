"""Business days in the rules' time zone and the coin expiry calendar.

All instants are integer Unix epoch milliseconds; arithmetic stays in integers so that
23:59:59.999 never rounds into the next day.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from game_rules.rules import ExpiryRules

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)
_ONE_DAY = timedelta(days=1)


# The last answer of business_day: (zone, UTC second, date). Zone offsets and transition
# instants are whole seconds (TZif and POSIX TZ rules count in seconds), so every
# millisecond of one UTC second has the same local date; a server asks about the same
# second thousands of times, and this skips the astimezone (~2 us) for all but the first.
_last_day: tuple[ZoneInfo | None, int, date] = (None, 0, date.min)


def business_day(now_ms: int, tz: ZoneInfo) -> date:
    """The local calendar date at `now_ms` in `tz`."""
    global _last_day  # noqa: PLW0603 - a one-entry memo of a pure function
    second = now_ms // 1000
    last_tz, last_second, last = _last_day
    if last_tz is tz and last_second == second:
        return last
    day = (_EPOCH + timedelta(milliseconds=now_ms)).astimezone(tz).date()
    _last_day = (tz, second, day)
    return day


# The last answer of iso_day. date.isoformat builds its text through PyUnicode_FromFormat
# and libc's vsprintf: ~3.2k instructions a call, four on every credited sign-in (3 % of
# its server instructions, bench.instructions); a business day's requests share one day.
_last_iso: tuple[date, str] = (date.min, date.min.isoformat())


def iso_day(day: date) -> str:
    """`day.isoformat()` ("YYYY-MM-DD"), remembered for the last day asked about."""
    global _last_iso  # noqa: PLW0603 - a one-entry memo of a pure function
    last_day, text = _last_iso
    if last_day == day:
        return text
    text = day.isoformat()
    _last_iso = (day, text)
    return text


def day_start_ms(day: date, tz: ZoneInfo) -> int:
    """Epoch ms of the first instant of `day` in `tz`.

    Usually local midnight. When midnight is repeated (a fall-back transition at 01:00 to
    00:00), the earlier one (fold=0) is the start. When midnight does not exist (a
    spring-forward gap that covers it, e.g. America/Sao_Paulo before 2019), the day starts
    at the transition itself, found exactly between the two readings of the gap.
    """
    midnight = datetime(day.year, day.month, day.day)
    midnights = [_to_ms(midnight.replace(tzinfo=tz, fold=fold)) for fold in (0, 1)]
    real = [ms for ms in midnights if _local_naive(ms, tz) == midnight]
    if real:
        return min(real)
    # In a gap, fold=1 reads the wall time with the later offset (an instant before the
    # transition, still the previous day) and fold=0 with the earlier one (at or after it).
    before_ms, after_ms = min(midnights), max(midnights)
    while after_ms - before_ms > 1:
        middle_ms = (before_ms + after_ms) // 2
        if business_day(middle_ms, tz) >= day:
            after_ms = middle_ms
        else:
            before_ms = middle_ms
    return after_ms


# The last answer of expiry_batch: (rules, day, batch). Every credit of a business day asks
# about the same day, so all but the first skip the search and the date arithmetic.
_last_batch: tuple[ExpiryRules | None, date, date] = (None, date.min, date.min)


def expiry_batch(day: date, expiry: ExpiryRules) -> date:
    """The last valid day (inclusive) of coins earned on `day`."""
    global _last_batch  # noqa: PLW0603 - a one-entry memo of a pure function
    last_expiry, last_day, last = _last_batch
    if last_expiry is expiry and last_day == day:
        return last
    month = next((m for m in expiry.period_end_months if m >= day.month), None)
    if month is None:
        raise ValueError(f"period_end_months {expiry.period_end_months} do not cover {day}")
    year = day.year + expiry.years_later
    batch = date(year, 12, 31) if month == 12 else date(year, month + 1, 1) - _ONE_DAY
    _last_batch = (expiry, day, batch)
    return batch


def batch_expires_at_ms(batch: date, tz: ZoneInfo) -> int:
    """The instant coins of `batch` stop being valid: the start of the following local day."""
    return day_start_ms(batch + _ONE_DAY, tz)


def days_until(day: date, now_ms: int, tz: ZoneInfo) -> int:
    """Whole business days from today (at `now_ms` in `tz`) to `day`: 0 on the day itself,
    negative once it has passed. Counted in calendar dates, so a DST day is still one day."""
    return (day - business_day(now_ms, tz)).days


def _to_ms(moment: datetime) -> int:
    # astimezone first: subtracting two datetimes that share a tzinfo ignores their offsets.
    return (moment.astimezone(UTC) - _EPOCH) // _ONE_MS


def _local_naive(ms: int, tz: ZoneInfo) -> datetime:
    return (_EPOCH + timedelta(milliseconds=ms)).astimezone(tz).replace(tzinfo=None)
