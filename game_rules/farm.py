"""The farm: plant, harvest, water a friend's crop, steal from a friend's ripe crop.

Crops ripen lazily: a crop stores `ripe_at_ms` and every reading computes the stage.
Plots are numbered from 0. `Farm.cycles` counts plantings, so `(owner, cycle)` names one
crop cycle for ever and the credit ids derived from it repeat only for the same event.
A crop keeps the yield it was planted with: a rules reload changes the next planting,
never what is already growing (so harvest + stolen == yield always holds).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date
from typing import Literal

from game_rules.calendar import business_day, expiry_batch
from game_rules.errors import RuleViolation
from game_rules.rules import FRIENDS_CEILING, PLOTS_MAX, SEED_NAME_RE, Rules
from game_rules.signin import Credit

HARVEST_SOURCE = "harvest"
WATER_SOURCE = "water"
STEAL_SOURCE = "steal"
Stage = Literal["growing", "ripe"]
_PLAYERS_PER_CROP_MAX = FRIENDS_CEILING  # thieves or waterers of one crop: friends only


def _wire_int(data: dict[object, object], key: str, what: str, value_min: int = 0) -> int:
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < value_min:
        raise ValueError(f"{what} {key!r} must be an integer >= {value_min}, got {value!r}")
    return value


def _wire_map(data: object, keys: set[str], what: str) -> dict[object, object]:
    if not isinstance(data, dict) or set(data) != keys:
        raise ValueError(f"{what} must be a map with keys {sorted(keys)}, got {data!r}")
    return data


def _wire_day(value: object, what: str) -> date | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{what} 'd' must be a date string or nil, got {value!r}")
    day = date.fromisoformat(value)  # ValueError on garbage
    if day.isoformat() != value:
        raise ValueError(f"{what} 'd' must be YYYY-MM-DD, got {value!r}")
    return day


def _wire_ids(value: object, key: str) -> tuple[str, ...]:
    if not isinstance(value, list) or len(value) > _PLAYERS_PER_CROP_MAX:
        raise ValueError(f"crop {key!r} must be a list of player ids, got {value!r}")
    if not all(isinstance(item, str) for item in value):
        raise ValueError(f"crop {key!r} must hold player id strings, got {value!r}")
    return tuple(value)


@dataclass(frozen=True, slots=True)
class Crop:
    seed: str
    cycle: int  # the farm's planting number, 1-based
    planted_at_ms: int
    ripe_at_ms: int
    yield_coins: int  # fixed when planted
    stolen_coins: int = 0
    thieves: tuple[str, ...] = ()  # who stole this cycle, in order
    waterers: tuple[str, ...] = ()  # who watered this cycle, in order

    def __post_init__(self) -> None:
        if not SEED_NAME_RE.fullmatch(self.seed):
            raise ValueError(f"crop seed must be a seed name, got {self.seed!r}")
        if self.cycle < 1 or self.yield_coins < 1 or self.planted_at_ms < 0:
            raise ValueError(f"crop cycle, yield and planted_at must be positive: {self!r}")
        if self.ripe_at_ms < self.planted_at_ms:
            raise ValueError(f"crop ripens before it was planted: {self!r}")
        if not 0 <= self.stolen_coins < self.yield_coins:
            raise ValueError(f"crop stolen_coins must be in 0..yield-1: {self!r}")
        for players in (self.thieves, self.waterers):
            if len(set(players)) != len(players) or not all(players):
                raise ValueError(f"crop thieves/waterers must be distinct ids: {self!r}")
        if len(self.thieves) > self.stolen_coins:
            raise ValueError(f"every thief took at least one coin: {self!r}")

    def to_wire(self) -> dict[str, object]:
        return {
            "s": self.seed,
            "c": self.cycle,
            "p": self.planted_at_ms,
            "r": self.ripe_at_ms,
            "y": self.yield_coins,
            "x": self.stolen_coins,
            "t": list(self.thieves),
            "w": list(self.waterers),
        }

    @classmethod
    def from_wire(cls, data: object) -> Crop:
        """Inverse of to_wire; anything else raises ValueError (the store is not trusted)."""
        crop = _wire_map(data, {"s", "c", "p", "r", "y", "x", "t", "w"}, "crop")
        seed = crop["s"]
        if not isinstance(seed, str):
            raise ValueError(f"crop 's' must be a seed name, got {seed!r}")
        return cls(
            seed=seed,
            cycle=_wire_int(crop, "c", "crop", 1),
            planted_at_ms=_wire_int(crop, "p", "crop"),
            ripe_at_ms=_wire_int(crop, "r", "crop"),
            yield_coins=_wire_int(crop, "y", "crop", 1),
            stolen_coins=_wire_int(crop, "x", "crop"),
            thieves=_wire_ids(crop["t"], "t"),
            waterers=_wire_ids(crop["w"], "w"),
        )


@dataclass(frozen=True, slots=True)
class Farm:
    plots: tuple[Crop | None, ...]
    cycles: int = 0  # plantings so far; the next crop gets cycle cycles + 1

    def __post_init__(self) -> None:
        if not 1 <= len(self.plots) <= PLOTS_MAX:
            raise ValueError(f"a farm has 1..{PLOTS_MAX} plots, got {len(self.plots)}")
        cycles = [crop.cycle for crop in self.plots if crop is not None]
        if len(set(cycles)) != len(cycles) or any(cycle > self.cycles for cycle in cycles):
            raise ValueError(f"crop cycles must be distinct and <= {self.cycles}: {cycles}")

    @classmethod
    def empty(cls, plots: int) -> Farm:
        return cls((None,) * plots)

    def fit(self, plots: int) -> Farm:
        """The farm with `plots` plots: pads with empty plots, and drops only empty plots
        past `plots` (a crop on a plot the rules no longer have stays until harvested)."""
        cells = list(self.plots) + [None] * (plots - len(self.plots))
        while len(cells) > plots and cells[-1] is None:
            cells.pop()
        fitted = tuple(cells)
        return self if fitted == self.plots else Farm(fitted, self.cycles)

    def to_wire(self) -> dict[str, object]:
        return {
            "p": [None if crop is None else crop.to_wire() for crop in self.plots],
            "n": self.cycles,
        }

    @classmethod
    def from_wire(cls, data: object, plots: int | None = None) -> Farm:
        """Inverse of to_wire, then fit(plots) when given; ValueError on anything else."""
        farm = _wire_map(data, {"p", "n"}, "farm")
        cells = farm["p"]
        if not isinstance(cells, list):
            raise ValueError(f"farm 'p' must be a list of crops, got {cells!r}")
        crops = tuple(None if cell is None else Crop.from_wire(cell) for cell in cells)
        result = cls(crops, _wire_int(farm, "n", "farm"))
        return result if plots is None else result.fit(plots)


@dataclass(frozen=True, slots=True)
class Daily:
    """A player's farm actions on one business day; `on(day)` starts a new day."""

    day: date | None = None
    water_paid: int = 0
    steal_count: int = 0
    steal_coins: int = 0

    def __post_init__(self) -> None:
        counts = (self.water_paid, self.steal_count, self.steal_coins)
        if min(counts) < 0 or (self.day is None and any(counts)):
            raise ValueError(f"daily counts must be >= 0, and 0 without a day: {self!r}")

    def on(self, day: date) -> Daily:
        """The counts for `day`: fresh on a later day. On the same or an earlier day (the
        clock went back) the counts go on, so a skewed clock never resets a cap."""
        if self.day is None or day > self.day:
            return Daily(day)
        return self

    def to_wire(self) -> dict[str, object]:
        day = None if self.day is None else self.day.isoformat()
        return {"d": day, "w": self.water_paid, "k": self.steal_count, "c": self.steal_coins}

    @classmethod
    def from_wire(cls, data: object) -> Daily:
        daily = _wire_map(data, {"d", "w", "k", "c"}, "daily")
        return cls(
            _wire_day(daily["d"], "daily"),
            _wire_int(daily, "w", "daily"),
            _wire_int(daily, "k", "daily"),
            _wire_int(daily, "c", "daily"),
        )


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
