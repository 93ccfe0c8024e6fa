"""The farm: plant, harvest, water a friend's crop, steal from a friend's ripe crop.

Crops ripen lazily: a crop stores `ripe_at_ms` and every reading computes the stage.
Plots are numbered from 0. `Farm.cycles` counts plantings, so `(owner, cycle)` names one
crop cycle for ever and the credit ids derived from it repeat only for the same event.
A crop keeps the yield it was planted with: a rules reload changes the next planting,
never what is already growing (so harvest + stolen == yield always holds).

The state these actions take and return (`Crop`, `Farm`, `Daily`) and its store format
are in game_rules/farm_state.py; this module re-exports them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal

from game_rules.calendar import business_day, expiry_batch
from game_rules.errors import RuleViolation
from game_rules.farm_state import Crop, Daily, Farm
from game_rules.rules import Rules
from game_rules.signin import Credit

HARVEST_SOURCE = "harvest"
WATER_SOURCE = "water"
STEAL_SOURCE = "steal"
Stage = Literal["growing", "ripe"]

# Crop, Daily and Farm are re-exported: the server and the tests import them from here.
__all__ = [
    "HARVEST_SOURCE",
    "STEAL_SOURCE",
    "WATER_SOURCE",
    "Crop",
    "Daily",
    "Farm",
    "Friendship",
    "HarvestOutcome",
    "PlantOutcome",
    "Stage",
    "StealOutcome",
    "WaterOutcome",
    "crop_stage",
    "crop_view",
    "harvest",
    "plant",
    "steal",
    "visitor_view",
    "water",
]


@dataclass(frozen=True, slots=True)
class Friendship:
    """An established friendship, since `since_ms`. Not friends: pass None instead."""

    since_ms: int


@dataclass(frozen=True, slots=True)
class PlantOutcome:
    farm: Farm
    crop: Crop


@dataclass(frozen=True, slots=True)
class HarvestOutcome:
    farm: Farm
    coins: int
    credit: Credit | None


@dataclass(frozen=True, slots=True)
class WaterOutcome:
    farm: Farm
    crop: Crop
    advanced_ms: int
    reward_coins: int
    credit: Credit | None
    daily: Daily


@dataclass(frozen=True, slots=True)
class StealOutcome:
    farm: Farm
    crop: Crop
    coins: int
    credit: Credit
    daily: Daily


def crop_stage(crop: Crop, now_ms: int) -> Stage:
    """ "ripe" from ripe_at_ms on (inclusive), "growing" before."""
    return "ripe" if now_ms >= crop.ripe_at_ms else "growing"


def crop_view(crop: Crop, now_ms: int) -> dict[str, object]:
    """The owner's view of one crop."""
    return {
        "seed": crop.seed,
        "cycle": crop.cycle,
        "stage": crop_stage(crop, now_ms),
        "ripe_at_ms": crop.ripe_at_ms,
        "yield_coins": crop.yield_coins,
        "stolen_coins": crop.stolen_coins,
    }


def visitor_view(
    crop: Crop,
    rules: Rules,
    now_ms: int,
    visitor_id: str,
    daily: Daily,
    friendship: Friendship | None,
) -> dict[str, object]:
    """A friend's view of one crop: no yield, thieves or waterers, but whether `steal` and
    `water` would succeed now (the same checks, so the buttons never lie)."""
    return {
        "seed": crop.seed,
        "stage": crop_stage(crop, now_ms),
        "ripe_at_ms": crop.ripe_at_ms,
        "can_steal": _allowed(_steal_coins, crop, rules, now_ms, visitor_id, daily, friendship),
        "can_water": _allowed(_check_water, crop, rules, now_ms, visitor_id, daily, friendship),
    }


def plant(farm: Farm, rules: Rules, now_ms: int, plot: int, seed: str) -> PlantOutcome:
    """Plant `seed` on an empty plot. Checks in order: plot (BAD_PLOT: not in
    0..rules.farm.plots-1), PLOT_BUSY, UNKNOWN_SEED."""
    farm = farm.fit(rules.farm.plots)
    if not _is_index(plot) or not 0 <= plot < rules.farm.plots:
        raise RuleViolation("BAD_PLOT", f"plot must be in 0..{rules.farm.plots - 1}, got {plot}")
    if farm.plots[plot] is not None:
        raise RuleViolation("PLOT_BUSY", f"plot {plot} already has a crop")
    seed_rules = rules.seeds.get(seed)
    if seed_rules is None:
        raise RuleViolation("UNKNOWN_SEED", f"no seed {seed!r}; seeds: {', '.join(rules.seeds)}")
    cycle = farm.cycles + 1
    crop = Crop(seed, cycle, now_ms, now_ms + seed_rules.grow_ms, seed_rules.yield_coins)
    return PlantOutcome(_put(farm, plot, crop, cycles=cycle), crop)


def harvest(farm: Farm, rules: Rules, now_ms: int, plot: int, owner_id: str) -> HarvestOutcome:
    """The owner takes the yield minus what thieves stole; the plot becomes empty, so a
    cycle pays once. Checks in order: BAD_PLOT, PLOT_EMPTY, NOT_RIPE."""
    crop = _crop_at(farm, plot)
    if crop_stage(crop, now_ms) != "ripe":
        raise RuleViolation("NOT_RIPE", f"plot {plot} ripens at {crop.ripe_at_ms}")
    coins = crop.yield_coins - crop.stolen_coins
    credit = None
    if coins > 0:
        credit = Credit(
            transfer_id=f"harvest:{owner_id}:{plot}:{crop.cycle}",
            source=HARVEST_SOURCE,
            amount=coins,
            batch=expiry_batch(business_day(now_ms, rules.tz), rules.expiry),
        )
    return HarvestOutcome(_put(farm, plot, None), coins, credit)


def water(
    farm: Farm,
    rules: Rules,
    now_ms: int,
    plot: int,
    owner_id: str,
    waterer_id: str,
    daily: Daily,
    friendship: Friendship | None,
) -> WaterOutcome:
    """A friend waters a growing crop: ripe_at_ms moves forward by share_pct of the time
    left (floor) or by fixed_ms, never before now_ms. Pays reward_coins while the
    waterer's paid waterings today are under paid_per_day_max, else waters unpaid.

    `daily` is the waterer's. Checks in order: SELF_TARGET, NOT_FRIENDS (no cooldown:
    watering only helps the owner), BAD_PLOT, PLOT_EMPTY, ALREADY_RIPE, ALREADY_WATERED.
    """
    if waterer_id == owner_id:
        raise RuleViolation("SELF_TARGET", "water your friends' crops, not your own")
    crop = _crop_for_visitor(farm, plot, friendship)
    _check_water(crop, rules, now_ms, waterer_id, daily, friendship)
    left_ms = crop.ripe_at_ms - now_ms
    if rules.farm.water.mode == "share":
        advanced_ms = left_ms * rules.farm.water.share_pct // 100
    else:
        advanced_ms = min(rules.farm.water.fixed_ms, left_ms)
    watered = replace(
        crop, ripe_at_ms=crop.ripe_at_ms - advanced_ms, waterers=(*crop.waterers, waterer_id)
    )
    today = business_day(now_ms, rules.tz)
    daily = daily.on(today)
    reward = rules.farm.water.reward_coins
    credit = None
    if reward > 0 and daily.water_paid < rules.farm.water.paid_per_day_max:
        daily = replace(daily, water_paid=daily.water_paid + 1)
        credit = Credit(
            transfer_id=f"water:{owner_id}:{plot}:{crop.cycle}:{waterer_id}",
            source=WATER_SOURCE,
            amount=reward,
            batch=expiry_batch(today, rules.expiry),
        )
    else:
        reward = 0
    return WaterOutcome(_put(farm, plot, watered), watered, advanced_ms, reward, credit, daily)


def steal(
    farm: Farm,
    rules: Rules,
    now_ms: int,
    plot: int,
    owner_id: str,
    thief_id: str,
    daily: Daily,
    friendship: Friendship | None,
) -> StealOutcome:
    """A friend takes a share of a ripe, unharvested crop: floor(yield * share_pct / 100),
    at least 1 coin, clipped to what the crop's cap leaves
    (floor(yield * cap_pct / 100) - stolen) and to the thief's coins left today.

    `daily` is the thief's. Checks in order: SELF_TARGET, NOT_FRIENDS,
    FRIENDSHIP_TOO_NEW (now_ms - since_ms < friendship_cooldown_ms), BAD_PLOT,
    PLOT_EMPTY, NOT_RIPE, ALREADY_STOLEN (once per thief and cycle), STEAL_CAP_REACHED
    (the crop's cap; also for a seed no longer in the catalog), DAILY_CAP_REACHED (the
    thief's steals or coins today).
    """
    if thief_id == owner_id:
        raise RuleViolation("SELF_TARGET", "you cannot steal from your own farm")
    _check_friendship_age(rules, now_ms, friendship)
    crop = _crop_at(farm, plot)
    coins = _steal_coins(crop, rules, now_ms, thief_id, daily, friendship)
    today = business_day(now_ms, rules.tz)
    daily = daily.on(today)
    daily = replace(daily, steal_count=daily.steal_count + 1, steal_coins=daily.steal_coins + coins)
    robbed = replace(
        crop, stolen_coins=crop.stolen_coins + coins, thieves=(*crop.thieves, thief_id)
    )
    credit = Credit(
        transfer_id=f"steal:{owner_id}:{plot}:{crop.cycle}:{thief_id}",
        source=STEAL_SOURCE,
        amount=coins,
        batch=expiry_batch(today, rules.expiry),
    )
    return StealOutcome(_put(farm, plot, robbed), robbed, coins, credit, daily)


# --- checks shared by the actions and the visitor view ---------------------------------------


def _check_friendship_age(rules: Rules, now_ms: int, friendship: Friendship | None) -> None:
    if friendship is None:
        raise RuleViolation("NOT_FRIENDS", "only friends can do that")
    age_ms = now_ms - friendship.since_ms
    if age_ms < rules.farm.friendship_cooldown_ms:
        wait_s = -(-(rules.farm.friendship_cooldown_ms - age_ms) // 1000)
        raise RuleViolation("FRIENDSHIP_TOO_NEW", f"this friendship is too new; wait {wait_s} s")


def _check_water(
    crop: Crop,
    rules: Rules,
    now_ms: int,
    waterer_id: str,
    daily: Daily,
    friendship: Friendship | None,
) -> None:
    """Crop-level water checks (after self, friendship and plot)."""
    if friendship is None:
        raise RuleViolation("NOT_FRIENDS", "only friends can water")
    if crop_stage(crop, now_ms) == "ripe":
        raise RuleViolation("ALREADY_RIPE", "this crop is ripe; it needs no water")
    if waterer_id in crop.waterers:
        raise RuleViolation("ALREADY_WATERED", "you already watered this crop")


def _steal_coins(
    crop: Crop,
    rules: Rules,
    now_ms: int,
    thief_id: str,
    daily: Daily,
    friendship: Friendship | None,
) -> int:
    """Crop-level steal checks and the coins a steal takes (after self and plot)."""
    _check_friendship_age(rules, now_ms, friendship)
    if crop_stage(crop, now_ms) != "ripe":
        raise RuleViolation("NOT_RIPE", f"this crop ripens at {crop.ripe_at_ms}")
    if thief_id in crop.thieves:
        raise RuleViolation("ALREADY_STOLEN", "you already stole from this crop")
    seed = rules.seeds.get(crop.seed)
    cap_coins = 0 if seed is None else crop.yield_coins * seed.steal_cap_pct // 100
    left_coins = cap_coins - crop.stolen_coins
    if left_coins <= 0:
        raise RuleViolation("STEAL_CAP_REACHED", "thieves already took all they may from this")
    daily = daily.on(business_day(now_ms, rules.tz))
    steal_rules = rules.farm.steal
    daily_left_coins = steal_rules.coins_per_day_max - daily.steal_coins
    if daily.steal_count >= steal_rules.count_per_day_max or daily_left_coins <= 0:
        raise RuleViolation("DAILY_CAP_REACHED", "you have stolen enough for today")
    assert seed is not None  # cap_coins > 0
    share_coins = max(1, crop.yield_coins * seed.steal_share_pct // 100)
    return min(share_coins, left_coins, daily_left_coins)


def _allowed(
    check: Callable[[Crop, Rules, int, str, Daily, Friendship | None], object],
    crop: Crop,
    rules: Rules,
    now_ms: int,
    visitor_id: str,
    daily: Daily,
    friendship: Friendship | None,
) -> bool:
    try:
        check(crop, rules, now_ms, visitor_id, daily, friendship)
    except RuleViolation:
        return False
    return True


def _crop_for_visitor(farm: Farm, plot: int, friendship: Friendship | None) -> Crop:
    if friendship is None:
        raise RuleViolation("NOT_FRIENDS", "only friends can do that")
    return _crop_at(farm, plot)


def _crop_at(farm: Farm, plot: int) -> Crop:
    if not _is_index(plot) or not 0 <= plot < len(farm.plots):
        raise RuleViolation("BAD_PLOT", f"plot must be in 0..{len(farm.plots) - 1}, got {plot}")
    crop = farm.plots[plot]
    if crop is None:
        raise RuleViolation("PLOT_EMPTY", f"plot {plot} has no crop")
    return crop


def _is_index(plot: object) -> bool:
    return isinstance(plot, int) and not isinstance(plot, bool)


def _put(farm: Farm, plot: int, crop: Crop | None, cycles: int | None = None) -> Farm:
    cells = list(farm.plots)
    cells[plot] = crop
    return Farm(tuple(cells), farm.cycles if cycles is None else cycles)
