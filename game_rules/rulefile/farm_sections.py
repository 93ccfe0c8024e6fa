"""The farm's sections: [farm] with its sub-tables [farm.water] and [farm.steal], the seed
catalog [seeds.<name>], and [notify], the push-trigger limits (quiet hours, the daily
cap, the streak reminder time, the window that batches thefts). Each section is a frozen
dataclass, whose defaults are the values a file may leave out, and a reader that goes
through a `Table` and returns None when any of its values had a problem. The rules that
use these numbers live in game_rules/farm.py and game_rules/notify.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import time
from typing import Literal

from game_rules.rulefile.catalog import NAME_RE, Catalog, read_catalog
from game_rules.rulefile.limits import DAY_S, MS_PER_S, REWARD_COINS_MAX
from game_rules.rulefile.table import Table

PLOTS_MAX = 24
FRIENDS_CEILING = 5000  # the highest friends_max a rules file may set
FRIENDSHIP_COOLDOWN_S_MAX = 30 * DAY_S
WATER_SHARE_PCT_MAX = 90
WATER_FIXED_S_MAX = 7 * DAY_S
PER_DAY_MAX_CEILING = 1000  # the highest *_per_day_max a rules file may set
SEEDS_LEN_MAX = 32
THEFT_BATCH_S_MAX = DAY_S
SEED_NAME_RE = NAME_RE
GROW_S_MAX = 30 * DAY_S
TRIGGERS_PER_DAY_MAX_CEILING = 100
WaterMode = Literal["share", "fixed"]
WATER_MODES: tuple[WaterMode, ...] = ("share", "fixed")


@dataclass(frozen=True, slots=True)
class SeedRules:
    """One seed of the catalog. Thieves each take steal_share_pct of the yield (floor, at
    least 1 coin); together at most floor(yield * steal_cap_pct / 100)."""

    name: str
    grow_ms: int
    yield_coins: int
    steal_share_pct: int
    steal_cap_pct: int


SeedCatalog = Catalog[SeedRules]


@dataclass(frozen=True, slots=True)
class WaterRules:
    """ "share": ripe_at moves forward by share_pct of the remaining time; "fixed": by
    fixed_ms; never past the moment of watering."""

    mode: WaterMode = "share"
    share_pct: int = 10
    fixed_ms: int = 1800 * MS_PER_S
    reward_coins: int = 2
    paid_per_day_max: int = 10


@dataclass(frozen=True, slots=True)
class StealRules:
    """Per thief and business day."""

    count_per_day_max: int = 10
    coins_per_day_max: int = 200


@dataclass(frozen=True, slots=True)
class FarmRules:
    plots: int = 6
    friends_max: int = 200  # friends and pending requests, sent or received
    friendship_cooldown_ms: int = DAY_S * MS_PER_S
    water: WaterRules = WaterRules()
    steal: StealRules = StealRules()
    # Blocks have a limit of their own: blocking is never held back by having many
    # friends, and blocking made-up ids is no way to grow an edge list past friends_max.
    blocks_max: int = 200


@dataclass(frozen=True, slots=True)
class NotifyRules:
    """Local times in the rules' time zone. quiet_start == quiet_end: no quiet hours."""

    quiet_start: time = time(22, 0)
    quiet_end: time = time(8, 0)
    triggers_per_day_max: int = 5
    streak_reminder_at: time = time(20, 0)
    theft_batch_ms: int = 600 * MS_PER_S  # thefts within this window make one trigger


SEEDS_DEFAULT = SeedCatalog(
    (
        SeedRules("turnip", 4 * 3600 * MS_PER_S, 20, 10, 30),
        SeedRules("pumpkin", 8 * 3600 * MS_PER_S, 45, 10, 30),
        SeedRules("golden_pear", 24 * 3600 * MS_PER_S, 150, 10, 30),
    )
)


def read_farm(table: Table) -> FarmRules | None:
    default = FarmRules()
    plots = table.integer("plots", default=default.plots, value_min=1, value_max=PLOTS_MAX)
    friends_max = table.integer(
        "friends_max", default=default.friends_max, value_min=1, value_max=FRIENDS_CEILING
    )
    cooldown_s = table.integer(
        "friendship_cooldown_s",
        default=default.friendship_cooldown_ms // MS_PER_S,
        value_min=0,
        value_max=FRIENDSHIP_COOLDOWN_S_MAX,
    )
    blocks_max = table.integer(
        "blocks_max", default=default.blocks_max, value_min=1, value_max=FRIENDS_CEILING
    )
    water = table.section("water", _water)
    steal = table.section("steal", _steal)
    if plots is None or friends_max is None or cooldown_s is None or blocks_max is None:
        return None
    if water is None or steal is None:
        return None
    return FarmRules(plots, friends_max, cooldown_s * MS_PER_S, water, steal, blocks_max)


def _water(table: Table) -> WaterRules | None:
    default = WaterRules()
    mode = table.choice("mode", WATER_MODES, default=default.mode)
    share_pct = table.integer(
        "share_pct", default=default.share_pct, value_min=1, value_max=WATER_SHARE_PCT_MAX
    )
    fixed_s = table.integer(
        "fixed_s", default=default.fixed_ms // MS_PER_S, value_min=1, value_max=WATER_FIXED_S_MAX
    )
    reward_coins = table.integer(
        "reward_coins", default=default.reward_coins, value_min=0, value_max=REWARD_COINS_MAX
    )
    paid_per_day_max = table.integer(
        "paid_per_day_max",
        default=default.paid_per_day_max,
        value_min=0,
        value_max=PER_DAY_MAX_CEILING,
    )
    if mode is None or share_pct is None or fixed_s is None:
        return None
    if reward_coins is None or paid_per_day_max is None:
        return None
    return WaterRules(mode, share_pct, fixed_s * MS_PER_S, reward_coins, paid_per_day_max)


def _steal(table: Table) -> StealRules | None:
    default = StealRules()
    count = table.integer(
        "count_per_day_max",
        default=default.count_per_day_max,
        value_min=0,
        value_max=PER_DAY_MAX_CEILING,
    )
    coins = table.integer(
        "coins_per_day_max",
        default=default.coins_per_day_max,
        value_min=0,
        value_max=REWARD_COINS_MAX,
    )
    if count is None or coins is None:
        return None
    return StealRules(count, coins)


def read_seeds(table: Table) -> SeedCatalog | None:
    return read_catalog(table, "seed", _seed, 1, SEEDS_LEN_MAX, SEED_NAME_RE)


def _seed(table: Table) -> SeedRules | None:
    grow_s = table.integer("grow_s", value_min=1, value_max=GROW_S_MAX)
    yield_coins = table.integer("yield_coins", value_min=1, value_max=REWARD_COINS_MAX)
    share_pct = table.integer("steal_share_pct", value_min=1, value_max=99)
    cap_pct = table.integer("steal_cap_pct", value_min=1, value_max=99)  # < 100: owner keeps some
    if share_pct is not None and cap_pct is not None and share_pct > cap_pct:
        table.problem(
            "steal_share_pct", f"must be at most steal_cap_pct ({cap_pct}), got {share_pct}"
        )
        return None
    if grow_s is None or yield_coins is None or share_pct is None or cap_pct is None:
        return None
    return SeedRules(table.name, grow_s * MS_PER_S, yield_coins, share_pct, cap_pct)


def read_notify(table: Table) -> NotifyRules | None:
    default = NotifyRules()
    quiet = table.clock_times(
        "quiet_hours", len_exact=2, default=(default.quiet_start, default.quiet_end)
    )
    triggers = table.integer(
        "triggers_per_day_max",
        default=default.triggers_per_day_max,
        value_min=0,
        value_max=TRIGGERS_PER_DAY_MAX_CEILING,
    )
    reminder = table.clock_time("streak_reminder_at", default=default.streak_reminder_at)
    batch_s = table.integer(
        "theft_batch_s",
        default=default.theft_batch_ms // MS_PER_S,
        value_min=1,
        value_max=THEFT_BATCH_S_MAX,
    )
    if quiet is None or triggers is None or reminder is None or batch_s is None:
        return None
    return NotifyRules(quiet[0], quiet[1], triggers, reminder, batch_s * MS_PER_S)
