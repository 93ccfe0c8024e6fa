"""The lucky draw's sections: [draw] (how long a draw's stock reservation lives, how long
the periods' seeds and draw logs are kept) and [draw.pools.<pool>] with its prizes
[draw.pools.<pool>.prizes.<prize>]. Prizes are read in file order, and that order is part
of the documented draw algorithm (game_rules/draw.py): a roll picks the prize whose
cumulative weight range holds it. The rules that use these numbers live in
game_rules/draw.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from game_rules.rulefile.catalog import NAME_RE, Catalog, read_catalog
from game_rules.rulefile.limits import MS_PER_S, REWARD_COINS_MAX
from game_rules.rulefile.table import Table

PrizeKind = Literal["coins", "coupon", "goods", "none"]
PRIZE_KINDS: tuple[PrizeKind, ...] = ("coins", "coupon", "goods", "none")
DrawPeriod = Literal["daily", "weekly"]
DRAW_PERIODS: tuple[DrawPeriod, ...] = ("daily", "weekly")
POOLS_LEN_MAX = 16
PRIZES_LEN_MAX = 32
PRIZE_WEIGHT_MAX = 1_000_000  # 32 prizes of at most this keep the total below 2**32
PRIZE_STOCK_MAX = 1_000_000
DRAWS_PER_DAY_MAX_CEILING = 1000
PITY_MISSES_MAX = 1000
DRAWS_PER_PERIOD_MAX_CEILING = 1_000_000
RESERVATION_TIMEOUT_S_MAX = 3600
HISTORY_DAYS_MAX = 400


@dataclass(frozen=True, slots=True)
class PrizeRules:
    """One prize: drawn with probability weight / (sum of the pool's weights). `coins`
    are credited for kind "coins"; `stock` is how many may be won per period (0: no limit)."""

    name: str
    kind: PrizeKind
    weight: int
    coins: int = 0
    stock: int = 0


PrizeCatalog = Catalog[PrizeRules]


@dataclass(frozen=True, slots=True)
class PoolRules:
    """A draw pool (扭蛋机). Each draw costs cost_coins. After pity_misses draws in a row
    without pity_prize, the next draw awards it (0: no guarantee). A drawn prize whose
    period stock is gone becomes `fallback`. A player draws at most draws_per_day_max times
    a business day; the pool takes at most draws_per_period_max draws a period (every one
    of them stays in the period's log, so `manor draw verify` checks them all)."""

    name: str
    cost_coins: int
    period: DrawPeriod
    draws_per_day_max: int
    draws_per_period_max: int
    pity_misses: int
    pity_prize: str
    fallback: str
    prizes: PrizeCatalog

    @property
    def total_weight(self) -> int:
        return sum(prize.weight for prize in self.prizes.entries)


PoolCatalog = Catalog[PoolRules]

# The gashapon of 004 (扭蛋机, paid with coins: coupons, goods, shop privileges): 100 coins
# (1 yuan at checkout) a draw, a new seed every day, ten draws a player a day, and a
# 500-coin prize guaranteed after 50 draws without it.
POOLS_DEFAULT = PoolCatalog(
    (
        PoolRules(
            name="gashapon",
            cost_coins=100,
            period="daily",
            draws_per_day_max=10,
            draws_per_period_max=200_000,
            pity_misses=50,
            pity_prize="jackpot",
            fallback="ten_coins",
            prizes=PrizeCatalog(
                (
                    PrizeRules("ten_coins", "coins", 4000, coins=10),
                    PrizeRules("fifty_coins", "coins", 1500, coins=50),
                    PrizeRules("jackpot", "coins", 100, coins=500),
                    PrizeRules("coupon_five_yuan", "coupon", 2500, stock=1000),
                    PrizeRules("shop_privilege", "coupon", 390, stock=200),
                    PrizeRules("gift_pack", "goods", 10, stock=5),
                    PrizeRules("thanks", "none", 2000),
                )
            ),
        ),
    )
)


@dataclass(frozen=True, slots=True)
class DrawRules:
    reservation_timeout_ms: int = 30 * MS_PER_S  # a stock reservation older is swept
    history_days: int = 30  # seeds and draw logs of ended periods are kept this long
    pools: PoolCatalog = POOLS_DEFAULT  # may be empty: no draw at all


DRAW_DEFAULT = DrawRules()


def read_draw(table: Table) -> DrawRules | None:
    default = DRAW_DEFAULT
    timeout_s = table.integer(
        "reservation_timeout_s",
        default=default.reservation_timeout_ms // MS_PER_S,
        value_min=1,
        value_max=RESERVATION_TIMEOUT_S_MAX,
    )
    history_days = table.integer(
        "history_days", default=default.history_days, value_min=1, value_max=HISTORY_DAYS_MAX
    )
    # No [draw.pools] at all: the default pool. An empty table: no pools.
    pools = table.section("pools", _pools) if table.has("pools") else POOLS_DEFAULT
    if timeout_s is None or history_days is None or pools is None:
        return None
    return DrawRules(timeout_s * MS_PER_S, history_days, pools)


def _pools(table: Table) -> PoolCatalog | None:
    return read_catalog(table, "pool", _pool, 0, POOLS_LEN_MAX, NAME_RE)


def _pool(table: Table) -> PoolRules | None:
    cost = table.integer("cost_coins", value_min=1, value_max=REWARD_COINS_MAX)
    period = table.choice("period", DRAW_PERIODS, default="daily")
    per_day = table.integer(
        "draws_per_day_max", value_min=1, value_max=DRAWS_PER_DAY_MAX_CEILING, default=10
    )
    per_period = table.integer(
        "draws_per_period_max",
        value_min=1,
        value_max=DRAWS_PER_PERIOD_MAX_CEILING,
        default=200_000,
    )
    pity_misses = table.integer("pity_misses", value_min=0, value_max=PITY_MISSES_MAX, default=0)
    # Optional: a string reader refuses "", so an absent key is read as no pity prize.
    pity_prize = table.string("pity_prize", len_max=24) if table.has("pity_prize") else ""
    fallback = table.string("fallback", len_max=24)
    prizes = table.section("prizes", _prizes)
    if prizes is not None:
        if fallback is not None and not _unlimited(table, "fallback", fallback, prizes):
            fallback = None
        if pity_misses and not pity_prize:
            table.problem("pity_prize", "required when pity_misses > 0")
            pity_prize = None
        elif pity_prize and not _unlimited(table, "pity_prize", pity_prize, prizes):
            pity_prize = None
    if (
        cost is None
        or period is None
        or per_day is None
        or per_period is None
        or pity_misses is None
        or pity_prize is None
        or fallback is None
        or prizes is None
    ):
        return None
    return PoolRules(
        table.name, cost, period, per_day, per_period, pity_misses, pity_prize, fallback, prizes
    )


def _unlimited(table: Table, key: str, name: str, prizes: PrizeCatalog) -> bool:
    """The fallback and the guaranteed prize must exist and never run out: a draw that
    awards them can never find them sold out."""
    if name not in prizes:
        table.problem(
            key, f"must name one of the pool's prizes ({', '.join(prizes)}), got {name!r}"
        )
        return False
    if prizes[name].stock:
        table.problem(key, f"prize {name!r} must have no stock limit (stock = 0)")
        return False
    return True


def _prizes(table: Table) -> PrizeCatalog | None:
    return read_catalog(table, "prize", _prize, 1, PRIZES_LEN_MAX, NAME_RE)


def _prize(table: Table) -> PrizeRules | None:
    kind = table.choice("kind", PRIZE_KINDS)
    weight = table.integer("weight", value_min=1, value_max=PRIZE_WEIGHT_MAX)
    stock = table.integer("stock", value_min=0, value_max=PRIZE_STOCK_MAX, default=0)
    coins: int | None = 0
    if kind == "coins":
        coins = table.integer("coins", value_min=1, value_max=REWARD_COINS_MAX)
    elif table.has("coins"):
        table.problem("coins", f"only a prize of kind 'coins' pays coins, this one is {kind!r}")
        coins = None
    if kind is None or weight is None or stock is None or coins is None:
        return None
    return PrizeRules(table.name, kind, weight, coins, stock)
