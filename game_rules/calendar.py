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


_DAY_MS = 86_400_000
# The last answer of business_day: (zone, first ms, end ms, date), where every instant
# from first to end has that local date. First the asked instant's UTC second (offsets and
# transition instants are whole seconds: TZif and POSIX TZ rules count in seconds); once
# another second is asked about the same day, the whole local day if the offset is the
# same at the asked instant and at the day's first and last millisecond (no transition
# falls in it: no zone moves away and back within a day, a test reads the tz database). A
# server asks about the same day thousands of times a second, the bench's time-lapse clock
# dozens of times a business day: all but the first few skip the astimezone (~2 us).
_last_day: tuple[ZoneInfo | None, int, int, date] = (None, 0, 0, date.min)


def business_day(now_ms: int, tz: ZoneInfo) -> date:
    """The local calendar date at `now_ms` in `tz`."""
    global _last_day  # noqa: PLW0603 - a one-entry memo of a pure function
    last_tz, first_ms, end_ms, last = _last_day
    if last_tz is tz and first_ms <= now_ms < end_ms:
        return last
    local = (_EPOCH + timedelta(milliseconds=now_ms)).astimezone(tz)
    day = local.date()
    span = _whole_day(now_ms, _offset_ms(local), tz) if last_tz is tz and last == day else None
    if span is None:
        second_ms = now_ms - now_ms % 1000
        span = (second_ms, second_ms + 1000)
    _last_day = (tz, *span, day)
    return day


def _whole_day(now_ms: int, offset_ms: int, tz: ZoneInfo) -> tuple[int, int] | None:
    """The UTC span of the local day around `now_ms`, if its offset is `offset_ms` at both
    ends (None: a transition falls in it, or datetime cannot hold its end)."""
    local_ms = now_ms + offset_ms
    first_ms = local_ms - local_ms % _DAY_MS - offset_ms
    end_ms = first_ms + _DAY_MS
    try:
        ends = [
            (_EPOCH + timedelta(milliseconds=ms)).astimezone(tz) for ms in (first_ms, end_ms - 1)
        ]
    except OverflowError:
        return None
    if all(_offset_ms(end) == offset_ms for end in ends):
        return first_ms, end_ms
    return None


def _offset_ms(local: datetime) -> int:
    offset = local.utcoffset()
    assert offset is not None  # an aware datetime from astimezone
    return offset // _ONE_MS


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
