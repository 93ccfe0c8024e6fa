"""A mall item's stock: shared by every player, so it lives under its own hash tag
`{mall:<item>}` (one slot per item, not in any player's slot). Units are taken by a
reservation (mall_reserve.lua), then confirmed (sold) or released (back on sale) by
mall_settle.lua; the player's side of an order is committed in between, in the player's
own slot. server/ops/mall_orders.py joins the two steps and repairs a crash between them.
"""

from __future__ import annotations

from dataclasses import dataclass

from server.store.keys import PREFIX
from server.store.store import Store

# Overdue reservations handed to one touch (a reserve) or one sweep call of an item, and how
# long a repairer has before another may take the same one over.
CLAIM_PER_TOUCH_MAX = 4
CLAIM_PER_SWEEP_MAX = 100
REPAIR_LEASE_MS = 10_000
# A settled order id is remembered this long, so a late retry of its reserve cannot take a
# second unit (a retry checks the player's order record first; this closes the race).
DONE_KEEP_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class StockKeys:
    item: str

    @property
    def keys(self) -> list[str]:
        tag = f"{PREFIX}:{{mall:{self.item}}}"
        return [f"{tag}:stock", f"{tag}:buyers", f"{tag}:due", f"{tag}:done"]

    @property
    def stock(self) -> str:
        return self.keys[0]

    @property
    def buyers(self) -> str:
        return self.keys[1]


@dataclass(frozen=True, slots=True)
class Reserved:
    status: str  # "ok", "exists", "done", "SOLD_OUT", "LIMIT_REACHED", ... (mall_reserve.lua)
    left: int  # units still on sale after the call
    overdue: tuple[tuple[str, str], ...]  # (order id, player) leased to this caller to repair


def _pairs(flat: list[bytes]) -> tuple[tuple[str, str], ...]:
    return tuple((flat[i].decode(), flat[i + 1].decode()) for i in range(0, len(flat), 2))


async def reserve(
    store: Store,
    item: str,
    order_id: str,
    player: str,
    deadline_ms: int,
    stock_total: int,
    per_player_max: int,
    window: tuple[int, int],
    now_ms: int,
) -> Reserved:
    reply = await store.durable_script(
        "mall_reserve",
        StockKeys(item).keys,
        [
            now_ms,
            order_id,
            player,
            deadline_ms,
            stock_total,
            per_player_max,
            window[0],
            window[1],
            CLAIM_PER_TOUCH_MAX,
            REPAIR_LEASE_MS,
        ],
    )
    return Reserved(reply[0].decode(), int(reply[1]), _pairs(reply[2:]))


async def settle(store: Store, item: str, order_id: str, op: str, now_ms: int) -> str:
    """Confirm (sold) or release (back on sale) an order's unit: "ok", "done" or
    "NOT_FOUND"."""
    reply = await store.durable_script(
        "mall_settle", StockKeys(item).keys, [now_ms, op, order_id, 0, 0, 0]
    )
    return str(reply[0].decode())


async def claim_overdue(store: Store, item: str, now_ms: int) -> tuple[tuple[str, str], ...]:
    """The item's reservations past their deadline, leased to the caller for
    REPAIR_LEASE_MS: (order id, player)."""
    reply = await store.script(
        "mall_settle",
        StockKeys(item).keys,
        [now_ms, "claim", "", CLAIM_PER_SWEEP_MAX, REPAIR_LEASE_MS, DONE_KEEP_MS],
    )
    return _pairs(reply[1:])


async def units_taken(store: Store, items: list[str]) -> dict[str, int]:
    """Units sold or reserved per item (one round trip)."""
    if not items:
        return {}
    got = await store.call_many(
        *[("HMGET", StockKeys(item).stock, "sold", "reserved") for item in items]
    )
    return {
        item: int(sold or 0) + int(reserved or 0)
        for item, (sold, reserved) in zip(items, got, strict=True)
    }
