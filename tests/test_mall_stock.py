"""mall_reserve.lua and mall_settle.lua against a real server: every refusal writes nothing,
stock is never oversold, settled orders are never reserved again, overdue ones are leased."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from server.store import stock
from server.store.stock import REPAIR_LEASE_MS, StockKeys
from server.store.store import Store
from tests.conftest import keys_matching

NOW = 1_800_000_000_000
NO_WINDOW = (0, 0)


async def dump(redis: Redis) -> dict[bytes, object]:
    """Every mall key's content, to compare before and after a refused call."""
    out: dict[bytes, object] = {}
    for key in sorted(await keys_matching(redis, "m:{mall:*")):
        kind = (await redis.type(key)).decode()
        out[key] = await (
            redis.hgetall(key) if kind == "hash" else redis.zrange(key, 0, -1, withscores=True)
        )
    return out


async def reserve(
    store: Store,
    order: str,
    player: str,
    total: int = 2,
    per_player: int = 0,
    window: tuple[int, int] = NO_WINDOW,
    now_ms: int = NOW,
) -> stock.Reserved:
    return await stock.reserve(
        store, "box", order, player, now_ms + 30_000, total, per_player, window, now_ms
    )


async def test_reserve_until_sold_out_then_nothing_written(store: Store, redis: Redis) -> None:
    assert (await reserve(store, "o1", "ann")).status == "ok"
    second = await reserve(store, "o2", "bob")
    assert (second.status, second.left) == ("ok", 0)
    before = await dump(redis)
    third = await reserve(store, "o3", "cid")
    assert (third.status, third.left) == ("SOLD_OUT", 0)
    assert await dump(redis) == before
    assert (await reserve(store, "o1", "ann")).status == "exists"
    assert (await reserve(store, "o1", "eve")).status == "ORDER_MISMATCH"
    assert await dump(redis) == before


@pytest.mark.parametrize(
    ("window", "now_ms", "status"),
    [
        ((NOW, 0), NOW - 1, "NOT_ON_SALE"),
        ((NOW, 0), NOW, "ok"),  # the first millisecond of the sale
        ((0, NOW + 1), NOW, "ok"),  # the last one
        ((0, NOW), NOW, "SALE_ENDED"),
    ],
)
async def test_window_edges(
    store: Store, redis: Redis, window: tuple[int, int], now_ms: int, status: str
) -> None:
    got = await reserve(store, "o1", "ann", window=window, now_ms=now_ms)
    assert got.status == status
    if status != "ok":
        assert await dump(redis) == {}


async def test_per_player_limit_counts_reserved_and_sold_not_released(store: Store) -> None:
    assert (await reserve(store, "o1", "ann", total=5, per_player=1)).status == "ok"
    assert (await reserve(store, "o2", "ann", total=5, per_player=1)).status == "LIMIT_REACHED"
    assert await stock.settle(store, "box", "o1", "release", NOW) == "ok"
    assert (await reserve(store, "o2", "ann", total=5, per_player=1)).status == "ok"
    assert await stock.settle(store, "box", "o2", "confirm", NOW) == "ok"
    assert (await reserve(store, "o3", "ann", total=5, per_player=1)).status == "LIMIT_REACHED"


async def test_settle_once_and_settled_orders_never_come_back(store: Store, redis: Redis) -> None:
    await reserve(store, "o1", "ann")
    await reserve(store, "o2", "bob")
    assert await stock.settle(store, "box", "o1", "confirm", NOW) == "ok"
    assert await stock.settle(store, "box", "o2", "release", NOW) == "ok"
    before = await dump(redis)
    assert await stock.settle(store, "box", "o1", "confirm", NOW) == "done"
    assert await stock.settle(store, "box", "o1", "release", NOW) == "done"  # never both
    assert await stock.settle(store, "box", "o9", "release", NOW) == "NOT_FOUND"
    assert (await reserve(store, "o1", "ann")).status == "done"
    assert (await reserve(store, "o2", "bob")).status == "done"
    assert await dump(redis) == before
    figures = await redis.hgetall(StockKeys("box").stock)
    assert (figures[b"sold"], figures[b"reserved"]) == (b"1", b"0")
    assert await stock.units_taken(store, ["box", "other"]) == {"box": 1, "other": 0}


async def test_overdue_reservations_are_leased_to_one_repairer_at_a_time(store: Store) -> None:
    await reserve(store, "o1", "ann", total=3)
    assert await stock.claim_overdue(store, "box", NOW + 29_999) == ()
    assert await stock.claim_overdue(store, "box", NOW + 30_000) == (("o1", "ann"),)
    # Leased: neither a sweep nor a touch gets it again until the lease ends.
    assert await stock.claim_overdue(store, "box", NOW + 30_001) == ()
    touch = await reserve(store, "o2", "bob", total=3, now_ms=NOW + 30_001)
    assert (touch.status, touch.overdue) == ("ok", ())
    later = NOW + 30_000 + REPAIR_LEASE_MS
    touch = await reserve(store, "o3", "cid", total=3, now_ms=later)
    assert (touch.status, touch.overdue) == ("ok", (("o1", "ann"),))
    # Settled in the meantime: dropped from the overdue set, not handed out.
    await stock.settle(store, "box", "o1", "release", later)
    assert await stock.claim_overdue(store, "box", later + REPAIR_LEASE_MS) == ()


async def test_sold_out_answer_still_hands_out_overdue_units(store: Store) -> None:
    await reserve(store, "o1", "ann", total=1)
    got = await reserve(store, "o2", "bob", total=1, now_ms=NOW + 30_000)
    assert (got.status, got.overdue) == ("SOLD_OUT", (("o1", "ann"),))


async def test_bad_args_write_nothing(store: Store, redis: Redis) -> None:
    reply = await store.script(
        "mall_reserve", StockKeys("box").keys, [NOW, "", "ann", 1, 1, 0, 0, 0, 1, 1]
    )
    assert reply[0] == b"BAD_ARGS"
    reply = await store.script("mall_settle", StockKeys("box").keys, [NOW, "steal", "o1", 0, 0, 0])
    assert reply[0] == b"BAD_ARGS"
    assert await dump(redis) == {}
