"""Growth value and member levels, the pure rules: the documents' numbers at their edges."""

from __future__ import annotations

from dataclasses import replace
from importlib.resources import files

import pytest

from game_rules import RulesError, RuleViolation, parse_rules
from game_rules.growth import (
    GrowthState,
    add_growth,
    checkout_for,
    growth_value,
    growth_view,
    level_for,
    level_of,
    recompute,
    rules_at_level,
    task_coins,
)
from game_rules.growth_state import MONTHS_KEPT_MAX, RECENT_MAX
from game_rules.rules import GrowthRules, Rules
from tests.conftest import shanghai_ms

DEFAULT_TEXT = files("game_rules").joinpath("default.toml").read_text(encoding="utf-8")
RULES = parse_rules(DEFAULT_TEXT)


def rules_with(**growth: object) -> Rules:
    return replace(RULES, growth=replace(RULES.growth, **growth))  # type: ignore[arg-type]


def add(
    state: GrowthState, event: str, at: str, rules: Rules = RULES, ref: str = "e"
) -> GrowthState:
    return add_growth(state, rules, event, shanghai_ms(at), ref).state


def test_default_file_is_jd_and_matches_the_code_defaults() -> None:
    assert RULES.growth == GrowthRules()
    events = {e.name: (e.points, e.per, e.times_max) for e in RULES.growth.events.values()}
    assert events["new_category"][0] == 10
    assert events["month_three_days"] == (30, "month", 1)
    assert events["shopping_year"] == (20, "year", 1)
    assert events["photo_review"][0] == 5
    assert events["review"][0] == 2
    assert events["group_buy"][0] == 5
    assert events["share"][0] == 2
    assert events["own_payment"][0] == 2
    assert events["profile"] == (20, "ever", 1)
    assert events["real_name"] == (100, "ever", 1)
    assert [level.threshold for level in RULES.growth.levels] == [0, 200, 500, 10_000, 20_000]
    assert RULES.growth.base_score == 0 and RULES.growth.recompute == "daily"


@pytest.mark.parametrize(
    ("value", "index"),
    [
        (0, 0),
        (199, 0),
        (200, 1),
        (201, 1),
        (499, 1),
        (500, 2),
        (501, 2),
        (9_999, 2),
        (10_000, 3),
        (10_001, 3),
        (19_999, 3),
        (20_000, 4),
        (20_001, 4),
        (10**7, 4),
    ],
)
def test_level_thresholds_at_each_edge(value: int, index: int) -> None:
    assert level_for(RULES, value).index == index


@pytest.mark.parametrize(
    ("event", "times_max", "per"),
    [
        ("review", 5, "day"),
        ("share", 5, "day"),
        ("new_category", 3, "day"),
        ("group_buy", 2, "day"),
    ],
)
def test_daily_caps_count_up_to_the_cap_then_zero_and_reset_next_day(
    event: str, times_max: int, per: str
) -> None:
    points = RULES.growth.events[event].points
    state = GrowthState()
    for n in range(times_max):
        out = add_growth(state, RULES, event, shanghai_ms("2026-03-10T23:59:59"), f"r{n}")
        assert (out.added, out.capped) == (points, None)
        state = out.state
    over = add_growth(state, RULES, event, shanghai_ms("2026-03-10T23:59:59.999"), "over")
    assert (over.added, over.capped) == (0, per)
    # Midnight in Shanghai (16:00 UTC) starts a new business day: the cap resets.
    next_day = add_growth(over.state, RULES, event, shanghai_ms("2026-03-11T00:00:00"), "n")
    assert (next_day.added, next_day.capped) == (points, None)
    # The new day's recompute shows yesterday's points; today's wait for tomorrow.
    assert (next_day.state.shown, next_day.state.pending) == (points * times_max, points)


def test_monthly_yearly_and_ever_caps() -> None:
    state = add(GrowthState(), "month_three_days", "2026-03-31T23:59:59")
    out = add_growth(state, RULES, "month_three_days", shanghai_ms("2026-03-31T23:59:59"), "x")
    assert (out.added, out.capped) == (0, "month")
    april = add_growth(state, RULES, "month_three_days", shanghai_ms("2026-04-01T00:00:00"), "y")
    assert april.added == 30
    state = add(GrowthState(), "shopping_year", "2026-01-01T00:00:00")
    dec = add_growth(state, RULES, "shopping_year", shanghai_ms("2026-12-31T23:59:59"), "y")
    assert (dec.added, dec.capped) == (0, "year")
    jan = add_growth(dec.state, RULES, "shopping_year", shanghai_ms("2027-01-01T00:00:00"), "z")
    assert jan.added == 20
    state = add(GrowthState(), "real_name", "2026-01-01T10:00:00")
    again = add_growth(state, RULES, "real_name", shanghai_ms("2029-01-01T10:00:00"), "again")
    assert (again.added, again.capped) == (0, "ever")


def test_the_value_shown_changes_only_at_the_daily_recompute() -> None:
    state = add(GrowthState(), "real_name", "2026-05-10T09:00:00")
    state = add(state, "profile", "2026-05-10T09:00:01")
    assert growth_value(state, RULES, shanghai_ms("2026-05-10T23:59:59.999")) == 0
    assert growth_view(state, RULES, shanghai_ms("2026-05-10T23:59:59.999")).pending == 120
    assert growth_value(state, RULES, shanghai_ms("2026-05-11T00:00:00")) == 120
    # 200 is silver: the level too changes at the recompute only.
    for n in range(5):
        state = add(state, "photo_review", "2026-05-11T10:00:00", ref=f"p{n}")
        state = add(state, "review", "2026-05-11T10:00:00", ref=f"r{n}")
        state = add(state, "share", "2026-05-11T10:00:00", ref=f"s{n}")
    # 120 + 3 photo reviews (cap) 15 + 5 reviews 10 + 5 shares 10 = 155: still bronze.
    assert level_of(state, RULES, shanghai_ms("2026-05-12T00:00:00")).index == 0
    assert growth_value(state, RULES, shanghai_ms("2026-05-12T00:00:00")) == 155
    state = add(state, "month_three_days", "2026-05-12T08:00:00")
    state = add(state, "shopping_year", "2026-05-12T08:00:00")
    out = add_growth(state, RULES, "review", shanghai_ms("2026-05-13T00:00:00"), "last")
    assert out.state.shown == 205
    assert (out.level_before.index, out.level_after.index, out.level_changed) == (0, 1, True)


def test_monthly_recompute_on_the_8th() -> None:
    rules = rules_with(recompute="monthly", recompute_day=8)
    state = add(GrowthState(), "real_name", "2026-05-07T23:59:59", rules)
    assert growth_value(state, rules, shanghai_ms("2026-05-07T23:59:59")) == 0
    assert growth_value(state, rules, shanghai_ms("2026-05-08T00:00:00")) == 100
    state = add(state, "profile", "2026-05-08T00:00:01", rules)
    # Earned on the 8th: shown from 8 June, not before.
    assert growth_value(state, rules, shanghai_ms("2026-06-07T23:59:59")) == 100
    assert growth_value(state, rules, shanghai_ms("2026-06-08T00:00:00")) == 120
    view = growth_view(state, rules, shanghai_ms("2026-05-20T12:00:00"))
    assert view.next_recompute.isoformat() == "2026-06-08"
    assert growth_view(state, rules, shanghai_ms("2026-05-02T12:00:00")).next_recompute.day == 8


@pytest.mark.parametrize(
    ("earned", "last_in", "first_out"),
    [
        # Points of a month count for 12 calendar months: this month and the 11 before.
        ("2026-01-01T00:00:00", "2026-12-31T23:59:59.999", "2027-01-01T00:00:00"),
        ("2026-01-31T23:59:59", "2026-12-31T23:59:59.999", "2027-01-01T00:00:00"),
        ("2026-07-15T12:00:00", "2027-06-30T23:59:59.999", "2027-07-01T00:00:00"),
    ],
)
def test_the_window_first_day_out_in_shanghai(earned: str, last_in: str, first_out: str) -> None:
    state = add(GrowthState(), "month_three_days", earned)
    state = add(state, "real_name", earned)  # standing: never ages out
    assert growth_value(state, RULES, shanghai_ms(last_in)) == 130
    assert growth_value(state, RULES, shanghai_ms(first_out)) == 100
    # The job's recompute takes the same value.
    assert recompute(state, RULES, shanghai_ms(first_out)).state.shown == 100


def test_window_edge_is_local_midnight_not_utc() -> None:
    state = add(GrowthState(), "month_three_days", "2026-01-15T12:00:00")
    # 2027-01-01 00:00 in Shanghai is 2026-12-31 16:00 UTC.
    utc_evening_ms = shanghai_ms("2027-01-01T00:00:00")
    assert growth_value(state, RULES, utc_evening_ms - 1) == 30
    assert growth_value(state, RULES, utc_evening_ms) == 0


def test_a_fall_is_shown_at_the_recompute_without_a_level_up() -> None:
    rules = rules_with(base_score=190)
    state = add(GrowthState(), "month_three_days", "2026-01-10T12:00:00", rules)
    up = recompute(state, rules, shanghai_ms("2026-01-11T00:00:00"))
    assert (up.state.shown, up.level_after.index, up.level_changed) == (220, 1, True)
    down = recompute(up.state, rules, shanghai_ms("2027-01-01T00:00:00"))
    assert (down.state.shown, down.level_before.index, down.level_after.index) == (190, 1, 0)
    same = recompute(down.state, rules, shanghai_ms("2027-01-01T23:00:00"))
    assert same.state == down.state and not same.level_changed


def test_taobao_base_score_puts_a_new_member_at_silver_without_a_level_change() -> None:
    rules = rules_with(base_score=400)
    out = add_growth(GrowthState(), rules, "review", shanghai_ms("2026-01-10T12:00:00"), "r")
    assert (out.state.shown, out.level_after.name, out.level_changed) == (400, "silver", False)


def test_reports_per_day_max_counts_every_report_and_stops_counting() -> None:
    rules = rules_with(reports_per_day_max=7)
    state = GrowthState()
    for n in range(7):
        state = add(state, "review", "2026-02-02T10:00:00", rules, ref=f"r{n}")
    out = add_growth(state, rules, "real_name", shanghai_ms("2026-02-02T10:00:00"), "x")
    assert (out.added, out.capped, out.state.day_reports) == (0, "reports", 7)
    assert len(out.state.recent) == 7 <= RECENT_MAX


def test_history_stays_bounded_over_years() -> None:
    state = GrowthState()
    for year in range(2026, 2031):
        for month in range(1, 13):
            at = f"{year}-{month:02d}-03T10:00:00"
            for n in range(3):
                state = add(state, "review", at, ref=f"{year}{month}{n}")
    assert len(state.months) <= MONTHS_KEPT_MAX
    assert len(state.recent) == RECENT_MAX
    assert GrowthState.from_wire(state.to_wire()) == state
    # 12 months (January..December 2030) of 3 reviews of 2 points.
    assert growth_value(state, RULES, shanghai_ms("2030-12-31T10:00:00")) == 12 * 6


def test_unknown_event_and_bad_ref_are_refused() -> None:
    with pytest.raises(RuleViolation) as got:
        add_growth(GrowthState(), RULES, "donation", 0, "r")
    assert got.value.code == "UNKNOWN_GROWTH_EVENT"
    with pytest.raises(RuleViolation) as got:
        add_growth(GrowthState(), RULES, "review", 0, "has space")
    assert got.value.code == "BAD_GROWTH_REF"


@pytest.mark.parametrize(
    "wire",
    [
        None,
        {},
        {**GrowthState().to_wire(), "v": -1},
        {**GrowthState().to_wire(), "p": "20260101"},
        {**GrowthState().to_wire(), "m": [[202601, [["review", 1]]]]},
        {**GrowthState().to_wire(), "m": [[202602, []], [202601, []]]},
        {**GrowthState().to_wire(), "x": 1},
    ],
)
def test_a_bad_stored_state_is_refused(wire: object) -> None:
    with pytest.raises(ValueError, match="growth"):
        GrowthState.from_wire(wire)


def test_perks_per_level_checkout_and_task_multiplier() -> None:
    text = DEFAULT_TEXT.replace(
        "[growth.levels.diamond]  # above 20 000: repair service\nthreshold = 20000\n",
        "[growth.levels.diamond]\nthreshold = 20000\n"
        "coins_per_yuan = 80\norder_share_max_pct = 70\n",
    )
    rules = parse_rules(text)
    diamond, bronze = rules.growth.levels[4], rules.growth.levels[0]
    assert checkout_for(rules, diamond).coins_per_yuan == 80
    assert checkout_for(rules, diamond).order_share_max_pct == 70
    assert checkout_for(rules, bronze) == rules.checkout
    assert task_coins(diamond, 15) == 22  # 150 % of 15 = 22.5, floor
    assert task_coins(rules.growth.levels[2], 10) == 11
    rich = replace(GrowthState(), shown=25_000, level=4, period=None)
    at = rules_at_level(rules, rich, shanghai_ms("2026-01-01T10:00:00"))
    assert at.checkout.coins_per_yuan == 100  # period None: recomputed from history, 0
    rich = replace(rich, ever=(("real_name", 1, 25_000),))
    at = rules_at_level(rules, rich, shanghai_ms("2026-01-01T10:00:00"))
    assert at.checkout.order_share_max_pct == 70


def test_a_bad_growth_section_reports_every_problem() -> None:
    text = """
version = "t"
[signin]
rewards = [1]
[farm]
[growth]
recompute = "weekly"
recompute_day = 31
[growth.events.review]
points = 0
per = "hour"
times_max = 1
[growth.levels.first]
threshold = 5
[growth.levels.second]
threshold = 5
"""
    with pytest.raises(RulesError) as got:
        parse_rules(text)
    text_of = "\n".join(got.value.problems)
    for where in (
        "growth.recompute:",
        "growth.recompute_day:",
        "growth.events.review.points:",
        "growth.events.review.per:",
        "growth.levels:",
    ):
        assert where in text_of, text_of
