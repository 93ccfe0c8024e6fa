"""The commerce sections: [checkout] (what coins are worth when paying for an order),
[rewards.order] and [rewards.review] (coins for shopping and for reviews), and
[exchange.partners.<name>] (partners' points into coins). Each section is a frozen
dataclass, whose defaults are the values a file may leave out, and a reader that goes
through a `Table` and returns None when any of its values had a problem. The rules that
use these numbers live in game_rules/commerce.py.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from game_rules.rulefile.catalog import NAME_RE, Catalog, read_catalog
from game_rules.rulefile.limits import DAY_S, MS_PER_S, REWARD_COINS_MAX
from game_rules.rulefile.table import Table

COINS_PER_YUAN_MAX = 10_000
HOLD_TIMEOUT_S_MAX = DAY_S
PAID_FEN_MAX = 10**10  # 100 million yuan: the largest amount of one order or item
ITEM_COINS_MAX_CEILING = 1_000_000
REVIEW_TIERS_LEN_MAX = 16
PARTNERS_LEN_MAX = 16
PARTNER_NAME_RE = NAME_RE
RATIO_TERM_MAX = 1000  # numerator and denominator of an exchange ratio
POINTS_PER_EXCHANGE_MAX_CEILING = 1_000_000


@dataclass(frozen=True, slots=True)
class CheckoutRules:
    """Coins at checkout: coins_per_yuan coins are worth one yuan (100 fen); coins pay at
    most order_share_max_pct of an order; a reserve not posted within hold_timeout_ms is
    voided."""

    coins_per_yuan: int = 100
    order_share_max_pct: int = 50
    hold_timeout_ms: int = 900 * MS_PER_S


@dataclass(frozen=True, slots=True)
class OrderRewardRules:
    """Shopping feedback: an order paying at least paid_fen_min earns, per item,
    reward_pct of the item's paid amount in coins (floor), at most item_coins_max."""

    paid_fen_min: int = 5000
    reward_pct: int = 10
    item_coins_max: int = 1000


@dataclass(frozen=True, slots=True)
class ReviewRewardRules:
    """Coins for a review by the order's paid amount: the last tier whose
    paid_fen_at_least is <= the amount. Tiers ascend strictly and the first starts at 0."""

    tiers: tuple[tuple[int, int], ...] = ((0, 10), (10_000, 20))  # (paid_fen_at_least, coins)


@dataclass(frozen=True, slots=True)
class PartnerRules:
    """One partner's points: coins = floor(points * coins_per_point_num / coins_per_point_den),
    at most points_per_exchange_max points per exchange, any number of exchanges."""

    name: str
    coins_per_point_num: int
    coins_per_point_den: int
    points_per_exchange_max: int


PartnerCatalog = Catalog[PartnerRules]


# China Mobile points into coins at 1:1.5, at most 100 points per exchange (seeds/002).
PARTNERS_DEFAULT = PartnerCatalog((PartnerRules("china_mobile", 3, 2, 100),))


@dataclass(frozen=True, slots=True)
class ExchangeRules:
    partners: PartnerCatalog = PARTNERS_DEFAULT  # may be empty: no exchange at all


def read_checkout(table: Table) -> CheckoutRules | None:
    default = CheckoutRules()
    coins_per_yuan = table.integer(
        "coins_per_yuan",
        default=default.coins_per_yuan,
        value_min=1,
        value_max=COINS_PER_YUAN_MAX,
    )
    # 0 turns paying with coins off; 100 would let coins pay a whole order.
    share_pct = table.integer(
        "order_share_max_pct", default=default.order_share_max_pct, value_min=0, value_max=100
    )
    hold_s = table.integer(
        "hold_timeout_s",
        default=default.hold_timeout_ms // MS_PER_S,
        value_min=1,
        value_max=HOLD_TIMEOUT_S_MAX,
    )
    if coins_per_yuan is None or share_pct is None or hold_s is None:
        return None
    return CheckoutRules(coins_per_yuan, share_pct, hold_s * MS_PER_S)


def read_rewards(table: Table) -> tuple[OrderRewardRules, ReviewRewardRules] | None:
    order = table.section("order", _order_reward)
    review = table.section("review", _review_reward)
    if order is None or review is None:
        return None
    return order, review


def _order_reward(table: Table) -> OrderRewardRules | None:
    default = OrderRewardRules()
    paid_fen_min = table.integer(
        "paid_fen_min", default=default.paid_fen_min, value_min=0, value_max=PAID_FEN_MAX
    )
    reward_pct = table.integer("reward_pct", default=default.reward_pct, value_min=0, value_max=100)
    item_coins_max = table.integer(
        "item_coins_max",
        default=default.item_coins_max,
        value_min=0,
        value_max=ITEM_COINS_MAX_CEILING,
    )
    if paid_fen_min is None or reward_pct is None or item_coins_max is None:
        return None
    return OrderRewardRules(paid_fen_min, reward_pct, item_coins_max)


def _review_reward(table: Table) -> ReviewRewardRules | None:
    tiers = table.int_pairs(
        "tiers",
        default=ReviewRewardRules().tiers,
        len_max=REVIEW_TIERS_LEN_MAX,
        ranges=((0, PAID_FEN_MAX), (1, REWARD_COINS_MAX)),
    )
    if tiers is None:
        return None
    shown = [list(tier) for tier in tiers]
    if tiers[0][0] != 0:
        table.problem("tiers", f"the first tier must start at 0 fen, got {shown}")
        return None
    if any(a[0] >= b[0] for a, b in itertools.pairwise(tiers)):
        table.problem("tiers", f"paid_fen_at_least must be strictly increasing, got {shown}")
        return None
    return ReviewRewardRules(tiers)


def read_exchange(table: Table) -> ExchangeRules | None:
    # No [exchange.partners] at all: the default partners. An empty table: no partners.
    partners = table.section("partners", _partners) if table.has("partners") else PARTNERS_DEFAULT
    return None if partners is None else ExchangeRules(partners)


def _partners(table: Table) -> PartnerCatalog | None:
    return read_catalog(table, "partner", _partner, 0, PARTNERS_LEN_MAX, PARTNER_NAME_RE)


def _partner(table: Table) -> PartnerRules | None:
    num = table.integer("coins_per_point_num", value_min=1, value_max=RATIO_TERM_MAX)
    den = table.integer("coins_per_point_den", value_min=1, value_max=RATIO_TERM_MAX)
    points_max = table.integer(
        "points_per_exchange_max", value_min=1, value_max=POINTS_PER_EXCHANGE_MAX_CEILING
    )
    if num is None or den is None or points_max is None:
        return None
    return PartnerRules(table.name, num, den, points_max)
