"""The coin mall's rules: what a player may buy now, and how an order changes the player's
mall state (counts per item per day and ever, orders awaiting payment, recent orders).

Pure: the shell passes the time, the player's member level index, the coins available and
the stock left (which lives in a store key shared by all players). An order is one unit.
The order's life: `pending_payment` (coins held, cash awaited) -> `paid` -> `delivered`;
coins-only orders start at `paid`; `cancelled` (payment failed) and `expired` (no payment
in time, or the stock's reservation was never confirmed) give coins and stock back.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from game_rules.calendar import business_day
from game_rules.errors import RuleViolation
from game_rules.rulefile.mall_sections import MallItem, MallRules

PENDING_PAYMENT = "pending_payment"
PAID = "paid"
DELIVERED = "delivered"
CANCELLED = "cancelled"
EXPIRED = "expired"
ORDER_STATES = (PENDING_PAYMENT, PAID, DELIVERED, CANCELLED, EXPIRED)
OPEN_STATES = (PENDING_PAYMENT, PAID)  # the stock is reserved, not yet confirmed
ORDER_ID_HEX = 24


def order_id_for(player_id: str, request_key: str) -> str:
    """The order id of a player's request: the same request id is the same order."""
    raw = f"{len(player_id)}:{player_id}:{request_key}".encode()
    return "mo" + hashlib.sha256(raw).hexdigest()[:ORDER_ID_HEX]


def day_number(now_ms: int, tz: ZoneInfo) -> int:
    day = business_day(now_ms, tz)
    return day.year * 10_000 + day.month * 100 + day.day


def local_ms(moment: datetime, tz: ZoneInfo) -> int:
    """Epoch ms of a local time of the rules' time zone (the earlier reading if repeated)."""
    return int(moment.replace(tzinfo=tz, fold=0).astimezone(UTC).timestamp() * 1000)


def window_ms(item: MallItem, tz: ZoneInfo) -> tuple[int, int]:
    """[start, end) of the item's sale in epoch ms; 0 = no start, 0 = no end."""
    start = local_ms(item.starts_at, tz) if item.starts_at else 0
    end = local_ms(item.ends_at, tz) if item.ends_at else 0
    return start, end


@dataclass(frozen=True, slots=True)
class MallState:
    """A player's mall counters. `today` counts orders per item on business day `day`
    (`day_orders` all items together); `ever` counts per item; orders cancelled or expired
    are taken out again. `pending` maps orders awaiting payment to (item, expires_ms);
    `recent` lists order ids, newest first."""

    day: int = 0
    today: Mapping[str, int] = field(default_factory=dict)
    day_orders: int = 0
    ever: Mapping[str, int] = field(default_factory=dict)
    pending: Mapping[str, tuple[str, int]] = field(default_factory=dict)
    recent: tuple[str, ...] = ()

    def on_day(self, day: int) -> MallState:
        """The counters as of business day `day`: a new day starts from zero."""
        if day == self.day:
            return self
        return replace(self, day=day, today={}, day_orders=0)

    def to_wire(self) -> dict[str, Any]:
        return {
            "d": self.day,
            "t": dict(self.today),
            "n": self.day_orders,
            "e": dict(self.ever),
            "p": {k: list(v) for k, v in self.pending.items()},
            "r": list(self.recent),
        }

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> MallState:
        return cls(
            int(wire["d"]),
            {str(k): int(v) for k, v in wire["t"].items()},
            int(wire["n"]),
            {str(k): int(v) for k, v in wire["e"].items()},
            {str(k): (str(v[0]), int(v[1])) for k, v in wire["p"].items()},
            tuple(str(o) for o in wire["r"]),
        )


@dataclass(frozen=True, slots=True)
class MallOrder:
    """One order, as the player's record keeps it (the record decides its fate: whoever
    changes it compare-and-sets it in the player's commit)."""

    order_id: str
    item: str
    coins: int
    cash_fen: int
    state: str
    day: int  # business day it was placed (YYYYMMDD): a cancel gives back that day's count
    created_ms: int
    expires_ms: int  # the cash part's deadline (the hold's expiry); 0: coins only
    changed_ms: int
    payment_id: str = ""  # the shop's payment of the cash part, once paid
    # Why an order that was never placed is closed (the code its request was refused with,
    # or RESERVATION_LAPSED): such a record only stops a late retry from placing it.
    reason: str = ""

    def to_wire(self) -> dict[str, Any]:
        return {
            "order_id": self.order_id,
            "item": self.item,
            "coins": self.coins,
            "cash_fen": self.cash_fen,
            "state": self.state,
            "day": self.day,
            "created_ms": self.created_ms,
            "expires_ms": self.expires_ms,
            "changed_ms": self.changed_ms,
            "payment_id": self.payment_id,
            "reason": self.reason,
        }

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> MallOrder:
        return cls(
            str(wire["order_id"]),
            str(wire["item"]),
            int(wire["coins"]),
            int(wire["cash_fen"]),
            str(wire["state"]),
            int(wire["day"]),
            int(wire["created_ms"]),
            int(wire["expires_ms"]),
            int(wire["changed_ms"]),
            str(wire.get("payment_id", "")),
            str(wire.get("reason", "")),
        )

    def moved(self, state: str, now_ms: int, payment_id: str = "") -> MallOrder:
        assert state in ORDER_STATES
        return replace(
            self, state=state, changed_ms=now_ms, payment_id=payment_id or self.payment_id
        )

    @property
    def never_placed(self) -> bool:
        return bool(self.reason)


def closed_unplaced(order_id: str, item: str, reason: str, tz: ZoneInfo, now_ms: int) -> MallOrder:
    """The record of an order that was never placed and never will be (its reservation is
    released): a late retry of its request answers `reason`."""
    day = day_number(now_ms, tz)
    return MallOrder(order_id, item, 0, 0, EXPIRED, day, now_ms, 0, now_ms, "", reason)


def limit_left(item: MallItem, state: MallState) -> int | None:
    """Units this player may still buy (None: no per-player limit); `state` on today."""
    lefts = []
    if item.per_day_max:
        lefts.append(item.per_day_max - state.today.get(item.name, 0))
    if item.per_player_max:
        lefts.append(item.per_player_max - state.ever.get(item.name, 0))
    return max(0, min(lefts)) if lefts else None


def check_buy(
    state: MallState,
    rules: MallRules,
    tz: ZoneInfo,
    item_name: str,
    now_ms: int,
    level_index: int,
    available_coins: int,
) -> MallItem:
    """The item, if this player may order one now; else a RuleViolation with its code."""
    item = rules.items.get(item_name)
    if item is None:
        raise RuleViolation("UNKNOWN_ITEM", f"no item {item_name!r} in the mall")
    start_ms, end_ms = window_ms(item, tz)
    if now_ms < start_ms:
        raise RuleViolation("NOT_ON_SALE", f"{item_name} goes on sale at {start_ms} ms")
    if end_ms and now_ms >= end_ms:
        raise RuleViolation("SALE_ENDED", f"the sale of {item_name} ended at {end_ms} ms")
    if level_index < item.level_min:
        raise RuleViolation("LEVEL_TOO_LOW", f"{item_name} needs member level {item.level_min}")
    today = state.on_day(day_number(now_ms, tz))
    if limit_left(item, today) == 0:
        raise RuleViolation("LIMIT_REACHED", f"your limit of {item_name} is reached")
    if today.day_orders >= rules.orders_per_day_max:
        raise RuleViolation("DAILY_ORDERS_MAX", f"at most {rules.orders_per_day_max} orders a day")
    if item.cash_fen and len(state.pending) >= rules.pending_payments_max:
        raise RuleViolation(
            "PENDING_PAYMENTS_MAX", f"at most {rules.pending_payments_max} orders await payment"
        )
    if available_coins < item.coins:
        raise RuleViolation("INSUFFICIENT_FUNDS", f"{item.coins} coins needed")
    return item


def new_order(
    item: MallItem, order_id: str, rules: MallRules, tz: ZoneInfo, now_ms: int
) -> MallOrder:
    """The order as placed: awaiting payment (with its deadline) when it has a cash part."""
    if item.cash_fen:
        state, expires_ms = PENDING_PAYMENT, now_ms + rules.payment_timeout_ms
    else:
        state, expires_ms = PAID, 0
    day = day_number(now_ms, tz)
    return MallOrder(
        order_id, item.name, item.coins, item.cash_fen, state, day, now_ms, expires_ms, now_ms
    )


def placed(state: MallState, rules: MallRules, order: MallOrder) -> MallState:
    """The player's counters once `order` is placed (on its own day)."""
    today = state.on_day(order.day)
    counts = dict(today.today)
    counts[order.item] = counts.get(order.item, 0) + 1
    ever = dict(today.ever)
    ever[order.item] = ever.get(order.item, 0) + 1
    pending = dict(today.pending)
    if order.state == PENDING_PAYMENT:
        pending[order.order_id] = (order.item, order.expires_ms)
    recent = (order.order_id, *(o for o in today.recent if o != order.order_id))
    return replace(
        today,
        today=counts,
        day_orders=today.day_orders + 1,
        ever=ever,
        pending=pending,
        recent=recent[: rules.recent_orders_max],
    )


def unplaced(state: MallState, order: MallOrder) -> MallState:
    """The counters once `order` is cancelled or expired: its units count no more."""
    today = dict(state.today)
    day_orders = state.day_orders
    if order.day == state.day:
        today[order.item] = max(0, today.get(order.item, 0) - 1)
        day_orders = max(0, day_orders - 1)
    ever = dict(state.ever)
    ever[order.item] = max(0, ever.get(order.item, 0) - 1)
    pending = {k: v for k, v in state.pending.items() if k != order.order_id}
    return replace(state, today=today, day_orders=day_orders, ever=ever, pending=pending)


def settled(state: MallState, order_id: str) -> MallState:
    """The counters once an order awaiting payment is paid: no longer pending."""
    pending = {k: v for k, v in state.pending.items() if k != order_id}
    return replace(state, pending=pending)


def item_view(
    item: MallItem,
    state: MallState,
    tz: ZoneInfo,
    now_ms: int,
    level_index: int,
    stock_left: int,
) -> dict[str, Any]:
    """What the player sees of one item now."""
    start_ms, end_ms = window_ms(item, tz)
    today = state.on_day(day_number(now_ms, tz))
    return {
        "item": item.name,
        "kind": item.kind,
        "title": item.title,
        "coins": item.coins,
        "cash_fen": item.cash_fen,
        "stock_left": max(0, stock_left),
        "limit_left": limit_left(item, today),
        "locked": level_index < item.level_min,
        "level_min": item.level_min,
        "starts_ms": start_ms,
        "ends_ms": end_ms,
        "on_sale": start_ms <= now_ms and not (end_ms and now_ms >= end_ms),
    }
