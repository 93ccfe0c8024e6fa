"""The coin mall's ops: `mall` (the catalog as this player sees it, and their orders) and
`mall_buy` (one unit of an item; the request id makes it idempotent).

A buy is three steps in two slots: a unit of stock reserved under the item's own hash tag
(mall_reserve.lua), the player's commit (coins debited to sink:mall, or held when the item
has a cash part; the `mall` counters; the order record), then the unit confirmed. A crash
between them is repaired by the record (server/ops/mall_repair.py), never by a timer alone.
"""

from __future__ import annotations

from typing import Any

from game_rules import RuleViolation
from game_rules.mall import (
    PAID,
    MallOrder,
    check_buy,
    closed_unplaced,
    item_view,
    new_order,
    order_id_for,
    placed,
    window_ms,
)
from game_rules.rulefile.mall_sections import MALL_ITEM_NAME_RE
from game_rules.rules import MallItem
from server.ledger.commit import Commit, HoldOp, apply
from server.ledger.ledger import Transfer, Wallet
from server.ops.components import pack
from server.ops.mall_orders import (
    SINK,
    close_unplaced,
    debit_id,
    encode,
    level_index,
    load,
    mall_of,
    orders_of,
    push,
    record_field,
)
from server.ops.mall_repair import expire_due, repair_leased, settle_stock
from server.pipeline import (
    COMMIT_ATTEMPTS_MAX,
    Op,
    OpError,
    Services,
    Snapshot,
    StrArg,
    snapshot_of_hash,
)
from server.protocol import Request
from server.settings import Settings
from server.store import stock
from server.store.keys import PlayerKeys

SOLD_OUT_RETRIES_MAX = 1  # a sold-out answer that came with overdue units: look once more


def request_key(request: Request) -> str:
    return f"{'i' if isinstance(request.id, int) else 's'}:{request.id}"


async def mall(
    services: Services, keys: PlayerKeys, request: Request, args: dict[str, Any]
) -> dict[str, Any]:
    rules = services.rulebook.rules
    snapshot, wallet = await _snapshot(services, keys)
    if await expire_due(services, keys, dict(mall_of(snapshot).pending)):
        snapshot, wallet = await _snapshot(services, keys)
    now_ms = services.clock.now_ms()
    state = mall_of(snapshot)
    level = level_index(services, snapshot, now_ms)
    items = list(rules.mall.items.values())
    taken = await stock.units_taken(services.store, [item.name for item in items])
    return {
        "items": [
            item_view(item, state, rules.tz, now_ms, level, item.stock - taken[item.name])
            for item in items
        ],
        "orders": [o.to_wire() for o in await orders_of(services, keys, list(state.recent))],
        "level": level,
        "balance": wallet.balance,
        "available": wallet.balance - wallet.held_at(now_ms),
    }


async def _snapshot(services: Services, keys: PlayerKeys) -> tuple[Snapshot, Wallet]:
    state_raw = await services.store.call("HGETALL", keys.state)
    return snapshot_of_hash(state_raw), Wallet.from_hash(state_raw)


async def mall_buy(
    services: Services, keys: PlayerKeys, request: Request, args: dict[str, Any]
) -> dict[str, Any]:
    rules = services.rulebook.rules
    order_id = order_id_for(keys.player_id, request_key(request))
    reserved = False  # a unit of this order is (or may be) reserved
    for _ in range(COMMIT_ATTEMPTS_MAX):
        got = await load(services, keys, order_id)
        if got.order is not None:
            return await _existing(services, keys, got.order, got.wallet.balance)
        # Orders past their payment deadline count no more: give their coins back first.
        if await expire_due(services, keys, dict(mall_of(got.snapshot).pending)):
            continue
        now_ms = services.clock.now_ms()
        available = got.wallet.balance - got.wallet.held_at(now_ms)
        level = level_index(services, got.snapshot, now_ms)
        try:
            item = check_buy(
                mall_of(got.snapshot), rules.mall, rules.tz, args["item"], now_ms, level, available
            )
        except RuleViolation as exc:
            if reserved:  # refused on a later pass: close the order, release its unit now
                await _close(services, keys, order_id, args["item"], exc.code, got.wallet.balance)
            raise OpError(exc.code, exc.message) from None
        order = new_order(item, order_id, rules.mall, rules.tz, now_ms)
        status = await _reserve(services, keys, item, order, now_ms)
        if status == "done":
            continue  # settled already: its record tells the answer
        if status not in ("ok", "exists"):
            raise OpError(status, _REFUSALS.get(status, status))
        reserved = True
        commit = Commit(
            expected_ver=got.snapshot.ver,
            fields={"mall": pack(placed(mall_of(got.snapshot), rules.mall, order).to_wire())},
            records=[(record_field(order_id), b"", encode(order))],
            pushes=[push(order)],
            asked_by_socket=True,  # the reply carries the balance (done.answer)
        )
        if order.cash_fen:
            hold = HoldOp("reserve", order_id, order.coins, order.expires_ms)
            commit = commit._replace(holds=[hold])
        else:
            debit = Transfer(debit_id(order_id), "d", order.coins, SINK, ref=f"mall {item.name}")
            commit = commit._replace(transfers=[debit])
        done = await apply(services.store, keys, commit, now_ms)
        if done.status in ("CONFLICT", "RECORD_CONFLICT"):
            continue  # the reservation stays ours ("exists" on the next pass)
        if done.status != "ok":
            return await _close(services, keys, order_id, item.name, done.status, done.balance)
        if order.state == PAID:
            order = await settle_stock(services, keys, order)
        return done.answer({"order": order.to_wire(), "already": False})
    raise OpError("BUSY", "the player's state kept changing; try again")


async def _close(
    services: Services, keys: PlayerKeys, order_id: str, item: str, code: str, balance: int
) -> dict[str, Any]:
    """Close an order that will not be placed (refused with `code`) and release its unit;
    if a concurrent retry placed it meanwhile, that order stands and is the answer."""
    rules = services.rulebook.rules
    closed = closed_unplaced(order_id, item, code, rules.tz, services.clock.now_ms())
    stands = await close_unplaced(services, keys, order_id, closed)
    await settle_stock(services, keys, stands)
    return await _existing(services, keys, stands, balance)


_REFUSALS = {
    "SOLD_OUT": "sold out: every unit is sold or reserved",
    "LIMIT_REACHED": "your limit of this item is reached",
    "NOT_ON_SALE": "the sale has not started",
    "SALE_ENDED": "the sale has ended",
    "ORDER_MISMATCH": "this order id belongs to another player",
}


async def _reserve(
    services: Services, keys: PlayerKeys, item: MallItem, order: MallOrder, now_ms: int
) -> str:
    """Reserve the order's unit; repair the overdue reservations this touch was handed."""
    rules = services.rulebook.rules
    deadline_ms = order.expires_ms or now_ms + rules.mall.reserve_timeout_ms
    for attempt in range(SOLD_OUT_RETRIES_MAX + 1):
        got = await stock.reserve(
            services.store,
            item.name,
            order.order_id,
            keys.player_id,
            deadline_ms,
            item.stock,
            item.per_player_max,
            window_ms(item, rules.tz),
            now_ms,
        )
        repaired = await repair_leased(services, item.name, got.overdue)
        if got.status != "SOLD_OUT" or not repaired or attempt == SOLD_OUT_RETRIES_MAX:
            return got.status
        now_ms = services.clock.now_ms()
    raise AssertionError("unreachable")


async def _existing(
    services: Services, keys: PlayerKeys, order: MallOrder, balance: int
) -> dict[str, Any]:
    """The answer to a request whose order exists: a retry, or a refusal that closed it."""
    if order.never_placed:
        raise OpError(order.reason, f"this request's order was not placed: {order.reason}")
    if order.state == PAID:  # a crash left its unit unconfirmed: finish it now
        order = await settle_stock(services, keys, order)
    return {"order": order.to_wire(), "already": True, "balance": balance}


def ops(settings: Settings) -> dict[str, Op]:
    return {
        "mall": Op({}, mall),
        "mall_buy": Op({"item": StrArg(MALL_ITEM_NAME_RE)}, mall_buy),
    }
