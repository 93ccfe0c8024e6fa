"""The [growth] section: growth value (a second, non-spendable score over a rolling window)
and member levels with their perks. The rules that use these numbers live in
game_rules/growth.py.

[growth]                       base_score, window_months, recompute ("daily" | "monthly"),
                               recompute_day (monthly only), reports_per_day_max
[growth.events.<name>]         points, per ("day" | "month" | "year" | "ever"), times_max
[growth.levels.<name>]         threshold (the first level's is 0, then strictly rising),
                               task_coin_multiplier_pct, birthday_gift_coins, and optional
                               coins_per_yuan / order_share_max_pct (absent: [checkout]'s)

Defaults: JD's 京享值 (seeds/000): its events and their values, its five levels (< 200,
200-500, 500-10 000, 10 000-20 000, > 20 000), updated daily, over the last 12 months.
The documents give no per-event numbers for the caps ("each dimension is capped"): the
caps below are ours, named in the file. The base score is 0 (JD-style); Taobao's 淘气值
starts every member at 400, which a file sets with base_score = 400.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Literal

from game_rules.rulefile.catalog import NAME_RE, Catalog, read_catalog
from game_rules.rulefile.commerce_sections import COINS_PER_YUAN_MAX
from game_rules.rulefile.limits import REWARD_COINS_MAX
from game_rules.rulefile.table import Table

GrowthPer = Literal["day", "month", "year", "ever"]
GROWTH_PERS: tuple[GrowthPer, ...] = ("day", "month", "year", "ever")
Recompute = Literal["daily", "monthly"]
RECOMPUTES: tuple[Recompute, ...] = ("daily", "monthly")

GROWTH_EVENTS_LEN_MAX = 32
GROWTH_LEVELS_LEN_MAX = 16
GROWTH_POINTS_MAX = 10_000  # one event's points
GROWTH_TIMES_MAX_CEILING = 1000  # an event's cap per period
GROWTH_VALUE_MAX = 10_000_000  # a threshold or the base score
WINDOW_MONTHS_MAX = 24
RECOMPUTE_DAY_MAX = 28  # every month has a 28th
REPORTS_PER_DAY_MAX_CEILING = 10_000
MULTIPLIER_PCT_MAX = 1000

BASE_SCORE_DEFAULT = 0
WINDOW_MONTHS_DEFAULT = 12
RECOMPUTE_DEFAULT: Recompute = "daily"
RECOMPUTE_DAY_DEFAULT = 8  # Taobao recomputes monthly on the 8th
# Every report counts against this, counted or capped: it bounds what one player's
# reports can write per day (the platform's idempotency records among them).
REPORTS_PER_DAY_MAX_DEFAULT = 100


@dataclass(frozen=True, slots=True)
class GrowthEventRules:
    """One kind of growth event: `points` each, at most `times_max` times per `per`
    (a business day, calendar month or calendar year in the rules' time zone, or ever).
    "ever" events are standing (the profile, real-name verification): they never age out."""

    name: str
    points: int
    per: GrowthPer
    times_max: int


@dataclass(frozen=True, slots=True)
class Perks:
    """What a level gives. coins_per_yuan and order_share_max_pct of None use [checkout]."""

    task_coin_multiplier_pct: int = 100
    birthday_gift_coins: int = 0
    coins_per_yuan: int | None = None
    order_share_max_pct: int | None = None


@dataclass(frozen=True, slots=True)
class Level:
    """A member level: from `threshold` growth value up to the next level's threshold.
    `index` is 0 for the first level; level-only mall items gate on it."""

    index: int
    name: str
    threshold: int
    perks: Perks = Perks()


GrowthEventCatalog = Catalog[GrowthEventRules]

GROWTH_EVENTS_DEFAULT = GrowthEventCatalog(
    (
        GrowthEventRules("new_category", 10, "day", 3),  # a category bought the first time
        GrowthEventRules("month_three_days", 30, "month", 1),  # shopping on 3 days of a month
        GrowthEventRules("shopping_year", 20, "year", 1),  # each year of shopping
        GrowthEventRules("photo_review", 5, "day", 3),  # showing an order with photos (晒单)
        GrowthEventRules("review", 2, "day", 5),
        GrowthEventRules("group_buy", 5, "day", 2),
        GrowthEventRules("share", 2, "day", 5),
        GrowthEventRules("own_payment", 2, "day", 5),  # paying with the shop's own payment
        GrowthEventRules("profile", 20, "ever", 1),  # completing the profile
        GrowthEventRules("real_name", 100, "ever", 1),  # real-name verification with a phone
    )
)

# JD's five levels; a higher level includes the lower ones' rights (seeds/000). The coin
# multipliers and birthday gifts are ours: JD gives a birthday privilege from 500 on.
LEVELS_DEFAULT = (
    Level(0, "bronze", 0, Perks()),
    Level(1, "silver", 200, Perks()),
    Level(2, "gold", 500, Perks(task_coin_multiplier_pct=110, birthday_gift_coins=100)),
    Level(3, "platinum", 10_000, Perks(task_coin_multiplier_pct=120, birthday_gift_coins=200)),
    Level(4, "diamond", 20_000, Perks(task_coin_multiplier_pct=150, birthday_gift_coins=500)),
)


@dataclass(frozen=True, slots=True)
class GrowthRules:
    base_score: int = BASE_SCORE_DEFAULT
    window_months: int = WINDOW_MONTHS_DEFAULT
    recompute: Recompute = RECOMPUTE_DEFAULT
    recompute_day: int = RECOMPUTE_DAY_DEFAULT  # day of the month, when recompute = monthly
    reports_per_day_max: int = REPORTS_PER_DAY_MAX_DEFAULT
    events: GrowthEventCatalog = GROWTH_EVENTS_DEFAULT
    levels: tuple[Level, ...] = LEVELS_DEFAULT  # thresholds rise strictly from 0


def read_growth(table: Table) -> GrowthRules | None:
    d = GrowthRules()
    base = table.integer(
        "base_score", default=d.base_score, value_min=0, value_max=GROWTH_VALUE_MAX
    )
    window = table.integer(
        "window_months", default=d.window_months, value_min=1, value_max=WINDOW_MONTHS_MAX
    )
    recompute = table.choice("recompute", RECOMPUTES, default=d.recompute)
    day = table.integer(
        "recompute_day", default=d.recompute_day, value_min=1, value_max=RECOMPUTE_DAY_MAX
    )
    reports = table.integer(
        "reports_per_day_max",
        default=d.reports_per_day_max,
        value_min=1,
        value_max=REPORTS_PER_DAY_MAX_CEILING,
    )
    events = table.section("events", _events) if table.has("events") else d.events
    levels = table.section("levels", _levels) if table.has("levels") else d.levels
    if (
        base is None
        or window is None
        or recompute is None
        or day is None
        or reports is None
        or events is None
        or levels is None
    ):
        return None
    return GrowthRules(base, window, recompute, day, reports, events, levels)


def _events(table: Table) -> GrowthEventCatalog | None:
    return read_catalog(table, "growth event", _event, 1, GROWTH_EVENTS_LEN_MAX, NAME_RE)


def _event(table: Table) -> GrowthEventRules | None:
    points = table.integer("points", value_min=1, value_max=GROWTH_POINTS_MAX)
    per = table.choice("per", GROWTH_PERS)
    times_max = table.integer("times_max", value_min=1, value_max=GROWTH_TIMES_MAX_CEILING)
    if points is None or per is None or times_max is None:
        return None
    return GrowthEventRules(table.name, points, per, times_max)


def _levels(table: Table) -> tuple[Level, ...] | None:
    catalog = read_catalog(table, "level", _level, 1, GROWTH_LEVELS_LEN_MAX, NAME_RE)
    if catalog is None:
        return None
    levels = tuple(
        Level(index, level.name, level.threshold, level.perks)
        for index, level in enumerate(catalog.entries)
    )
    shown = [level.threshold for level in levels]
    if shown[0] != 0:
        table.problem_here(f"the first level's threshold must be 0, got {shown}")
        return None
    if any(a >= b for a, b in itertools.pairwise(shown)):
        table.problem_here(f"level thresholds must rise strictly in file order, got {shown}")
        return None
    return levels


def _level(table: Table) -> Level | None:
    d = Perks()
    threshold = table.integer("threshold", value_min=0, value_max=GROWTH_VALUE_MAX)
    multiplier = table.integer(
        "task_coin_multiplier_pct",
        default=d.task_coin_multiplier_pct,
        value_min=0,
        value_max=MULTIPLIER_PCT_MAX,
    )
    gift = table.integer(
        "birthday_gift_coins",
        default=d.birthday_gift_coins,
        value_min=0,
        value_max=REWARD_COINS_MAX,
    )
    ratio = (
        table.integer("coins_per_yuan", value_min=1, value_max=COINS_PER_YUAN_MAX)
        if table.has("coins_per_yuan")
        else None
    )
    share = (
        table.integer("order_share_max_pct", value_min=0, value_max=100)
        if table.has("order_share_max_pct")
        else None
    )
    bad_ratio = table.has("coins_per_yuan") and ratio is None
    bad_share = table.has("order_share_max_pct") and share is None
    if threshold is None or multiplier is None or gift is None or bad_ratio or bad_share:
        return None
    # The index is set by _levels from the file order.
    return Level(0, table.name, threshold, Perks(multiplier, gift, ratio, share))
