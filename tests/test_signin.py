"""The daily sign-in rule: streaks, the reward cycle, idempotency, clock skew, the view."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from game_rules import (
    Credit,
    Rules,
    RuleViolation,
    SignInRules,
    SignInState,
    business_day,
    parse_rules,
    reward_coins,
    sign_in,
    sign_in_view,
)

RULES = parse_rules(
    """\
version = "test"
timezone = "Asia/Shanghai"
[signin]
rewards = [10, 15, 20, 25, 30, 40, 60]
"""
)
SHANGHAI = ZoneInfo("Asia/Shanghai")
DAY_MS = 86_400_000
PLAYER = "u42"


def at(day: date, hour: int = 12, minute: int = 0, second: int = 0, milli: int = 0) -> int:
    """Epoch ms of a Shanghai wall time."""
    moment = datetime(day.year, day.month, day.day, hour, minute, second, milli * 1000, SHANGHAI)
    return (moment.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


def with_rewards(rules: Rules, *rewards: int) -> Rules:
    return dataclasses.replace(rules, signin=SignInRules(rewards))


D1 = date(2026, 3, 1)


def days(first: date, count: int) -> list[date]:
    return [first + timedelta(days=n) for n in range(count)]


def test_sign_in_first_time_pays_day_one() -> None:
    outcome = sign_in(SignInState(), RULES, at(D1), PLAYER)
    assert outcome.streak == 1
    assert outcome.coins == 10
    assert not outcome.already
    assert outcome.day == D1
    assert outcome.state == SignInState(D1, 1)
    assert outcome.credit == Credit("signin:u42:2026-03-01", "signin", 10, date(2027, 6, 30))


def test_sign_in_consecutive_days_grow_streak_and_reward() -> None:
    state = SignInState()
    paid = []
    for day in days(D1, 7):
        outcome = sign_in(state, RULES, at(day, 9), PLAYER)
        state = outcome.state
        paid.append((outcome.streak, outcome.coins))
    assert paid == [(1, 10), (2, 15), (3, 20), (4, 25), (5, 30), (6, 40), (7, 60)]


def test_sign_in_last_ms_then_first_ms_of_next_day_is_consecutive() -> None:
    first = sign_in(SignInState(), RULES, at(D1, 23, 59, 59, 999), PLAYER)
    second = sign_in(first.state, RULES, at(D1 + timedelta(days=1), 0, 0, 0, 0), PLAYER)
    assert (first.day, second.day) == (D1, date(2026, 3, 2))
    assert (second.streak, second.coins, second.already) == (2, 15, False)
    assert second.credit is not None
    assert second.credit.transfer_id == "signin:u42:2026-03-02"


@pytest.mark.parametrize("gap_days", [2, 3, 30, 400])
def test_sign_in_after_missed_day_resets_streak(gap_days: int) -> None:
    state = SignInState(D1, 5)
    outcome = sign_in(state, RULES, at(D1 + timedelta(days=gap_days)), PLAYER)
    assert (outcome.streak, outcome.coins) == (1, 10)


@pytest.mark.parametrize(
    ("streak_day", "coins"),
    [(1, 10), (7, 60), (8, 10), (9, 15), (14, 60), (15, 10), (700, 60), (701, 10)],
)
def test_reward_coins_cycle_wraps(streak_day: int, coins: int) -> None:
    assert reward_coins(RULES.signin, streak_day) == coins


def test_sign_in_fourteen_days_wraps_cycle_twice() -> None:
    state = SignInState()
    coins = []
    for day in days(D1, 14):
        outcome = sign_in(state, RULES, at(day), PLAYER)
        state = outcome.state
        coins.append(outcome.coins)
    assert coins[7] == 10  # day 8
    assert coins[13] == 60  # day 14
    assert state.streak == 14  # the streak itself does not wrap


def test_sign_in_twice_same_day_is_already_without_credit() -> None:
    first = sign_in(SignInState(D1, 2), RULES, at(D1 + timedelta(days=1), 0, 0, 1), PLAYER)
    second = sign_in(first.state, RULES, at(D1 + timedelta(days=1), 23, 59, 59, 999), PLAYER)
    assert (first.coins, first.already) == (20, False)
    assert second.already
    assert second.credit is None
    assert second.coins == first.coins
    assert second.streak == first.streak == 3
    assert second.state is first.state


@pytest.mark.parametrize(
    ("rewards", "streak_before", "coins"),
    [
        ((100, 200, 300, 400, 500, 600, 700), 3, 400),  # same length, new amounts
        ((5, 6), 3, 6),  # shorter table: day 4 is index (4 - 1) % 2 = 1
        ((5, 6), 6, 5),  # shorter than the old streak: day 7 -> index 0
        ((9,), 30, 9),
        (tuple(range(1, 32)), 6, 7),  # longer table continues where the streak is
    ],
)
def test_sign_in_new_rules_mid_streak_uses_new_table(
    rewards: tuple[int, ...], streak_before: int, coins: int
) -> None:
    rules = with_rewards(RULES, *rewards)
    outcome = sign_in(SignInState(D1, streak_before), rules, at(D1 + timedelta(days=1)), PLAYER)
    assert outcome.streak == streak_before + 1
    assert outcome.coins == coins
    again = sign_in(outcome.state, rules, at(D1 + timedelta(days=1), 20), PLAYER)
    assert (again.already, again.coins) == (True, coins)


def test_sign_in_already_after_shorter_table_reads_in_range() -> None:
    # Signed in on day 7 of a 7-day table, then the operator shipped a 2-day table.
    outcome = sign_in(SignInState(D1, 7), with_rewards(RULES, 5, 6), at(D1, 22), PLAYER)
    assert (outcome.already, outcome.coins) == (True, 5)


@pytest.mark.parametrize("days_back", [1, 2, 365])
def test_sign_in_last_day_in_future_is_clock_skew(days_back: int) -> None:
    state = SignInState(D1, 4)
    with pytest.raises(RuleViolation) as caught:
        sign_in(state, RULES, at(D1 - timedelta(days=days_back), 23), PLAYER)
    assert caught.value.code == "CLOCK_SKEW"
    assert "2026-03-01" in caught.value.message


def test_sign_in_timezone_moved_west_is_clock_skew() -> None:
    # Signed at 07:00 Shanghai on 1 March = still 28 February in New York.
    state = sign_in(SignInState(), RULES, at(D1, 7), PLAYER).state
    west = dataclasses.replace(RULES, timezone="America/New_York", tz=ZoneInfo("America/New_York"))
    with pytest.raises(RuleViolation, match="CLOCK_SKEW"):
        sign_in(state, west, at(D1, 7, 0, 1), PLAYER)


def test_sign_in_credit_batch_follows_expiry_rules() -> None:
    late = sign_in(SignInState(), RULES, at(date(2026, 6, 30), 23, 59, 59), PLAYER)
    early = sign_in(SignInState(), RULES, at(date(2026, 7, 1), 0, 0, 0), PLAYER)
    assert late.credit is not None and early.credit is not None
    assert late.credit.batch == date(2027, 6, 30)
    assert early.credit.batch == date(2027, 12, 31)


def test_sign_in_empty_player_id_is_refused() -> None:
    with pytest.raises(ValueError, match="player_id"):
        sign_in(SignInState(), RULES, at(D1), "")


@pytest.mark.parametrize(
    ("state", "now_ms", "signed_today", "streak", "next_coins"),
    [
        (SignInState(), at(D1), False, 0, 10),
        (SignInState(D1, 3), at(D1, 23, 59, 59, 999), True, 3, 25),
        (SignInState(D1, 3), at(D1 + timedelta(days=1), 0), False, 3, 25),
        (SignInState(D1, 3), at(D1 + timedelta(days=1), 23, 59, 59, 999), False, 3, 25),
        (SignInState(D1, 3), at(D1 + timedelta(days=2), 0), False, 0, 10),  # broken
        (SignInState(D1, 7), at(D1), True, 7, 10),  # tomorrow wraps to day 8
        (SignInState(D1 + timedelta(days=1), 2), at(D1), True, 2, 20),  # skew: no pay now
    ],
)
def test_sign_in_view_table(
    state: SignInState, now_ms: int, signed_today: bool, streak: int, next_coins: int
) -> None:
    view = sign_in_view(state, RULES, now_ms)
    assert (view.signed_today, view.streak, view.next_coins) == (signed_today, streak, next_coins)
    assert view.day == business_day(now_ms, RULES.tz)


def test_sign_in_view_matches_what_sign_in_pays() -> None:
    state = SignInState(D1, 3)
    for now_ms in (at(D1 + timedelta(days=1)), at(D1 + timedelta(days=5))):
        view = sign_in_view(state, RULES, now_ms)
        assert sign_in(state, RULES, now_ms, PLAYER).coins == view.next_coins


@pytest.mark.parametrize(
    "state", [SignInState(), SignInState(D1, 1), SignInState(date(2026, 12, 31), 10_000)]
)
def test_sign_in_state_wire_round_trip(state: SignInState) -> None:
    wire = state.to_wire()
    assert set(wire) == {"d", "s"}
    assert SignInState.from_wire(wire) == state


def test_sign_in_state_wire_format() -> None:
    assert SignInState(D1, 2).to_wire() == {"d": "2026-03-01", "s": 2}
    assert SignInState().to_wire() == {"d": None, "s": 0}


@pytest.mark.parametrize(
    "data",
    [
        None,
        [],
        "2026-03-01",
        {},
        {"d": "2026-03-01"},
        {"d": "2026-03-01", "s": 1, "x": 0},
        {"d": "2026-03-01", "s": "1"},
        {"d": "2026-03-01", "s": True},
        {"d": "2026-03-01", "s": 1.0},
        {"d": "2026-03-01", "s": 0},
        {"d": "2026-03-01", "s": -1},
        {"d": None, "s": 3},
        {"d": "20260301", "s": 1},
        {"d": "2026-02-30", "s": 1},
        {"d": "yesterday", "s": 1},
        {"d": 20260301, "s": 1},
        {b"d": "2026-03-01", b"s": 1},
    ],
)
def test_sign_in_state_from_wire_malformed_is_value_error(data: object) -> None:
    with pytest.raises(ValueError):
        SignInState.from_wire(data)


@pytest.mark.parametrize(("last_day", "streak"), [(None, 1), (D1, 0), (D1, -3)])
def test_sign_in_state_inconsistent_is_refused(last_day: date | None, streak: int) -> None:
    with pytest.raises(ValueError):
        SignInState(last_day, streak)


def test_rule_violation_code_must_be_upper_snake() -> None:
    with pytest.raises(ValueError):
        RuleViolation("clock-skew", "no")


START_MS = at(date(2026, 1, 1), 0)


@settings(max_examples=300, deadline=None)
@given(
    offsets_ms=st.lists(st.integers(min_value=0, max_value=60 * DAY_MS), max_size=80),
    rewards=st.lists(st.integers(min_value=1, max_value=100_000), min_size=1, max_size=31),
    zone=st.sampled_from(["Asia/Shanghai", "America/New_York", "Europe/Berlin", "UTC"]),
)
def test_sign_in_property_any_sorted_times(
    offsets_ms: list[int], rewards: list[int], zone: str
) -> None:
    rules = dataclasses.replace(with_rewards(RULES, *rewards), timezone=zone, tz=ZoneInfo(zone))
    state = SignInState()
    credits: list[Credit] = []
    paid_total = 0
    first_day: date | None = None
    for now_ms in sorted(START_MS + offset for offset in offsets_ms):
        outcome = sign_in(state, rules, now_ms, PLAYER)
        first_day = first_day or outcome.day
        if outcome.already:
            assert outcome.credit is None
            assert outcome.state == state
        else:
            assert outcome.credit is not None
            assert outcome.credit.amount == outcome.coins
            assert outcome.credit.batch >= outcome.day
            credits.append(outcome.credit)
            paid_total += outcome.coins
        assert 1 <= outcome.streak <= (outcome.day - first_day).days + 1
        if state.last_day is not None and not outcome.already:
            gap_days = (outcome.day - state.last_day).days
            assert outcome.streak == (state.streak + 1 if gap_days == 1 else 1)
        assert outcome.coins == rewards[(outcome.streak - 1) % len(rewards)]
        assert SignInState.from_wire(outcome.state.to_wire()) == outcome.state
        state = outcome.state

    assert paid_total == sum(credit.amount for credit in credits)
    ids = [credit.transfer_id for credit in credits]
    assert len(set(ids)) == len(ids)
    credit_days = [credit.transfer_id.rsplit(":", 1)[1] for credit in credits]
    assert len(set(credit_days)) == len(credit_days)  # at most one credit per business day
    distinct_days = {business_day(START_MS + offset, rules.tz) for offset in offsets_ms}
    assert len(credits) == len(distinct_days)  # and exactly one for each day signed in
