"""Bringing an item's stock in line with the orders' records: the repair that makes a crash
between the stock step and the player's commit harmless.

A reservation past its deadline is looked at by the next touch of its stock key (a reserve
of the same item leases a few overdue ones to its caller) and by the sweep job; a payment
deadline passed is looked at by the player's next `mall`. Either way the player's record
decides: no record means the order was never placed, and a closing record is written first
(so a late commit of that order can no longer happen) before its unit goes back on sale;
an order paid is confirmed (and delivered); one awaiting payment past its deadline expires
(its coins come back) and its unit goes back.
"""

from __future__ import annotations

import logging

from game_rules.mall import (
    CANCELLED,
    DELIVERED,
    EXPIRED,
    PAID,
    PENDING_PAYMENT,
    MallOrder,
    closed_unplaced,
    unplaced,
)
from server.ops.mall_orders import Move, Stale, close_unplaced, load, move
from server.pipeline import OpError, Services
from server.store import stock
from server.store.keys import PlayerKeys

log = logging.getLogger(__name__)

DELIVER = Move(DELIVERED, (PAID,))
EXPIRE = Move(EXPIRED, (PENDING_PAYMENT,), mall=unplaced, hold="void")
CANCEL = Move(CANCELLED, (PENDING_PAYMENT,), mall=unplaced, hold="void")
LAPSED = "RESERVATION_LAPSED"


async def settle_stock(services: Services, keys: PlayerKeys, order: MallOrder) -> MallOrder:
    """Confirm or release the order's unit as its record says; a paid order is delivered
    once its unit is confirmed. An order awaiting payment keeps its reservation."""
    now_ms = services.clock.now_ms()
    if order.state in (CANCELLED, EXPIRED):
        await stock.settle(services.store, order.item, order.order_id, "release", now_ms)
    elif order.state == PAID:
        # "done" here is a confirm: a release happens only once the record is closed.
        await stock.settle(services.store, order.item, order.order_id, "confirm", now_ms)
        order, _ = await move(services, keys, order.order_id, DELIVER)
    return order


async def repair(services: Services, item: str, order_id: str, player: str) -> MallOrder:
    """Settle one reservation past its deadline by the player's record."""
    keys = PlayerKeys(player)
    rules = services.rulebook.rules
    order = (await load(services, keys, order_id)).order
    if order is None:
        closed = closed_unplaced(order_id, item, LAPSED, rules.tz, services.clock.now_ms())
        order = await close_unplaced(services, keys, order_id, closed)
    if order.state == PENDING_PAYMENT:
        if services.clock.now_ms() < order.expires_ms:
            return order  # not due yet (the stock's clock ran ahead): looked at again later
        try:
            order, _ = await move(services, keys, order_id, EXPIRE)
        except Stale as exc:  # paid or cancelled meanwhile
            assert exc.order is not None
            order = exc.order
    return await settle_stock(services, keys, order)


async def repair_leased(services: Services, item: str, leased: tuple[tuple[str, str], ...]) -> int:
    """Repair the (order, player) reservations a touch or a sweep leased; failures are
    logged and left to the next lease."""
    repaired = 0
    for order_id, player in leased:
        try:
            await repair(services, item, order_id, player)
            repaired += 1
        except OpError as exc:
            log.warning("mall repair of %s (%s): %s", order_id, player, exc.code)
    return repaired


async def sweep(services: Services) -> int:
    """The job: every item's reservations past their deadline, repaired. Returns how many."""
    repaired = 0
    for item in services.rulebook.rules.mall.items:
        leased = await stock.claim_overdue(services.store, item, services.clock.now_ms())
        repaired += await repair_leased(services, item, leased)
    return repaired


async def expire_due(
    services: Services, keys: PlayerKeys, pending: dict[str, tuple[str, int]]
) -> int:
    """The player's own orders past their payment deadline, expired now (the touch of
    `mall`): coins and the unit come back without waiting for the sweep."""
    now_ms = services.clock.now_ms()
    due = [
        (order_id, item) for order_id, (item, expires_ms) in pending.items() if expires_ms <= now_ms
    ]
    for order_id, item in due:
        await repair(services, item, order_id, keys.player_id)
    return len(due)
