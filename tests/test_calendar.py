"""Business days and expiry batches: midnight edges, DST, custom expiry periods."""

from __future__ import annotations

import zoneinfo
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo, _zoneinfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from game_rules import (
    ExpiryRules,
    batch_expires_at_ms,
    business_day,
    day_start_ms,
    expiry_batch,
    iso_day,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
NEW_YORK = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")
DEFAULT_EXPIRY = ExpiryRules((6, 12), 1)
HOUR_MS = 3_600_000


def utc_ms(*parts: int) -> int:
    """Epoch ms of a UTC wall time given as (year, month, day, hour, minute, second, ms)."""
    year, month, day, *rest = parts
    hour, minute, second, milli = (*rest, 0, 0, 0, 0)[:4]
    moment = datetime(year, month, day, hour, minute, second, milli * 1000, tzinfo=UTC)
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


def local_ms(tz: ZoneInfo, *parts: int) -> int:
    year, month, day, hour, minute, second, milli = (*parts, 0, 0, 0, 0)[:7]
    moment = datetime(year, month, day, hour, minute, second, milli * 1000, tzinfo=tz)
    return (moment.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


@pytest.mark.parametrize(
    ("now_ms", "expected"),
    [
        # Shanghai is UTC+8 all year: local midnight of 1 March is 16:00 UTC on 28 February.
        (utc_ms(2026, 2, 28, 15, 59, 59, 999), date(2026, 2, 28)),
        (utc_ms(2026, 2, 28, 16, 0, 0, 0), date(2026, 3, 1)),
        (utc_ms(2026, 3, 1, 15, 59, 59, 999), date(2026, 3, 1)),
        (utc_ms(2026, 3, 1, 16), date(2026, 3, 2)),
        (utc_ms(2026, 12, 31, 16), date(2027, 1, 1)),
        (0, date(1970, 1, 1)),
    ],
)
def test_business_day_shanghai_midnight_edges(now_ms: int, expected: date) -> None:
    assert business_day(now_ms, SHANGHAI) == expected


def test_business_day_millisecond_before_midnight_is_not_rounded_up() -> None:
    midnight_ms = day_start_ms(date(2026, 3, 1), SHANGHAI)
    assert midnight_ms == utc_ms(2026, 2, 28, 16)
    assert business_day(midnight_ms - 1, SHANGHAI) == date(2026, 2, 28)
    assert business_day(midnight_ms, SHANGHAI) == date(2026, 3, 1)


@pytest.mark.parametrize(
    ("tz", "day", "start_utc", "length_hours"),
    [
        # New York: spring forward 2026-03-08 02:00 EST -> 03:00 EDT; fall back 2026-11-01.
        (NEW_YORK, date(2026, 3, 7), (2026, 3, 7, 5), 24),
        (NEW_YORK, date(2026, 3, 8), (2026, 3, 8, 5), 23),
        (NEW_YORK, date(2026, 3, 9), (2026, 3, 9, 4), 24),
        (NEW_YORK, date(2026, 11, 1), (2026, 11, 1, 4), 25),
        (NEW_YORK, date(2026, 11, 2), (2026, 11, 2, 5), 24),
        # Berlin: 2026-03-29 02:00 CET -> 03:00 CEST; 2026-10-25 03:00 CEST -> 02:00 CET.
        (BERLIN, date(2026, 3, 29), (2026, 3, 28, 23), 23),
        (BERLIN, date(2026, 10, 25), (2026, 10, 24, 22), 25),
        (SHANGHAI, date(2026, 3, 1), (2026, 2, 28, 16), 24),
    ],
)
def test_day_start_ms_dst_days_have_right_start_and_length(
    tz: ZoneInfo, day: date, start_utc: tuple[int, int, int, int], length_hours: int
) -> None:
    start_ms = day_start_ms(day, tz)
    assert start_ms == utc_ms(*start_utc)
    assert day_start_ms(day + timedelta(days=1), tz) - start_ms == length_hours * HOUR_MS
    assert business_day(start_ms, tz) == day
    assert business_day(start_ms - 1, tz) == day - timedelta(days=1)


@pytest.mark.parametrize(
    ("now_ms", "expected"),
    [
        (utc_ms(2026, 3, 8, 6, 59, 59, 999), date(2026, 3, 8)),  # 01:59:59.999 EST
        (utc_ms(2026, 3, 8, 7), date(2026, 3, 8)),  # 03:00 EDT
        (utc_ms(2026, 3, 9, 3, 59, 59, 999), date(2026, 3, 8)),  # 23:59:59.999 EDT
        (utc_ms(2026, 3, 9, 4), date(2026, 3, 9)),
        (utc_ms(2026, 11, 1, 5, 30), date(2026, 11, 1)),  # first 01:30 (EDT)
        (utc_ms(2026, 11, 1, 6, 30), date(2026, 11, 1)),  # second 01:30 (EST)
        (utc_ms(2026, 11, 2, 4, 59, 59, 999), date(2026, 11, 1)),  # 23:59:59.999 EST
        (utc_ms(2026, 11, 2, 5), date(2026, 11, 2)),
    ],
)
def test_business_day_new_york_across_dst_change(now_ms: int, expected: date) -> None:
    assert business_day(now_ms, NEW_YORK) == expected


@pytest.mark.parametrize(
    ("zone", "day", "start_utc"),
    [
        # Midnight never happens: clocks jumped 00:00 -> 01:00; the day starts at the jump.
        ("America/Sao_Paulo", date(2018, 11, 4), (2018, 11, 4, 3)),
        ("America/Havana", date(2024, 3, 10), (2024, 3, 10, 5)),
        # Midnight happens twice (01:00 CDT -> 00:00 CST): the day starts at the first one.
        ("America/Havana", date(2023, 11, 5), (2023, 11, 5, 4)),
    ],
)
def test_day_start_ms_midnight_gap_or_fold_is_first_instant_of_day(
    zone: str, day: date, start_utc: tuple[int, int, int, int]
) -> None:
    tz = ZoneInfo(zone)
    start_ms = day_start_ms(day, tz)
    assert start_ms == utc_ms(*start_utc)
    assert business_day(start_ms, tz) == day
    assert business_day(start_ms - 1, tz) == day - timedelta(days=1)


@pytest.mark.parametrize(
    ("now_ms", "batch"),
    [
        (local_ms(SHANGHAI, 2026, 1, 1), date(2027, 6, 30)),
        (local_ms(SHANGHAI, 2026, 6, 30, 23, 59, 59), date(2027, 6, 30)),
        (local_ms(SHANGHAI, 2026, 6, 30, 23, 59, 59, 999), date(2027, 6, 30)),
        (local_ms(SHANGHAI, 2026, 7, 1, 0, 0, 0), date(2027, 12, 31)),
        (local_ms(SHANGHAI, 2026, 12, 31, 23, 59, 59), date(2027, 12, 31)),
        (local_ms(SHANGHAI, 2028, 2, 29, 12), date(2029, 6, 30)),
    ],
)
def test_expiry_batch_default_semi_annual(now_ms: int, batch: date) -> None:
    assert expiry_batch(business_day(now_ms, SHANGHAI), DEFAULT_EXPIRY) == batch


@pytest.mark.parametrize(
    ("expiry", "day", "batch"),
    [
        (ExpiryRules((3, 6, 9, 12), 1), date(2026, 1, 15), date(2027, 3, 31)),
        (ExpiryRules((3, 6, 9, 12), 1), date(2026, 3, 31), date(2027, 3, 31)),
        (ExpiryRules((3, 6, 9, 12), 1), date(2026, 4, 1), date(2027, 6, 30)),
        (ExpiryRules((3, 6, 9, 12), 1), date(2026, 9, 30), date(2027, 9, 30)),
        (ExpiryRules((3, 6, 9, 12), 1), date(2026, 10, 1), date(2027, 12, 31)),
        (ExpiryRules((2, 12), 2), date(2026, 1, 5), date(2028, 2, 29)),  # leap year
        (ExpiryRules((2, 12), 1), date(2026, 1, 5), date(2027, 2, 28)),
        (ExpiryRules((12,), 0), date(2026, 12, 31), date(2026, 12, 31)),
        (ExpiryRules((6, 12), 0), date(2026, 6, 30), date(2026, 6, 30)),
        (ExpiryRules(tuple(range(1, 13)), 0), date(2026, 4, 1), date(2026, 4, 30)),
    ],
)
def test_expiry_batch_custom_periods(expiry: ExpiryRules, day: date, batch: date) -> None:
    assert expiry_batch(day, expiry) == batch
    assert batch >= day


def test_expiry_batch_asked_again_answers_for_the_rules_and_day_it_is_given() -> None:
    """The one-entry memo: a repeat of the last question hits it, any other is computed."""
    quarterly, yearly = ExpiryRules((3, 6, 9, 12), 1), ExpiryRules((12,), 0)
    assert expiry_batch(date(2026, 1, 15), quarterly) == date(2027, 3, 31)
    assert expiry_batch(date(2026, 1, 15), quarterly) == date(2027, 3, 31)
    assert expiry_batch(date(2026, 1, 15), yearly) == date(2026, 12, 31)
    assert expiry_batch(date(2026, 4, 1), yearly) == date(2026, 12, 31)
    assert expiry_batch(date(2026, 4, 1), quarterly) == date(2027, 6, 30)


@given(st.lists(st.dates(), min_size=1, max_size=8))
def test_iso_day_is_isoformat_whatever_was_asked_before(days: list[date]) -> None:
    """The one-entry memo: each answer is the day's own, a repeat or not."""
    for day in [*days, *reversed(days)]:
        assert iso_day(day) == day.isoformat()


def test_expiry_batch_periods_not_ending_in_december_is_refused() -> None:
    with pytest.raises(ValueError, match="do not cover"):
        expiry_batch(date(2026, 8, 1), ExpiryRules((6,), 1))


@pytest.mark.parametrize(
    ("tz", "batch", "expires_utc"),
    [
        (SHANGHAI, date(2027, 6, 30), (2027, 6, 30, 16)),
        (SHANGHAI, date(2027, 12, 31), (2027, 12, 31, 16)),
        (NEW_YORK, date(2027, 3, 13), (2027, 3, 14, 5)),  # next day is a DST change day
    ],
)
def test_batch_expires_at_ms_is_start_of_next_local_day(
    tz: ZoneInfo, batch: date, expires_utc: tuple[int, int, int, int]
) -> None:
    expires_ms = batch_expires_at_ms(batch, tz)
    assert expires_ms == utc_ms(*expires_utc)
    assert business_day(expires_ms - 1, tz) == batch
    assert business_day(expires_ms, tz) == batch + timedelta(days=1)


def _business_day_direct(now_ms: int, tz: ZoneInfo) -> date:
    """business_day without its one-entry memo: the definition itself."""
    return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=now_ms)).astimezone(tz).date()


def test_business_day_memo_keys_on_the_zone() -> None:
    # 02:00 UTC on 1 March: 10:00 on 1 March in Shanghai, 21:00 on 28 February in New York.
    now_ms = utc_ms(2026, 3, 1, 2)
    for _ in range(3):
        assert business_day(now_ms, SHANGHAI) == date(2026, 3, 1)
        assert business_day(now_ms + 1, NEW_YORK) == date(2026, 2, 28)


def test_business_day_memo_turns_at_the_first_millisecond_of_the_day() -> None:
    midnight_ms = day_start_ms(date(2026, 11, 1), NEW_YORK)
    before = [business_day(midnight_ms - 1000 + ms, NEW_YORK) for ms in range(1000)]
    after = [business_day(midnight_ms + ms, NEW_YORK) for ms in range(1000)]
    assert set(before) == {date(2026, 10, 31)}
    assert set(after) == {date(2026, 11, 1)}
    assert business_day(midnight_ms - 1, NEW_YORK) == date(2026, 10, 31)


def test_business_day_memo_turns_inside_a_minute() -> None:
    # Before 1901 Shanghai kept local mean time, UTC+08:05:43: its days began at 15:54:17
    # UTC, so a memo any coarser than a second would answer the day before.
    midnight_ms = utc_ms(1899, 12, 31, 15, 54, 17)
    assert business_day(midnight_ms - 1, SHANGHAI) == date(1899, 12, 31)
    assert business_day(midnight_ms, SHANGHAI) == date(1900, 1, 1)
    assert business_day(midnight_ms - 1, SHANGHAI) == date(1899, 12, 31)


ZONES = [
    SHANGHAI,
    NEW_YORK,
    BERLIN,
    ZoneInfo("America/Santiago"),
    ZoneInfo("Australia/Lord_Howe"),  # a 30-minute DST shift
    ZoneInfo("Asia/Kathmandu"),  # UTC+05:45
]


@settings(max_examples=300, deadline=None)
@given(
    start_ms=st.integers(-2_208_988_800_000, 4_102_444_800_000),  # 1900 .. 2100
    steps=st.lists(
        st.tuples(st.integers(-1500, 1500), st.sampled_from(ZONES)), min_size=1, max_size=20
    ),
)
def test_business_day_memo_agrees_with_the_definition(
    start_ms: int, steps: list[tuple[int, ZoneInfo]]
) -> None:
    """Calls in the same second, the next and the previous one, in any zone, answer what
    the definition answers."""
    now_ms = start_ms
    for delta_ms, tz in steps:
        now_ms += delta_ms
        assert business_day(now_ms, tz) == _business_day_direct(now_ms, tz)


@settings(max_examples=300, deadline=None)
@given(
    start_ms=st.integers(-2_208_988_800_000, 4_102_444_800_000),  # 1900 .. 2100
    steps=st.lists(
        st.tuples(st.integers(-3 * 86_400_000, 3 * 86_400_000), st.sampled_from(ZONES)),
        min_size=1,
        max_size=30,
    ),
)
def test_business_day_memo_of_a_whole_day_agrees_with_the_definition(
    start_ms: int, steps: list[tuple[int, ZoneInfo]]
) -> None:
    """Calls hours and days apart (the bench's time-lapse clock), across DST changes, answer
    what the definition answers."""
    now_ms = start_ms
    for delta_ms, tz in steps:
        now_ms += delta_ms
        assert business_day(now_ms, tz) == _business_day_direct(now_ms, tz)


@pytest.mark.parametrize(
    ("day", "hours"), [(date(2026, 3, 8), 23), (date(2026, 11, 1), 25)], ids=["spring", "fall"]
)
def test_business_day_memo_of_a_dst_day_turns_at_its_midnights(day: date, hours: int) -> None:
    """A day with a transition in it is not remembered whole: asked twice near its end (the
    offset there would place its start an hour off), it still turns at its real start."""
    first_ms = day_start_ms(day, NEW_YORK)
    end_ms = day_start_ms(day + timedelta(days=1), NEW_YORK)
    assert end_ms - first_ms == hours * 3_600_000
    for ms in (end_ms - 1, end_ms - 1001, first_ms - 1, first_ms, end_ms - 1, end_ms):
        assert business_day(ms, NEW_YORK) == _business_day_direct(ms, NEW_YORK)
    for ms in (first_ms, first_ms + 1000, end_ms, first_ms + 3_600_000 - 1, end_ms - 1):
        assert business_day(ms, NEW_YORK) == _business_day_direct(ms, NEW_YORK)


def test_business_day_memo_of_the_last_day_datetime_can_hold() -> None:
    # 9999-12-31 in New York ends after the last instant a UTC datetime can hold.
    noon_ms = utc_ms(9999, 12, 31, 17)
    for ms in (noon_ms, noon_ms + 5000, noon_ms + 9000):
        assert business_day(ms, NEW_YORK) == date(9999, 12, 31)


def test_no_zone_has_transitions_that_cancel_out_within_a_day() -> None:
    """business_day remembers a whole local day when the offset at its first and its last
    millisecond agree; that is sound only if no zone moves away and back within 24 h. Read
    from the tz database this machine has (zoneinfo's pure-Python reader keeps the
    transitions)."""
    cancelling = []
    for name in sorted(zoneinfo.available_timezones()):
        zone = _zoneinfo.ZoneInfo.no_cache(name)
        moments, kinds = zone._trans_utc, zone._ttinfos  # transition i -> kinds[i] after it
        for i, moment in enumerate(moments):
            offset_before = kinds[i - 1].utcoff if i else zone._tti_before.utcoff
            j = i + 1
            while j < len(moments) and moments[j] - moment < 86_400:
                if kinds[j].utcoff == offset_before:
                    cancelling.append((name, moment, moments[j]))
                j += 1
    assert cancelling == []
