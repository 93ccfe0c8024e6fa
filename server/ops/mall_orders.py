"""A mall order's record in the player's slot, and the commits that move it.

The record (`mall:<order id>` in the player's records hash) decides an order's fate: every
step compare-and-sets it in the player's commit (commit.lua `records`), together with the
coins (a debit to `sink:mall`, or a checkout hold reserved, posted or voided), the player's
`mall` state field and a `mall_order` push. So a payment that lands as the order expires,
or a repair racing a late commit, can never both win: the second finds the record changed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack

from game_rules import ids
from game_rules.growth import level_of
from game_rules.mall import MallOrder, MallState
from server.ledger.commit import Commit, HoldOp, apply
from server.ledger.ledger import Transfer, Wallet
from server.ops.components import growth_of, pack
from server.pipeline import COMMIT_ATTEMPTS_MAX, OpError, Services, Snapshot, snapshot_of_hash
from server.store.keys import PlayerKeys

RECORD_PREFIX = "mall:"
SINK = "sink:mall"


def hold_word(raw: bytes | None) -> str:
    """The checkout hold's state word as commit.lua wrote it: "pending" (possibly past its
    expiry: the next commit voids it), "posted", "voided"; "none" without a hold."""
    return "none" if raw is None else raw.decode().split("|", 1)[0]


def record_field(order_id: str) -> str:
    return RECORD_PREFIX + order_id


def mall_of(snapshot: Snapshot) -> MallState:
    wire = snapshot.component("mall")
    return MallState() if wire is None else MallState.from_wire(wire)


def level_index(services: Services, snapshot: Snapshot, now_ms: int) -> int:
    return level_of(growth_of(snapshot), services.rulebook.rules, now_ms).index


def debit_id(order_id: str) -> str:
    return ids.transfer_id("mall", order_id)


def encode(order: MallOrder) -> bytes:
    return pack(order.to_wire())


def push(order: MallOrder) -> tuple[str, bytes]:
    return ("mall_order", encode(order))


@dataclass(frozen=True, slots=True)
class Loaded:
    """A player's state, wallet, one order's record and its checkout hold, read at once."""

    snapshot: Snapshot
    wallet: Wallet
    raw: bytes  # the record as stored; b"" when there is none
    order: MallOrder | None
    hold: bytes | None


async def load(services: Services, keys: PlayerKeys, order_id: str) -> Loaded:
    state, raw, hold = await services.store.call_many(
        ("HGETALL", keys.state),
        ("HGET", keys.records, record_field(order_id)),
        ("HGET", keys.holds, order_id),
    )
    wallet = Wallet.from_hash(state)
    snapshot = snapshot_of_hash(state)
    order = None if raw is None else MallOrder.from_wire(msgpack.unpackb(raw, raw=False))
    return Loaded(snapshot, wallet, raw or b"", order, hold)


async def orders_of(services: Services, keys: PlayerKeys, order_ids: list[str]) -> list[MallOrder]:
    if not order_ids:
        return []
    raws = await services.store.call("HMGET", keys.records, *[record_field(o) for o in order_ids])
    return [MallOrder.from_wire(msgpack.unpackb(raw, raw=False)) for raw in raws if raw is not None]


@dataclass(frozen=True, slots=True)
class Move:
    """One step of an order: from which states, to which, and what goes with it."""

    to_state: str
    from_states: tuple[str, ...]
    mall: Callable[[MallState, MallOrder], MallState] | None = None  # the counters' change
    hold: str = ""  # "post" or "void": the cash part's checkout hold
    debit: bool = False  # the order's coins to sink:mall
    payment_id: str = ""


class Stale(OpError):
    """The order is in a state this step cannot leave (the caller decides what it means)."""

    def __init__(self, order: MallOrder | None) -> None:
        state = "absent" if order is None else order.state
        super().__init__("ORDER_STATE", f"the order is {state}")
        self.order = order


async def move(
    services: Services, keys: PlayerKeys, order_id: str, step: Move
) -> tuple[MallOrder, bool]:
    """Move the order `order_id` as `step` says, once: (the order in its new state, whether
    an earlier call had moved it there already); Stale when it is elsewhere."""
    for _ in range(COMMIT_ATTEMPTS_MAX):
        got = await load(services, keys, order_id)
        order = got.order
        if order is not None and order.state == step.to_state:
            return order, True
        if order is None or order.state not in step.from_states:
            raise Stale(order)
        now_ms = services.clock.now_ms()
        new = order.moved(step.to_state, now_ms, step.payment_id)
        commit = Commit(
            records=[(record_field(order_id), got.raw, encode(new))], pushes=[push(new)]
        )
        if step.mall is not None:
            mall = step.mall(mall_of(got.snapshot), order)
            commit = commit._replace(
                expected_ver=got.snapshot.ver, fields={"mall": pack(mall.to_wire())}
            )
        if step.hold == "post" or (step.hold == "void" and hold_word(got.hold) == "pending"):
            # A hold voided already (by its time, in an earlier commit) needs no void: a
            # hold step that changes nothing would make the whole commit answer `exists`.
            commit = commit._replace(holds=[HoldOp(step.hold, order_id, order.coins)])
        if step.debit:
            ref = f"mall {order.item}"
            commit = commit._replace(
                transfers=[Transfer(debit_id(order_id), "d", order.coins, SINK, ref=ref)]
            )
        done = await apply(services.store, keys, commit, now_ms)
        if done.status == "ok":
            return new, False
        if done.status not in ("CONFLICT", "RECORD_CONFLICT"):
            raise OpError(done.status, f"the ledger refused the order's step: {done.status}")
    raise OpError("BUSY", "the player's state kept changing; try again")


async def close_unplaced(
    services: Services, keys: PlayerKeys, order_id: str, closed: MallOrder
) -> MallOrder:
    """Write the record of an order that was never placed (`closed`), unless it was placed
    meanwhile: the record that stands, which the caller settles the stock by."""
    for _ in range(COMMIT_ATTEMPTS_MAX):
        got = await load(services, keys, order_id)
        if got.order is not None:
            return got.order
        commit = Commit(records=[(record_field(order_id), b"", encode(closed))])
        done = await apply(services.store, keys, commit, services.clock.now_ms())
        if done.status == "ok":
            return closed
        if done.status != "RECORD_CONFLICT":
            raise OpError(done.status, f"the ledger refused: {done.status}")
    raise OpError("BUSY", "the player's records kept changing; try again")


async def mall_panel(services: Services, keys: PlayerKeys, snapshot: Snapshot) -> dict[str, Any]:
    """The operators' view of a player's mall: counters and the recent orders."""
    state = mall_of(snapshot)
    return {
        "day": state.day,
        "today": dict(state.today),
        "day_orders": state.day_orders,
        "ever": dict(state.ever),
        "pending": {o: {"item": i, "expires_ms": e} for o, (i, e) in state.pending.items()},
        "orders": [o.to_wire() for o in await orders_of(services, keys, list(state.recent))],
    }
