"""The coin mall sections: [mall] (limits and timeouts of the whole mall) and
[mall.items.<name>] (the catalog: coupons, goods and rights priced in coins or in coins plus
cash, with stock, per-player limits, a sale window and a member level). The rules that use
these numbers live in game_rules/mall.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from game_rules.rulefile.catalog import NAME_RE, Catalog, read_catalog
from game_rules.rulefile.limits import DAY_S, MS_PER_S
from game_rules.rulefile.table import Table

ITEM_KINDS = ("coupon", "goods", "right")
MALL_ITEMS_LEN_MAX = 64
MALL_ITEM_NAME_RE = NAME_RE
ITEM_TITLE_LEN_MAX = 64
ITEM_PRICE_COINS_MAX = 10_000_000
ITEM_CASH_FEN_MAX = 10**8  # one million yuan
ITEM_STOCK_MAX = 10_000_000
ITEM_LIMIT_MAX = 10_000
LEVEL_INDEX_MAX = 16
ORDERS_PER_DAY_MAX_CEILING = 1000
PENDING_PAYMENTS_MAX_CEILING = 100
RECENT_ORDERS_MAX_CEILING = 200
RESERVE_TIMEOUT_S_MAX = 3600
PAYMENT_TIMEOUT_S_MAX = DAY_S
WINDOW_TEXT_LEN_MAX = 19  # "YYYY-MM-DDTHH:MM:SS"


@dataclass(frozen=True, slots=True)
class MallItem:
    """One item of the catalog. A price is `coins` plus `cash_fen` (0: coins only); at most
    `stock` are ever sold; a player buys at most `per_day_max` a business day and
    `per_player_max` ever (0: no such limit); only players of member level `level_min` or
    above may buy it; it is on sale from `starts_at` (inclusive) to `ends_at` (exclusive),
    local times in the rules' time zone (None: no bound)."""

    name: str
    kind: str
    title: str
    coins: int
    stock: int
    cash_fen: int = 0
    per_day_max: int = 0
    per_player_max: int = 0
    level_min: int = 0
    starts_at: datetime | None = None
    ends_at: datetime | None = None


MallCatalog = Catalog[MallItem]

# The 004 case as the shipped example (3 000 coins + 9.90 yuan for a brand's product), a
# coins-only coupon (100 coins = 1 yuan: 500 coins for a 5-yuan coupon), a level-only right
# and a flash sale of 100 (秒杀, one per player) on Double 11.
MALL_ITEMS_DEFAULT = MallCatalog(
    (
        MallItem("lancome_sample", "goods", "Lancome sample set", 3000, 500, 990, 0, 1),
        MallItem("coupon_five", "coupon", "5 yuan off any order", 500, 100_000, 0, 1, 0),
        MallItem("free_shipping", "right", "Free shipping for a month", 800, 10_000, 0, 0, 1, 2),
        MallItem(
            "double_eleven_flash",
            "goods",
            "Double 11 flash sale: power bank",
            1000,
            100,
            0,
            0,
            1,
            0,
            datetime(2026, 11, 11, 0, 0, 0),
            datetime(2026, 11, 12, 0, 0, 0),
        ),
    )
)


@dataclass(frozen=True, slots=True)
class MallRules:
    """The whole mall: a player places at most `orders_per_day_max` orders a business day
    and has at most `pending_payments_max` awaiting payment; the player's state lists the
    last `recent_orders_max` orders. A stock reservation not confirmed within
    `reserve_timeout_ms` (coins-only items) is repaired by the next touch of the stock or
    the sweep; a cash part not paid within `payment_timeout_ms` gives back coins and stock."""

    items: MallCatalog = MALL_ITEMS_DEFAULT
    orders_per_day_max: int = 20
    pending_payments_max: int = 3
    recent_orders_max: int = 20
    reserve_timeout_ms: int = 30 * MS_PER_S
    payment_timeout_ms: int = 900 * MS_PER_S


MALL_DEFAULT = MallRules()


def read_mall(table: Table) -> MallRules | None:
    default = MallRules()
    orders_max = table.integer(
        "orders_per_day_max",
        default=default.orders_per_day_max,
        value_min=1,
        value_max=ORDERS_PER_DAY_MAX_CEILING,
    )
    pending_max = table.integer(
        "pending_payments_max",
        default=default.pending_payments_max,
        value_min=1,
        value_max=PENDING_PAYMENTS_MAX_CEILING,
    )
    recent_max = table.integer(
        "recent_orders_max",
        default=default.recent_orders_max,
        value_min=1,
        value_max=RECENT_ORDERS_MAX_CEILING,
    )
    reserve_s = table.integer(
        "reserve_timeout_s",
        default=default.reserve_timeout_ms // MS_PER_S,
        value_min=1,
        value_max=RESERVE_TIMEOUT_S_MAX,
    )
    payment_s = table.integer(
        "payment_timeout_s",
        default=default.payment_timeout_ms // MS_PER_S,
        value_min=1,
        value_max=PAYMENT_TIMEOUT_S_MAX,
    )
    # No [mall.items] at all: the default catalog. An empty table: a mall with nothing.
    items = table.section("items", _items) if table.has("items") else MALL_ITEMS_DEFAULT
    values = (orders_max, pending_max, recent_max, reserve_s, payment_s, items)
    if any(v is None for v in values):
        return None
    assert orders_max is not None and pending_max is not None and recent_max is not None
    assert reserve_s is not None and payment_s is not None and items is not None
    return MallRules(
        items, orders_max, pending_max, recent_max, reserve_s * MS_PER_S, payment_s * MS_PER_S
    )


def _items(table: Table) -> MallCatalog | None:
    return read_catalog(table, "item", _item, 0, MALL_ITEMS_LEN_MAX, MALL_ITEM_NAME_RE)


def _item(table: Table) -> MallItem | None:
    kind = table.choice("kind", ITEM_KINDS)
    title = table.string("title", len_max=ITEM_TITLE_LEN_MAX)
    coins = table.integer("coins", value_min=1, value_max=ITEM_PRICE_COINS_MAX)
    cash_fen = table.integer("cash_fen", default=0, value_min=0, value_max=ITEM_CASH_FEN_MAX)
    stock = table.integer("stock", value_min=0, value_max=ITEM_STOCK_MAX)
    per_day = table.integer("per_day_max", default=0, value_min=0, value_max=ITEM_LIMIT_MAX)
    ever = table.integer("per_player_max", default=0, value_min=0, value_max=ITEM_LIMIT_MAX)
    level_min = table.integer("level_min", default=0, value_min=0, value_max=LEVEL_INDEX_MAX)
    starts_ok, starts_at = _local_time(table, "starts_at")
    ends_ok, ends_at = _local_time(table, "ends_at")
    if starts_at and ends_at and starts_at >= ends_at:
        table.problem("ends_at", f"must be after starts_at ({starts_at.isoformat()})")
        return None
    if not (starts_ok and ends_ok):
        return None
    if None in (kind, title, coins, cash_fen, stock, per_day, ever, level_min):
        return None
    assert kind is not None and title is not None and coins is not None
    assert cash_fen is not None and stock is not None and per_day is not None
    assert ever is not None and level_min is not None
    return MallItem(
        table.name,
        kind,
        title,
        coins,
        stock,
        cash_fen,
        per_day,
        ever,
        level_min,
        starts_at,
        ends_at,
    )


def _local_time(table: Table, key: str) -> tuple[bool, datetime | None]:
    """(ok, a local time "YYYY-MM-DDTHH:MM:SS" in the rules' time zone, or None when the
    key is absent); ok is False after a problem."""
    if not table.has(key):
        return True, None
    text = table.string(key, len_max=WINDOW_TEXT_LEN_MAX)
    if text is None:
        return False, None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is not None or len(text) != WINDOW_TEXT_LEN_MAX:
        table.problem(key, f'must be a local time "YYYY-MM-DDTHH:MM:SS", got {text!r}')
        return False, None
    return True, moment
