"""Push-notification triggers: quiet hours (wrapping, edges, DST), the daily cap, keys."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from game_rules import (
    NotifyRules,
    NotifyState,
    Rules,
    SignInState,
    collapse_key,
    decide,
    parse_rules,
    streak_at_risk,
)
from game_rules.notify import (
    TheftBatch,
    add_theft,
    local_time_ms,
    quiet_end_ms,
    streak_reminder_ms,
    theft_summary,
)

RULES = parse_rules(
    'version = "t"\n[signin]\nrewards = [1]\n[notify]\n'
    'quiet_hours = ["22:00", "08:00"]\ntriggers_per_day_max = 2\nstreak_reminder_at = "20:00"\n'
)
SHANGHAI = ZoneInfo("Asia/Shanghai")
NEW_YORK = ZoneInfo("America/New_York")
D1 = date(2026, 3, 1)
D2 = D1 + timedelta(days=1)


def at(day: date, hour: int = 12, minute: int = 0, milli: int = 0, tz: ZoneInfo = SHANGHAI) -> int:
    """Epoch ms of a wall time; `milli` counts ms into the minute (59_999: its last ms)."""
    moment = datetime(day.year, day.month, day.day, hour, minute, tzinfo=tz)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return (moment.astimezone(UTC) - epoch) // timedelta(milliseconds=1) + milli


def with_quiet(start: time, end: time, rules: Rules = RULES) -> Rules:
    notify = dataclasses.replace(rules.notify, quiet_start=start, quiet_end=end)
    return dataclasses.replace(rules, notify=notify)


@pytest.mark.parametrize(
    ("now_ms", "send_at_ms", "day"),
    [
        (at(D1, 12), at(D1, 12), D1),
        (at(D1, 21, 59, 59_999), at(D1, 21, 59, 59_999), D1),  # the last ms before quiet
        (at(D1, 22), at(D2, 8), D2),  # the start is inside
        (at(D1, 23, 30), at(D2, 8), D2),  # wraps midnight: sent and counted tomorrow
        (at(D2, 0), at(D2, 8), D2),
        (at(D2, 7, 59, 59_999), at(D2, 8), D2),
        (at(D2, 8), at(D2, 8), D2),  # the end is outside
    ],
)
def test_decide_quiet_hours_wrapping_midnight(now_ms: int, send_at_ms: int, day: date) -> None:
    decision = decide(NotifyState(), RULES, now_ms, "ripe")
    assert decision.send_at_ms == send_at_ms
    assert decision.state == NotifyState(day, 1)


@pytest.mark.parametrize(
    ("start", "end", "now_ms", "send_at_ms"),
    [
        (time(13, 0), time(14, 0), at(D1, 12, 59, 59_999), at(D1, 12, 59, 59_999)),
        (time(13, 0), time(14, 0), at(D1, 13), at(D1, 14)),
        (time(13, 0), time(14, 0), at(D1, 13, 59, 59_999), at(D1, 14)),
        (time(13, 0), time(14, 0), at(D1, 14), at(D1, 14)),
        (time(0, 0), time(6, 0), at(D1, 0), at(D1, 6)),
        (time(22, 0), time(0, 0), at(D1, 23), at(D2, 0)),
        (time(22, 0), time(22, 0), at(D1, 23), at(D1, 23)),  # equal: no quiet hours
        (time(0, 0), time(0, 0), at(D1, 0), at(D1, 0)),
    ],
)
def test_decide_quiet_hours_table(start: time, end: time, now_ms: int, send_at_ms: int) -> None:
    decision = decide(NotifyState(), with_quiet(start, end), now_ms, "stolen")
    assert decision.send_at_ms == send_at_ms


def test_decide_daily_cap_drops_then_resets_next_business_day() -> None:
    state = NotifyState()
    sent = []
    for now_ms in (at(D1, 9), at(D1, 10), at(D1, 11), at(D1, 21, 59)):
        decision = decide(state, RULES, now_ms, "ripe")
        state = decision.state
        sent.append(decision.send_at_ms is not None)
    assert sent == [True, True, False, False]
    assert state == NotifyState(D1, 2)
    # 23:00 is quiet: the trigger goes out at 08:00 tomorrow, on tomorrow's fresh cap.
    night = decide(state, RULES, at(D1, 23), "stolen")
    assert (night.send_at_ms, night.state) == (at(D2, 8), NotifyState(D2, 1))


def test_decide_deferred_triggers_share_the_day_they_are_sent_on() -> None:
    state = NotifyState()
    results = []
    for now_ms in (at(D1, 22, 30), at(D1, 23), at(D2, 7), at(D2, 9)):
        decision = decide(state, RULES, now_ms, "ripe")
        state = decision.state
        results.append(decision.send_at_ms)
    assert results == [at(D2, 8), at(D2, 8), None, None]


def test_decide_zero_cap_drops_everything() -> None:
    rules = dataclasses.replace(RULES, notify=NotifyRules(triggers_per_day_max=0))
    assert decide(NotifyState(), rules, at(D1, 12), "expiry").send_at_ms is None


def test_decide_clock_gone_back_keeps_counting() -> None:
    state = NotifyState(D2, 2)
    assert decide(state, RULES, at(D1, 12), "streak") == decide(state, RULES, at(D2, 12), "ripe")
    assert decide(state, RULES, at(D1, 12), "streak").send_at_ms is None


def test_decide_unknown_kind_is_value_error() -> None:
    with pytest.raises(ValueError, match="kind"):
        decide(NotifyState(), RULES, at(D1), "promo")


@pytest.mark.parametrize(
    ("start", "end", "now_ms"),
    [
        # 8 March 2026: New York springs forward at 02:00 -> 03:00; 02:30 does not exist.
        (time(1, 0), time(2, 30), at(D1 + timedelta(days=7), 1, 30, tz=NEW_YORK)),
        # 1 November 2026: 01:30 happens twice; the end is the first of them.
        (time(0, 0), time(1, 30), at(date(2026, 11, 1), 0, 30, tz=NEW_YORK)),
        # An ordinary night across the spring-forward day: the 23:00 -> 08:00 window.
        (time(23, 0), time(8, 0), at(date(2026, 3, 7), 23, 30, tz=NEW_YORK)),
    ],
)
def test_quiet_end_is_dst_safe(start: time, end: time, now_ms: int) -> None:
    rules = dataclasses.replace(with_quiet(start, end), timezone="America/New_York", tz=NEW_YORK)
    got = quiet_end_ms(rules.notify, rules.tz, now_ms)
    assert got is not None and got > now_ms
    local = datetime.fromtimestamp(got / 1000, NEW_YORK)
    if end == time(2, 30):
        assert (local.hour, local.minute) == (3, 30)  # the same distance past the gap
        assert got - now_ms == 60 * 60_000  # 01:30 EST -> 03:30 EDT is one real hour
    elif end == time(1, 30):
        assert (local.hour, local.minute, local.fold) == (1, 30, 0)
        assert got - now_ms == 60 * 60_000
    else:
        assert (local.date(), local.hour) == (date(2026, 3, 8), 8)
        assert got - now_ms == 7.5 * 3_600_000  # the night is an hour short


def test_local_time_ms_is_shanghai_wall_time() -> None:
    assert local_time_ms(D1, time(8, 0), SHANGHAI) == at(D1, 8)


def test_streak_reminder_ms_is_local_evening_of_business_day() -> None:
    assert streak_reminder_ms(RULES, at(D1, 0, 1)) == at(D1, 20)
    assert streak_reminder_ms(RULES, at(D1, 23, 59)) == at(D1, 20)


@pytest.mark.parametrize(
    ("state", "now_ms", "at_risk"),
    [
        (SignInState(), at(D2, 20), False),
        (SignInState(D1, 3), at(D2, 0), True),
        (SignInState(D1, 3), at(D2, 23, 59, 59_999), True),
        (SignInState(D2, 4), at(D2, 20), False),  # signed today
        (SignInState(D1 - timedelta(days=1), 3), at(D2, 20), False),  # already broken
        (SignInState(D1, 3), at(D1, 23, 59, 59_999), False),
    ],
)
def test_streak_at_risk_table(state: SignInState, now_ms: int, at_risk: bool) -> None:
    assert streak_at_risk(state, RULES, now_ms) is at_risk


@pytest.mark.parametrize(
    ("kind", "parts", "key"),
    [
        ("ripe", {"plot": 3, "cycle": 17}, "ripe:u1:3:17"),
        ("stolen", {"day": D1}, "stolen:u1:2026-03-01"),
        ("expiry", {"batch": date(2027, 6, 30)}, "expiry:u1:2027-06-30"),
        ("streak", {"day": D2}, "streak:u1:2026-03-02"),
    ],
)
def test_collapse_key_table(kind: str, parts: dict[str, object], key: str) -> None:
    assert collapse_key(kind, "u1", **parts) == key


@pytest.mark.parametrize(
    ("kind", "owner", "parts"),
    [
        ("promo", "u1", {}),
        ("ripe", "", {"plot": 1, "cycle": 1}),
        ("ripe", "u1", {"plot": 1}),
        ("ripe", "u1", {"plot": 1, "cycle": 1, "day": D1}),
        ("ripe", "u1", {"plot": "1", "cycle": 1}),
        ("ripe", "u1", {"plot": True, "cycle": 1}),
        ("stolen", "u1", {"day": "2026-03-01"}),
        ("stolen", "u1", {"day": datetime(2026, 3, 1, tzinfo=UTC)}),
    ],
)
def test_collapse_key_bad_parts_is_value_error(
    kind: str, owner: str, parts: dict[str, object]
) -> None:
    with pytest.raises(ValueError):
        collapse_key(kind, owner, **parts)


@pytest.mark.parametrize("state", [NotifyState(), NotifyState(D1, 0), NotifyState(D1, 5)])
def test_notify_state_wire_round_trip(state: NotifyState) -> None:
    assert NotifyState.from_wire(state.to_wire()) == state
    assert NotifyState(D1, 5).to_wire() == {"d": "2026-03-01", "n": 5}


@pytest.mark.parametrize(
    "data",
    [
        None,
        {"d": None, "n": 1},
        {"d": "2026-03-01", "n": -1},
        {"d": "2026-03-01", "n": True},
        {"d": "20260301", "n": 1},
        {"d": 1, "n": 1},
        {"d": "2026-03-01"},
        {"d": "2026-03-01", "n": 1, "x": 1},
    ],
)
def test_notify_state_from_wire_malformed_is_value_error(data: object) -> None:
    with pytest.raises(ValueError):
        NotifyState.from_wire(data)


# --- theft batches --------------------------------------------------------------------------


def test_add_theft_opens_a_batch_and_asks_for_a_timer() -> None:
    rules = RULES
    batch, due_ms = add_theft(TheftBatch(), rules, 1_000, "bob", 2)
    assert due_ms == 1_000 + rules.notify.theft_batch_ms
    assert batch == TheftBatch(due_ms, 1, 2, ("bob",))


def test_add_theft_to_an_open_batch_needs_no_new_timer() -> None:
    rules = RULES
    batch, _ = add_theft(TheftBatch(), rules, 1_000, "bob", 2)
    batch, again = add_theft(batch, rules, 2_000, "cat", 3)
    batch, third = add_theft(batch, rules, 3_000, "bob", 1)
    assert again is None and third is None
    assert theft_summary(batch) == {"thefts": 3, "coins": 6, "thieves": ["bob", "cat"]}


def test_add_theft_after_a_lost_timer_rearms_at_once() -> None:
    rules = RULES
    batch, due_ms = add_theft(TheftBatch(), rules, 1_000, "bob", 2)
    assert due_ms is not None
    _, again = add_theft(batch, rules, due_ms + 5, "cat", 3)
    assert again == due_ms + 5


def test_add_theft_names_at_most_five_thieves() -> None:
    rules = RULES
    batch = TheftBatch()
    for n in range(8):
        batch, _ = add_theft(batch, rules, 1_000, f"t{n}", 1)
    assert len(batch.thieves) == 5 and batch.count == 8


@pytest.mark.parametrize(
    "wire", [None, {"u": 1}, {"u": -1, "n": 0, "c": 0, "t": []}, {"u": 1, "n": 1, "c": 1, "t": [3]}]
)
def test_theft_batch_from_wire_refuses_malformed(wire: object) -> None:
    with pytest.raises(ValueError):
        TheftBatch.from_wire(wire)


def test_theft_batch_wire_round_trip() -> None:
    batch = TheftBatch(5, 2, 7, ("a", "b"))
    assert TheftBatch.from_wire(batch.to_wire()) == batch
