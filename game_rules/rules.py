"""The rules file: every number of the game, read from TOML and checked once at start-up.

This module reads the top-level keys (version, timezone) and assembles `Rules` from the
sections, which live in game_rules/rulefile/ (one module per group of sections, and the
`Table` reader that collects every problem). It re-exports every section dataclass and
constant, so `from game_rules.rules import ...` is the one place to import them from.
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from game_rules.errors import RulesError
from game_rules.rulefile.catalog import Catalog, N
from game_rules.rulefile.commerce_sections import (
    COINS_PER_YUAN_MAX,
    HOLD_TIMEOUT_S_MAX,
    ITEM_COINS_MAX_CEILING,
    PAID_FEN_MAX,
    PARTNER_NAME_RE,
    PARTNERS_DEFAULT,
    PARTNERS_LEN_MAX,
    POINTS_PER_EXCHANGE_MAX_CEILING,
    RATIO_TERM_MAX,
    REVIEW_TIERS_LEN_MAX,
    CheckoutRules,
    ExchangeRules,
    OrderRewardRules,
    PartnerCatalog,
    PartnerRules,
    ReviewRewardRules,
    read_checkout,
    read_exchange,
    read_rewards,
)
from game_rules.rulefile.draw_sections import (
    DRAW_DEFAULT,
    DRAW_PERIODS,
    POOLS_DEFAULT,
    PRIZE_KINDS,
    DrawPeriod,
    DrawRules,
    PoolCatalog,
    PoolRules,
    PrizeCatalog,
    PrizeKind,
    PrizeRules,
    read_draw,
)
from game_rules.rulefile.farm_sections import (
    FRIENDS_CEILING,
    FRIENDSHIP_COOLDOWN_S_MAX,
    GROW_S_MAX,
    PER_DAY_MAX_CEILING,
    PLOTS_MAX,
    SEED_NAME_RE,
    SEEDS_DEFAULT,
    SEEDS_LEN_MAX,
    THEFT_BATCH_S_MAX,
    TRIGGERS_PER_DAY_MAX_CEILING,
    WATER_FIXED_S_MAX,
    WATER_MODES,
    WATER_SHARE_PCT_MAX,
    FarmRules,
    NotifyRules,
    SeedCatalog,
    SeedRules,
    StealRules,
    WaterMode,
    WaterRules,
    read_farm,
    read_notify,
    read_seeds,
)
from game_rules.rulefile.growth_sections import (
    GROWTH_EVENTS_DEFAULT,
    LEVELS_DEFAULT,
    GrowthEventCatalog,
    GrowthEventRules,
    GrowthRules,
    Level,
    Perks,
    read_growth,
)
from game_rules.rulefile.limits import DAY_S, MS_PER_S, REWARD_COINS_MAX
from game_rules.rulefile.mall_sections import (
    MALL_DEFAULT,
    MallCatalog,
    MallItem,
    MallRules,
    read_mall,
)
from game_rules.rulefile.signin_sections import (
    EXPIRY_YEARS_LATER_DEFAULT,
    EXPIRY_YEARS_LATER_MAX,
    PERIOD_END_MONTHS_DEFAULT,
    SIGNIN_REWARDS_LEN_MAX,
    WARN_DAYS_DEFAULT,
    WARN_DAYS_MAX,
    ExpiryRules,
    SignInRules,
    read_expiry,
    read_signin,
)
from game_rules.rulefile.table import Table
from game_rules.rulefile.tasks_sections import (
    TASKS_RULES_DEFAULT,
    CampaignCatalog,
    CampaignRules,
    TaskCatalog,
    TaskRules,
    TasksRules,
    growth_event_problems,
    read_tasks_part,
)

TIMEZONE_DEFAULT = "Asia/Shanghai"
VERSION_LEN_MAX = 64
TIMEZONE_LEN_MAX = 64
DIGEST_HEX_LEN = 12

# Everything the section modules define is re-exported: game_rules, its tests and the
# server import these names from here, and mypy (strict) needs the list to allow it.
__all__ = [
    "COINS_PER_YUAN_MAX",
    "DAY_S",
    "DIGEST_HEX_LEN",
    "DRAW_DEFAULT",
    "DRAW_PERIODS",
    "EXPIRY_YEARS_LATER_DEFAULT",
    "EXPIRY_YEARS_LATER_MAX",
    "FRIENDSHIP_COOLDOWN_S_MAX",
    "FRIENDS_CEILING",
    "GROWTH_EVENTS_DEFAULT",
    "GROW_S_MAX",
    "HOLD_TIMEOUT_S_MAX",
    "ITEM_COINS_MAX_CEILING",
    "LEVELS_DEFAULT",
    "MS_PER_S",
    "PAID_FEN_MAX",
    "PARTNERS_DEFAULT",
    "PARTNERS_LEN_MAX",
    "PARTNER_NAME_RE",
    "PERIOD_END_MONTHS_DEFAULT",
    "PER_DAY_MAX_CEILING",
    "PLOTS_MAX",
    "POINTS_PER_EXCHANGE_MAX_CEILING",
    "POOLS_DEFAULT",
    "PRIZE_KINDS",
    "RATIO_TERM_MAX",
    "REVIEW_TIERS_LEN_MAX",
    "REWARD_COINS_MAX",
    "SEEDS_DEFAULT",
    "SEEDS_LEN_MAX",
    "SEED_NAME_RE",
    "SIGNIN_REWARDS_LEN_MAX",
    "TASKS_RULES_DEFAULT",
    "THEFT_BATCH_S_MAX",
    "TIMEZONE_DEFAULT",
    "TIMEZONE_LEN_MAX",
    "TRIGGERS_PER_DAY_MAX_CEILING",
    "VERSION_LEN_MAX",
    "WARN_DAYS_DEFAULT",
    "WARN_DAYS_MAX",
    "WATER_FIXED_S_MAX",
    "WATER_MODES",
    "WATER_SHARE_PCT_MAX",
    "CampaignCatalog",
    "CampaignRules",
    "Catalog",
    "CheckoutRules",
    "DrawPeriod",
    "DrawRules",
    "ExchangeRules",
    "ExpiryRules",
    "FarmRules",
    "GrowthEventCatalog",
    "GrowthEventRules",
    "GrowthRules",
    "Level",
    "MallCatalog",
    "MallItem",
    "MallRules",
    "N",
    "NotifyRules",
    "OrderRewardRules",
    "PartnerCatalog",
    "PartnerRules",
    "Perks",
    "PoolCatalog",
    "PoolRules",
    "PrizeCatalog",
    "PrizeKind",
    "PrizeRules",
    "ReviewRewardRules",
    "Rules",
    "SeedCatalog",
    "SeedRules",
    "SignInRules",
    "StealRules",
    "TaskCatalog",
    "TaskRules",
    "TasksRules",
    "WaterMode",
    "WaterRules",
    "parse_rules",
]


@dataclass(frozen=True, slots=True)
class Rules:
    version: str
    timezone: str
    tz: ZoneInfo
    signin: SignInRules
    expiry: ExpiryRules
    farm: FarmRules
    seeds: SeedCatalog  # a Mapping[str, SeedRules], never empty
    notify: NotifyRules
    digest: str  # first DIGEST_HEX_LEN hex chars of sha256(file text): which file is live
    # After digest, with defaults, so that every existing construction keeps working.
    checkout: CheckoutRules = CheckoutRules()
    order_reward: OrderRewardRules = OrderRewardRules()
    review_reward: ReviewRewardRules = ReviewRewardRules()
    exchange: ExchangeRules = ExchangeRules()
    draw: DrawRules = DRAW_DEFAULT
    tasks: TasksRules = TASKS_RULES_DEFAULT  # [tasks.*] and [campaigns.*]
    mall: MallRules = MALL_DEFAULT
    growth: GrowthRules = GrowthRules()


def parse_rules(text: str, source: str = "<rules>") -> Rules:
    """Parse and validate a rules file; raise RulesError listing every problem found."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise RulesError([f"not valid TOML: {error}"], source) from error

    problems: list[str] = []
    root = Table("", data, problems)
    version = root.string("version", len_max=VERSION_LEN_MAX)
    timezone, tz = _timezone(root)
    signin = root.section("signin", read_signin)
    expiry = root.section("expiry", read_expiry)
    farm = root.section("farm", read_farm)
    # No [seeds] at all: the default catalog. A [seeds] table without seeds is a problem.
    seeds = root.section("seeds", read_seeds) if root.has("seeds") else SEEDS_DEFAULT
    notify = root.section("notify", read_notify)
    checkout = root.section("checkout", read_checkout)
    rewards = root.section("rewards", read_rewards)
    exchange = root.section("exchange", read_exchange)
    draw = root.section("draw", read_draw) if root.has("draw") else DRAW_DEFAULT
    tasks = read_tasks_part(root)  # [tasks.*] and [campaigns.*], each its default when absent
    mall = root.section("mall", read_mall) if root.has("mall") else MALL_DEFAULT
    growth = root.section("growth", read_growth) if root.has("growth") else GrowthRules()
    root.close()
    if tasks is not None and growth is not None:  # a task's growth event must exist
        problems += growth_event_problems(tasks, growth.events)

    if problems:
        raise RulesError(problems, source)
    # No problem reported means every reader returned a value.
    assert version is not None and timezone is not None and tz is not None
    assert signin is not None and expiry is not None
    assert farm is not None and seeds is not None and notify is not None
    assert checkout is not None and rewards is not None and exchange is not None
    assert draw is not None
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:DIGEST_HEX_LEN]
    return Rules(
        version=version,
        timezone=timezone,
        tz=tz,
        signin=signin,
        expiry=expiry,
        farm=farm,
        seeds=seeds,
        notify=notify,
        digest=digest,
        checkout=checkout,
        order_reward=rewards[0],
        review_reward=rewards[1],
        exchange=exchange,
        draw=draw,
        tasks=tasks if tasks is not None else TASKS_RULES_DEFAULT,
        mall=mall if mall is not None else MALL_DEFAULT,
        growth=growth if growth is not None else GrowthRules(),
    )


def _timezone(root: Table) -> tuple[str | None, ZoneInfo | None]:
    name = root.string("timezone", default=TIMEZONE_DEFAULT, len_max=TIMEZONE_LEN_MAX)
    if name is None:
        return None, None
    try:
        return name, ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        # ValueError/OSError: keys like "../x", "/etc/passwd" or a tzdata directory name.
        root.problem("timezone", f"must be an IANA time zone such as 'Asia/Shanghai', got {name!r}")
        return None, None
