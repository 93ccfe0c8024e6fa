"""The farm rules: ripeness edges, watering, steal caps, harvest, daily caps, wire forms."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from game_rules import (
    Credit,
    Crop,
    Daily,
    Farm,
    Friendship,
    Rules,
    RuleViolation,
    StealOutcome,
    StealRules,
    WaterOutcome,
    WaterRules,
    crop_stage,
    crop_view,
    harvest,
    parse_rules,
    plant,
    steal,
    visitor_view,
    water,
)
from game_rules.rules import WaterMode

RULES = parse_rules(
    """\
version = "test"
timezone = "Asia/Shanghai"
[signin]
rewards = [10]
[farm]
plots = 4
friendship_cooldown_s = 86400
[farm.water]
mode = "share"
share_pct = 10
fixed_s = 1800
reward_coins = 2
paid_per_day_max = 3
[farm.steal]
count_per_day_max = 10
coins_per_day_max = 200
[seeds.turnip]
grow_s = 14400
yield_coins = 20
steal_share_pct = 10
steal_cap_pct = 30
[seeds.odd]
grow_s = 14400
yield_coins = 25
steal_share_pct = 10
steal_cap_pct = 30
[seeds.tiny]
grow_s = 60
yield_coins = 5
steal_share_pct = 10
steal_cap_pct = 30
"""
)
SHANGHAI = ZoneInfo("Asia/Shanghai")
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
OWNER = "owner"
D1 = date(2026, 3, 1)
OLD_FRIEND = Friendship(0)


def at(day: date, hour: int = 12, minute: int = 0, second: int = 0, milli: int = 0) -> int:
    """Epoch ms of a Shanghai wall time."""
    moment = datetime(day.year, day.month, day.day, hour, minute, second, milli * 1000, SHANGHAI)
    return (moment.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


T0 = at(D1, 8)
TURNIP_RIPE_MS = T0 + 4 * HOUR_MS


def planted(seed: str = "turnip", plot: int = 0, rules: Rules = RULES) -> Farm:
    return plant(Farm.empty(rules.farm.plots), rules, T0, plot, seed).farm


def code_of(call: object) -> str:
    assert callable(call)
    with pytest.raises(RuleViolation) as caught:
        call()
    return caught.value.code


def steal_by(
    farm: Farm, thief: str, now_ms: int = TURNIP_RIPE_MS, daily: Daily | None = None
) -> StealOutcome:
    return steal(farm, RULES, now_ms, 0, OWNER, thief, daily or Daily(), OLD_FRIEND)


def with_farm(rules: Rules, **changes: Any) -> Rules:
    return dataclasses.replace(rules, farm=dataclasses.replace(rules.farm, **changes))


# --- plant and stage ---------------------------------------------------------------------------


def test_plant_sets_cycle_and_ripe_at() -> None:
    outcome = plant(Farm.empty(4), RULES, T0, 2, "turnip")
    assert outcome.crop == Crop("turnip", 1, T0, TURNIP_RIPE_MS, 20)
    assert outcome.farm.plots == (None, None, outcome.crop, None)
    assert outcome.farm.cycles == 1
    again = plant(outcome.farm, RULES, T0, 0, "odd")
    assert again.crop.cycle == 2


@pytest.mark.parametrize(
    ("plot", "seed", "code"),
    [
        (-1, "turnip", "BAD_PLOT"),
        (4, "turnip", "BAD_PLOT"),
        (True, "turnip", "BAD_PLOT"),
        (0, "turnip", "PLOT_BUSY"),
        (0, "carrot", "PLOT_BUSY"),  # the plot is checked before the seed
        (1, "carrot", "UNKNOWN_SEED"),
        (1, "", "UNKNOWN_SEED"),
    ],
)
def test_plant_refusal_table(plot: int, seed: str, code: str) -> None:
    farm = planted()
    assert code_of(lambda: plant(farm, RULES, T0, plot, seed)) == code


def test_plant_pads_a_farm_stored_with_fewer_plots() -> None:
    outcome = plant(Farm.empty(2), RULES, T0, 3, "turnip")
    assert len(outcome.farm.plots) == 4


@pytest.mark.parametrize(
    ("now_ms", "stage"),
    [(T0, "growing"), (TURNIP_RIPE_MS - 1, "growing"), (TURNIP_RIPE_MS, "ripe"), (2**50, "ripe")],
)
def test_crop_stage_at_the_edge(now_ms: int, stage: str) -> None:
    crop = planted().plots[0]
    assert crop is not None
    assert crop_stage(crop, now_ms) == stage


# --- harvest --------------------------------------------------------------------------------------


def test_harvest_exactly_at_ripe_pays_yield_and_empties_plot() -> None:
    outcome = harvest(planted(), RULES, TURNIP_RIPE_MS, 0, OWNER)
    assert outcome.coins == 20
    assert outcome.credit == Credit("harvest:owner:0:1", "harvest", 20, date(2027, 6, 30))
    assert outcome.farm.plots[0] is None
    assert outcome.farm.cycles == 1


@pytest.mark.parametrize(
    ("plot", "now_ms", "code"),
    [
        (0, TURNIP_RIPE_MS - 1, "NOT_RIPE"),
        (1, TURNIP_RIPE_MS, "PLOT_EMPTY"),
        (4, TURNIP_RIPE_MS, "BAD_PLOT"),
        (-1, TURNIP_RIPE_MS, "BAD_PLOT"),
    ],
)
def test_harvest_refusal_table(plot: int, now_ms: int, code: str) -> None:
    farm = planted()
    assert code_of(lambda: harvest(farm, RULES, now_ms, plot, OWNER)) == code


def test_harvest_pays_yield_minus_stolen_and_only_once() -> None:
    farm = steal_by(steal_by(planted(), "a").farm, "b").farm
    outcome = harvest(farm, RULES, TURNIP_RIPE_MS + 5, 0, OWNER)
    assert outcome.coins == 16
    assert outcome.credit is not None and outcome.credit.amount == 16
    assert code_of(lambda: harvest(outcome.farm, RULES, TURNIP_RIPE_MS + 6, 0, OWNER)) == (
        "PLOT_EMPTY"
    )


def test_harvest_uses_yield_fixed_at_planting() -> None:
    farm = planted()
    richer = dataclasses.replace(
        RULES,
        seeds=parse_rules(
            'version = "v"\n[signin]\nrewards = [1]\n[seeds.turnip]\n'
            "grow_s = 1\nyield_coins = 999\nsteal_share_pct = 1\nsteal_cap_pct = 1\n"
        ).seeds,
    )
    assert harvest(farm, richer, TURNIP_RIPE_MS, 0, OWNER).coins == 20


def test_harvest_crop_on_plot_beyond_shrunk_rules_still_works() -> None:
    farm = planted(plot=3)
    smaller = with_farm(RULES, plots=2)
    fitted = Farm.from_wire(farm.to_wire(), smaller.farm.plots)
    assert len(fitted.plots) == 4  # the crop on plot 3 is never dropped
    assert harvest(fitted, smaller, TURNIP_RIPE_MS, 3, OWNER).coins == 20
    assert code_of(lambda: plant(fitted, smaller, T0, 2, "turnip")) == "BAD_PLOT"


# --- water --------------------------------------------------------------------------------------


def water_by(
    farm: Farm,
    waterer: str,
    now_ms: int = T0,
    rules: Rules = RULES,
    daily: Daily | None = None,
    friendship: Friendship | None = OLD_FRIEND,
) -> WaterOutcome:
    return water(farm, rules, now_ms, 0, OWNER, waterer, daily or Daily(), friendship)


def test_water_share_moves_ripe_at_by_share_of_remaining_and_pays() -> None:
    outcome = water_by(planted(), "w", T0 + HOUR_MS)
    assert outcome.advanced_ms == 3 * HOUR_MS // 10
    assert outcome.crop.ripe_at_ms == TURNIP_RIPE_MS - 3 * HOUR_MS // 10
    assert outcome.crop.waterers == ("w",)
    assert outcome.reward_coins == 2
    assert outcome.credit == Credit("water:owner:0:1:w", "water", 2, date(2027, 6, 30))
    assert outcome.daily == Daily(D1, water_paid=1)
    assert outcome.farm.plots[0] == outcome.crop


@pytest.mark.parametrize(
    ("mode", "left_ms", "advanced_ms"),
    [
        ("share", 4 * HOUR_MS, 4 * HOUR_MS // 10),
        ("share", 9, 0),  # floor: a crop 9 ms from ripe moves 0 ms
        ("share", 1000, 100),
        ("fixed", 4 * HOUR_MS, 1_800_000),
        ("fixed", 1_800_000, 1_800_000),  # lands exactly on now: ripe at once
        ("fixed", 1_799_999, 1_799_999),  # never before now
        ("fixed", 1, 1),
    ],
)
def test_water_near_ripeness_never_moves_ripe_at_before_now(
    mode: WaterMode, left_ms: int, advanced_ms: int
) -> None:
    rules = with_farm(RULES, water=dataclasses.replace(RULES.farm.water, mode=mode))
    now_ms = TURNIP_RIPE_MS - left_ms
    outcome = water_by(planted(), "w", now_ms, rules)
    assert outcome.advanced_ms == advanced_ms
    assert outcome.crop.ripe_at_ms == TURNIP_RIPE_MS - advanced_ms
    assert outcome.crop.ripe_at_ms >= now_ms


def test_water_fixed_to_now_makes_crop_ripe_for_harvest() -> None:
    rules = with_farm(RULES, water=dataclasses.replace(RULES.farm.water, mode="fixed"))
    now_ms = TURNIP_RIPE_MS - 60_000
    farm = water_by(planted(), "w", now_ms, rules).farm
    assert harvest(farm, rules, now_ms, 0, OWNER).coins == 20


@pytest.mark.parametrize(
    ("waterer", "plot", "now_ms", "friendship", "code"),
    [
        (OWNER, 0, T0, OLD_FRIEND, "SELF_TARGET"),
        (OWNER, 9, T0, None, "SELF_TARGET"),  # self comes first
        ("w", 0, T0, None, "NOT_FRIENDS"),
        ("w", 9, T0, None, "NOT_FRIENDS"),  # friendship before plot
        ("w", 9, T0, OLD_FRIEND, "BAD_PLOT"),
        ("w", 1, T0, OLD_FRIEND, "PLOT_EMPTY"),
        ("w", 0, TURNIP_RIPE_MS, OLD_FRIEND, "ALREADY_RIPE"),
        ("already", 0, TURNIP_RIPE_MS, OLD_FRIEND, "ALREADY_RIPE"),  # stage before cycle
        ("already", 0, T0, OLD_FRIEND, "ALREADY_WATERED"),
    ],
)
def test_water_refusal_table(
    waterer: str, plot: int, now_ms: int, friendship: Friendship | None, code: str
) -> None:
    farm = water_by(planted(), "already", T0).farm
    call = lambda: water(farm, RULES, now_ms, plot, OWNER, waterer, Daily(), friendship)  # noqa: E731
    assert code_of(call) == code


def test_water_new_friendship_may_water() -> None:
    outcome = water_by(planted(), "w", T0, friendship=Friendship(T0))
    assert outcome.reward_coins == 2


def test_water_paid_up_to_daily_cap_then_unpaid() -> None:
    daily = Daily()
    paid = []
    for plot in range(4):
        farm = planted(plot=plot)
        outcome = water(farm, RULES, T0 + plot, plot, OWNER, "w", daily, OLD_FRIEND)
        daily = outcome.daily
        paid.append((outcome.reward_coins, outcome.credit is not None, outcome.advanced_ms > 0))
    assert paid == [(2, True, True)] * 3 + [(0, False, True)]
    assert daily == Daily(D1, water_paid=3)


def test_water_pays_again_on_next_business_day() -> None:
    spent = Daily(D1, water_paid=3)
    farm = plant(Farm.empty(4), RULES, at(D1, 22), 0, "turnip").farm
    late = water(farm, RULES, at(D1, 23, 59, 59, 999), 0, OWNER, "w", spent, OLD_FRIEND)
    assert late.reward_coins == 0
    early = water(farm, RULES, at(D1 + timedelta(days=1), 0), 0, OWNER, "w", spent, OLD_FRIEND)
    assert early.reward_coins == 2
    assert early.daily == Daily(D1 + timedelta(days=1), water_paid=1)


def test_water_zero_reward_never_credits() -> None:
    rules = with_farm(RULES, water=WaterRules(reward_coins=0))
    outcome = water_by(planted(), "w", T0, rules)
    assert (outcome.reward_coins, outcome.credit, outcome.daily.water_paid) == (0, None, 0)


# --- steal --------------------------------------------------------------------------------------


def test_steal_takes_share_and_credits_thief() -> None:
    outcome = steal_by(planted(), "t")
    assert outcome.coins == 2
    assert outcome.credit == Credit("steal:owner:0:1:t", "steal", 2, date(2027, 6, 30))
    assert outcome.crop.stolen_coins == 2
    assert outcome.crop.thieves == ("t",)
    assert outcome.daily == Daily(D1, steal_count=1, steal_coins=2)


@pytest.mark.parametrize(
    ("seed", "coins"),
    [
        ("turnip", [2, 2, 2, "STEAL_CAP_REACHED"]),  # third thief at 10 %/30 % gets 10 %
        ("odd", [2, 2, 2, 1, "STEAL_CAP_REACHED"]),  # the cap leaves less than a share
        ("tiny", [1, "STEAL_CAP_REACHED"]),  # floor(0.5) -> at least 1; cap floor(1.5) = 1
    ],
)
def test_steal_crop_cap_at_the_edge(seed: str, coins: list[int | str]) -> None:
    farm = planted(seed)
    crop = farm.plots[0]
    assert crop is not None
    got: list[int | str] = []
    for n, _ in enumerate(coins):
        try:
            outcome = steal(farm, RULES, crop.ripe_at_ms, 0, OWNER, f"t{n}", Daily(), OLD_FRIEND)
        except RuleViolation as error:
            got.append(error.code)
            break
        farm = outcome.farm
        got.append(outcome.coins)
    assert got == coins


def test_steal_owner_always_keeps_the_rest() -> None:
    farm = planted("odd")
    for thief in ("a", "b", "c", "d"):
        farm = steal_by(farm, thief).farm
    assert harvest(farm, RULES, TURNIP_RIPE_MS, 0, OWNER).coins == 25 - 7


@pytest.mark.parametrize(
    ("thief", "plot", "now_ms", "friendship", "code"),
    [
        (OWNER, 0, TURNIP_RIPE_MS, OLD_FRIEND, "SELF_TARGET"),
        (OWNER, 9, T0, None, "SELF_TARGET"),
        ("t", 9, T0, None, "NOT_FRIENDS"),
        ("t", 9, T0, Friendship(T0), "FRIENDSHIP_TOO_NEW"),  # friendship before plot
        ("t", 9, T0, OLD_FRIEND, "BAD_PLOT"),
        ("t", 1, T0, OLD_FRIEND, "PLOT_EMPTY"),
        ("t", 0, TURNIP_RIPE_MS - 1, OLD_FRIEND, "NOT_RIPE"),
        ("done", 0, TURNIP_RIPE_MS - 1, OLD_FRIEND, "NOT_RIPE"),
        ("done", 0, TURNIP_RIPE_MS, OLD_FRIEND, "ALREADY_STOLEN"),
    ],
)
def test_steal_refusal_table(
    thief: str, plot: int, now_ms: int, friendship: Friendship | None, code: str
) -> None:
    farm = steal_by(planted(), "done").farm
    call = lambda: steal(farm, RULES, now_ms, plot, OWNER, thief, Daily(), friendship)  # noqa: E731
    assert code_of(call) == code


@pytest.mark.parametrize(
    ("age_ms", "allowed"),
    [(DAY_MS - 1, False), (DAY_MS, True), (DAY_MS + 1, True), (0, False), (-5, False)],
)
def test_steal_friendship_cooldown_at_the_edge(age_ms: int, allowed: bool) -> None:
    friendship = Friendship(TURNIP_RIPE_MS - age_ms)

    def call() -> StealOutcome:
        return steal(planted(), RULES, TURNIP_RIPE_MS, 0, OWNER, "t", Daily(), friendship)

    if allowed:
        assert call().coins == 2
    else:
        assert code_of(call) == "FRIENDSHIP_TOO_NEW"


@pytest.mark.parametrize(
    ("daily", "result"),
    [
        (Daily(D1, steal_count=9, steal_coins=100), 2),
        (Daily(D1, steal_count=10, steal_coins=0), "DAILY_CAP_REACHED"),
        (Daily(D1, steal_count=0, steal_coins=199), 1),  # clipped to the coins left today
        (Daily(D1, steal_count=0, steal_coins=198), 2),
        (Daily(D1, steal_count=0, steal_coins=200), "DAILY_CAP_REACHED"),
        (Daily(D1 - timedelta(days=1), steal_count=10, steal_coins=200), 2),  # a new day
        (Daily(D1 + timedelta(days=1), steal_count=10), "DAILY_CAP_REACHED"),  # clock skew
    ],
)
def test_steal_thief_daily_caps_at_the_edge(daily: Daily, result: int | str) -> None:
    farm = planted()
    if isinstance(result, str):
        assert code_of(lambda: steal_by(farm, "t", daily=daily)) == result
    else:
        outcome = steal_by(farm, "t", daily=daily)
        assert outcome.coins == result
        base = daily.on(D1)
        assert outcome.daily == Daily(
            D1, base.water_paid, base.steal_count + 1, base.steal_coins + result
        )


def test_steal_crop_cap_checked_before_daily_cap() -> None:
    farm = planted("tiny")
    farm = steal(farm, RULES, T0 + 60_000, 0, OWNER, "a", Daily(), OLD_FRIEND).farm
    spent = Daily(D1, steal_count=10)
    call = lambda: steal(farm, RULES, T0 + 60_000, 0, OWNER, "b", spent, OLD_FRIEND)  # noqa: E731
    assert code_of(call) == "STEAL_CAP_REACHED"


def test_steal_daily_zero_cap_refuses() -> None:
    rules = with_farm(RULES, steal=StealRules(count_per_day_max=0))
    call = lambda: steal(planted(), rules, TURNIP_RIPE_MS, 0, OWNER, "t", Daily(), OLD_FRIEND)  # noqa: E731
    assert code_of(call) == "DAILY_CAP_REACHED"


def test_steal_after_harvest_is_plot_empty_and_replant_allows_again() -> None:
    farm = steal_by(planted(), "t").farm
    farm = harvest(farm, RULES, TURNIP_RIPE_MS, 0, OWNER).farm
    assert code_of(lambda: steal_by(farm, "t")) == "PLOT_EMPTY"
    replanted = plant(farm, RULES, TURNIP_RIPE_MS, 0, "turnip").farm
    later = TURNIP_RIPE_MS + 4 * HOUR_MS
    outcome = steal_by(replanted, "t", later)
    assert outcome.crop.cycle == 2
    assert outcome.credit.transfer_id == "steal:owner:0:2:t"


def test_steal_seed_withdrawn_from_catalog_is_cap_reached_but_harvest_pays() -> None:
    farm = planted("odd")
    rules = dataclasses.replace(
        RULES, seeds=type(RULES.seeds)(tuple(s for s in RULES.seeds.values() if s.name != "odd"))
    )
    assert code_of(
        lambda: steal(farm, rules, TURNIP_RIPE_MS, 0, OWNER, "t", Daily(), OLD_FRIEND)
    ) == ("STEAL_CAP_REACHED")
    assert harvest(farm, rules, TURNIP_RIPE_MS, 0, OWNER).coins == 25


# --- views ----------------------------------------------------------------------------------------


def test_crop_view_for_owner() -> None:
    farm = steal_by(planted(), "t").farm
    crop = farm.plots[0]
    assert crop is not None
    assert crop_view(crop, TURNIP_RIPE_MS) == {
        "seed": "turnip",
        "cycle": 1,
        "stage": "ripe",
        "ripe_at_ms": TURNIP_RIPE_MS,
        "yield_coins": 20,
        "stolen_coins": 2,
    }


@pytest.mark.parametrize(
    ("visitor", "now_ms", "friendship", "can_steal", "can_water"),
    [
        ("v", T0, OLD_FRIEND, False, True),
        ("v", TURNIP_RIPE_MS, OLD_FRIEND, True, False),
        ("t", TURNIP_RIPE_MS, OLD_FRIEND, False, False),  # already stole
        ("w", T0, OLD_FRIEND, False, False),  # already watered
        ("v", TURNIP_RIPE_MS, Friendship(TURNIP_RIPE_MS), False, False),  # too new
        ("v", T0, Friendship(T0), False, True),  # too new to steal, fine to water
        ("v", T0, None, False, False),
    ],
)
def test_visitor_view_table(
    visitor: str, now_ms: int, friendship: Friendship | None, can_steal: bool, can_water: bool
) -> None:
    farm = water_by(planted(), "w", T0).farm
    farm = steal_by(farm, "t", TURNIP_RIPE_MS).farm
    crop = farm.plots[0]
    assert crop is not None
    view = visitor_view(crop, RULES, now_ms, visitor, Daily(), friendship)
    assert set(view) == {"seed", "stage", "ripe_at_ms", "can_steal", "can_water"}
    assert (view["can_steal"], view["can_water"]) == (can_steal, can_water)


# --- state and wire forms ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("daily", "day", "expected"),
    [
        (Daily(), D1, Daily(D1)),
        (Daily(D1, 3, 4, 50), D1, Daily(D1, 3, 4, 50)),
        (Daily(D1, 3, 4, 50), D1 + timedelta(days=1), Daily(D1 + timedelta(days=1))),
        (Daily(D1, 3, 4, 50), D1 - timedelta(days=1), Daily(D1, 3, 4, 50)),
    ],
)
def test_daily_on_table(daily: Daily, day: date, expected: Daily) -> None:
    assert daily.on(day) == expected


@pytest.mark.parametrize(
    ("now_ms", "day"),
    [
        (at(D1, 23, 59, 59, 999), D1),
        (at(D1 + timedelta(days=1), 0), D1 + timedelta(days=1)),
        # 16:00 UTC is Shanghai midnight: the business day turns there, not at UTC midnight.
        (at(D1 + timedelta(days=1), 7, 59), D1 + timedelta(days=1)),
    ],
)
def test_daily_resets_on_new_business_day_in_shanghai(now_ms: int, day: date) -> None:
    spent = Daily(D1, steal_count=10, steal_coins=200)
    farm = plant(Farm.empty(4), RULES, now_ms - 4 * HOUR_MS, 0, "turnip").farm
    if day == D1:
        assert code_of(lambda: steal_by(farm, "t", now_ms, spent)) == "DAILY_CAP_REACHED"
    else:
        assert steal_by(farm, "t", now_ms, spent).daily == Daily(day, 0, 1, 2)


def test_farm_wire_round_trip() -> None:
    farm = water_by(planted(), "w", T0).farm
    farm = plant(farm, RULES, T0, 2, "odd").farm
    farm = steal_by(farm, "t", TURNIP_RIPE_MS).farm
    wire = farm.to_wire()
    assert Farm.from_wire(wire) == farm
    assert wire["n"] == 2
    crop = farm.plots[0]
    assert crop is not None
    assert crop.to_wire() == {
        "s": "turnip",
        "c": 1,
        "p": T0,
        "r": crop.ripe_at_ms,
        "y": 20,
        "x": 2,
        "t": ["t"],
        "w": ["w"],
    }


@pytest.mark.parametrize(
    ("stored", "plots", "expected_len"), [(2, 6, 6), (6, 6, 6), (6, 2, 2), (1, 24, 24)]
)
def test_farm_from_wire_pads_to_rules_plots(stored: int, plots: int, expected_len: int) -> None:
    farm = Farm.from_wire(Farm.empty(stored).to_wire(), plots)
    assert farm.plots == (None,) * expected_len


def test_daily_wire_round_trip() -> None:
    for daily in (Daily(), Daily(D1, 1, 2, 3)):
        assert Daily.from_wire(daily.to_wire()) == daily
    assert Daily(D1, 1, 2, 3).to_wire() == {"d": "2026-03-01", "w": 1, "k": 2, "c": 3}


GOOD_CROP = {"s": "turnip", "c": 1, "p": 0, "r": 10, "y": 20, "x": 0, "t": [], "w": []}


@pytest.mark.parametrize(
    "data",
    [
        None,
        [],
        {"p": [], "n": 0},  # no plots at all
        {"p": [None] * 25, "n": 0},
        {"p": [None], "n": -1},
        {"p": [None], "n": True},
        {"p": [None], "n": 0, "x": 1},
        {"p": None, "n": 0},
        {"p": [{**GOOD_CROP}], "n": 0},  # cycle beyond the farm's count
        {"p": [GOOD_CROP, GOOD_CROP], "n": 1},  # one cycle on two plots
        {"p": [{**GOOD_CROP, "s": "Turnip!"}], "n": 1},
        {"p": [{**GOOD_CROP, "c": 0}], "n": 1},
        {"p": [{**GOOD_CROP, "r": -1}], "n": 1},
        {"p": [{**GOOD_CROP, "p": 20, "r": 10}], "n": 1},
        {"p": [{**GOOD_CROP, "x": 20}], "n": 1},  # stole the whole yield
        {"p": [{**GOOD_CROP, "x": 1, "t": ["a", "b"]}], "n": 1},
        {"p": [{**GOOD_CROP, "x": 4, "t": ["a", "a"]}], "n": 1},
        {"p": [{**GOOD_CROP, "w": [1]}], "n": 1},
        {"p": [{**GOOD_CROP, "w": [""]}], "n": 1},
        {"p": [{**GOOD_CROP, "y": 1.5}], "n": 1},
        {"p": [{k: v for k, v in GOOD_CROP.items() if k != "w"}], "n": 1},
        {"p": ["crop"], "n": 1},
    ],
)
def test_farm_from_wire_malformed_is_value_error(data: object) -> None:
    with pytest.raises(ValueError):
        Farm.from_wire(data)


@pytest.mark.parametrize(
    "data",
    [
        None,
        {"d": None, "w": 1, "k": 0, "c": 0},
        {"d": "2026-03-01", "w": -1, "k": 0, "c": 0},
        {"d": "20260301", "w": 0, "k": 0, "c": 0},
        {"d": "2026-03-01", "w": 0, "k": 0},
        {"d": "2026-03-01", "w": 0, "k": False, "c": 0},
    ],
)
def test_daily_from_wire_malformed_is_value_error(data: object) -> None:
    with pytest.raises(ValueError):
        Daily.from_wire(data)


# --- property -------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    yield_coins=st.integers(min_value=1, max_value=100_000),
    share_pct=st.integers(min_value=1, max_value=99),
    cap_extra_pct=st.integers(min_value=0, max_value=98),
    thieves=st.integers(min_value=0, max_value=60),
    daily_coins=st.integers(min_value=0, max_value=300),
)
def test_steal_property_caps_hold_and_coins_add_up(
    yield_coins: int, share_pct: int, cap_extra_pct: int, thieves: int, daily_coins: int
) -> None:
    cap_pct = min(99, share_pct + cap_extra_pct)
    text = (
        f'version = "p"\n[signin]\nrewards = [1]\n[seeds.x]\ngrow_s = 1\n'
        f"yield_coins = {yield_coins}\nsteal_share_pct = {share_pct}\nsteal_cap_pct = {cap_pct}\n"
    )
    rules = parse_rules(text)
    farm = plant(Farm.empty(6), rules, T0, 0, "x").farm
    ripe_ms = T0 + 1000
    credited = 0
    for n in range(thieves):
        daily = Daily(D1, steal_coins=daily_coins)
        try:
            outcome = steal(farm, rules, ripe_ms, 0, OWNER, f"t{n}", daily, OLD_FRIEND)
        except RuleViolation as error:
            assert error.code in {"STEAL_CAP_REACHED", "DAILY_CAP_REACHED"}
            continue
        assert 1 <= outcome.coins <= max(1, yield_coins * share_pct // 100)
        assert outcome.credit.amount == outcome.coins
        credited += outcome.coins
        farm = outcome.farm
    crop = farm.plots[0]
    assert crop is not None
    assert crop.stolen_coins == credited <= yield_coins * cap_pct // 100
    assert harvest(farm, rules, ripe_ms, 0, OWNER).coins + credited == yield_coins
