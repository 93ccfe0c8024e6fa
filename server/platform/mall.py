"""The shop's payment of a mall order's cash part (the 004 case: 3 000 coins + 9.90 yuan).

An order with a cash part holds its coins and reserves its unit until the shop reports the
payment: `paid` posts the held coins to sink:mall and delivers (the unit confirmed);
`failed` voids the hold and releases the unit. With no report by the order's deadline, both
come back by themselves: the hold is void from its expiry on (commit.lua, on the player's
next commit), and the player's next `mall`, the next buy of the item or the sweep expires
the order and releases its unit. Idempotent by (order, payment id): a repeat answers as
the first call; a result that contradicts the order's fate is refused with 409.
"""

from __future__ import annotations

from typing import Any

from game_rules.mall import CANCELLED, DELIVERED, EXPIRED, PAID, MallOrder, settled
from server.ops.mall_orders import Move, Stale, move
from server.ops.mall_repair import CANCEL, EXPIRE, settle_stock
from server.pipeline import OpError, Services
from server.platform.base import Refused
from server.store.keys import PlayerKeys

RESULTS = ("paid", "failed")
LAPSED_HOLD = ("HOLD_EXPIRED", "HOLD_VOIDED")


def _answer(order: MallOrder, already: bool) -> dict[str, Any]:
    return {
        "order_id": order.order_id,
        "state": order.state,
        "payment_id": order.payment_id,
        "already": already,
        "coins": order.coins,
        "cash_fen": order.cash_fen,
    }


def _stale(order: MallOrder | None) -> Refused:
    if order is None or order.never_placed:
        return Refused("ORDER_NOT_FOUND", "no mall order with this id for this player", 404)
    if order.state in (CANCELLED, EXPIRED):
        return Refused(
            f"ORDER_{order.state.upper()}",
            f"the order is {order.state}: its coins and unit came back; refund the payment",
            409,
        )
    return Refused("ORDER_PAID", f"the order is {order.state} already", 409)


def _refused(exc: OpError) -> Refused:
    if exc.code == "BUSY":
        return Refused("BUSY", exc.message, 503)
    return Refused(exc.code, exc.message, 409)


async def payment(
    services: Services, player: str, order_id: str, payment_id: str, result: str
) -> dict[str, Any]:
    if result not in RESULTS:
        raise Refused("BAD_ARGS", f"result: one of {', '.join(RESULTS)}", 400)
    keys = PlayerKeys(player)
    try:
        if result == "paid":
            return await _paid(services, keys, order_id, payment_id)
        return await _failed(services, keys, order_id)
    except OpError as exc:
        raise _refused(exc) from None


async def _paid(
    services: Services, keys: PlayerKeys, order_id: str, payment_id: str
) -> dict[str, Any]:
    step = Move(
        PAID,
        ("pending_payment",),
        mall=lambda state, order: settled(state, order.order_id),
        hold="post",
        debit=True,
        payment_id=payment_id,
    )
    try:
        order, already = await move(services, keys, order_id, step)
    except Stale as exc:
        if exc.order is None or exc.order.state != DELIVERED:
            raise _stale(exc.order) from None
        order, already = exc.order, True
    except OpError as exc:
        if exc.code not in LAPSED_HOLD:
            raise
        # Paid too late: the hold is void already. Close the order now, and say so.
        try:
            order, _ = await move(services, keys, order_id, EXPIRE)
        except Stale as stale:
            raise _stale(stale.order) from None
        await settle_stock(services, keys, order)
        raise _stale(order) from None
    if already and order.payment_id != payment_id:
        raise Refused("PAYMENT_MISMATCH", "the order was paid by another payment", 409)
    order = await settle_stock(services, keys, order)
    return _answer(order, already)


async def _failed(services: Services, keys: PlayerKeys, order_id: str) -> dict[str, Any]:
    try:
        order, already = await move(services, keys, order_id, CANCEL)
    except Stale as exc:
        if exc.order is None or exc.order.state != EXPIRED or exc.order.never_placed:
            raise _stale(exc.order) from None
        order, already = exc.order, True  # it timed out first: both came back already
    order = await settle_stock(services, keys, order)
    return _answer(order, already)
