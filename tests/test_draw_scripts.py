"""draw_period.lua, draw_reserve.lua and draw_settle.lua against a real server: what each
writes, and that every refusal writes nothing."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from redis.asyncio import Redis

from game_rules.draw import DrawRecord, period_of
from game_rules.rules import Rules, parse_rules
from server.ops import draw_stock
from server.store.draw_keys import DrawKeys
from server.store.store import Store
from tests.conftest import SHANGHAI, contents, shanghai_ms

RULES: Rules = parse_rules(Path("game_rules/default.toml").read_text("utf-8"))
NOW_MS = shanghai_ms("2026-11-23T09:00:00")
PERIOD = period_of("daily", SHANGHAI, NOW_MS)
KEYS = DrawKeys("gashapon")
GIFT_STOCK = RULES.draw.pools["gashapon"].prizes["gift_pack"].stock  # 5


def record(player: str, nonce: int, client_seed: str = "s") -> DrawRecord:
    return DrawRecord(
        player, nonce, client_seed, NOW_MS, 8490, "gift_pack", "gift_pack", False, False, 0
    )


async def frozen(store: Store) -> draw_stock.PeriodRecord:
    pool = RULES.draw.pools["gashapon"]
    return await draw_stock.period_record(store, RULES, pool, PERIOD, NOW_MS)


async def test_the_period_record_is_created_once(store: Store, redis: Redis) -> None:
    first, second = await frozen(store), await frozen(store)
    assert first == second and len(first.seed) == 64
    assert first.pool == RULES.draw.pools["gashapon"]
    assert await redis.zrange(KEYS.periods, 0, -1) == [PERIOD.id.encode()]
    ttl_ms = await redis.pttl(KEYS.period(PERIOD.id))
    assert ttl_ms > 30 * 86_400_000  # history_days after the period's end


async def test_stock_runs_out_and_refusals_write_nothing(store: Store, redis: Redis) -> None:
    period = await frozen(store)
    for n in range(GIFT_STOCK):
        held = await draw_stock.reserve(
            store, RULES, period, record(f"p{n}", 0), "o", "gift_pack", NOW_MS, None
        )
        assert held.status == "ok"
    before = await contents(redis)
    gone = await draw_stock.reserve(
        store, RULES, period, record("late", 0), "o", "gift_pack", NOW_MS, None
    )
    assert gone.status == "SOLD_OUT" and await contents(redis) == before
    # The same draw again (a retry): its reservation, not a second unit.
    again = await draw_stock.reserve(
        store,
        RULES,
        period,
        replace(record("p0", 0), ts_ms=NOW_MS + 5),
        "x",
        "gift_pack",
        NOW_MS,
        None,
    )
    assert again.status == "exists" and again.record == record("p0", 0)
    # Other inputs for the same draw id while the holder is alive: refused, nothing written.
    busy = await draw_stock.reserve(
        store, RULES, period, record("p0", 0, "other"), "x", "gift_pack", NOW_MS, None
    )
    assert busy.status == "RESERVED" and await contents(redis) == before
    assert await redis.hget(KEYS.stock(PERIOD.id), "gift_pack") == str(GIFT_STOCK).encode()


async def test_a_full_period_refuses_and_writes_nothing(store: Store, redis: Redis) -> None:
    period = await frozen(store)
    small = draw_stock.PeriodRecord(
        period.period, period.seed, period.seed_hash, replace(period.pool, draws_per_period_max=2)
    )
    for n in range(2):
        assert (
            await draw_stock.reserve(store, RULES, small, record(f"q{n}", 0), "o", "", NOW_MS, None)
        ).status == "ok"
    before = await contents(redis)
    full = await draw_stock.reserve(store, RULES, small, record("q9", 0), "o", "", NOW_MS, None)
    assert full.status == "PERIOD_FULL" and await contents(redis) == before


async def test_settle_confirms_releases_and_answers_repeats(store: Store, redis: Redis) -> None:
    period = await frozen(store)
    for player in ("a", "b"):
        await draw_stock.reserve(
            store, RULES, period, record(player, 0), "own", "gift_pack", NOW_MS, None
        )
    stock = KEYS.stock(PERIOD.id)
    assert await draw_stock.settle(store, "gashapon", PERIOD.id, "0:a", "confirm") == "confirmed"
    assert await draw_stock.settle(store, "gashapon", PERIOD.id, "0:a", "confirm") == "none"
    # A stale op (it read the player before the commit) reserving the logged draw again.
    before = await contents(redis)
    stale = await draw_stock.reserve(
        store, RULES, period, record("a", 0), "late", "gift_pack", NOW_MS, None
    )
    assert stale.status == "DONE" and await contents(redis) == before
    assert (
        await draw_stock.settle(store, "gashapon", PERIOD.id, "0:b", "release", "other") == "kept"
    )
    assert (
        await draw_stock.settle(store, "gashapon", PERIOD.id, "0:b", "release", "own") == "released"
    )
    assert await redis.hget(stock, "gift_pack") == b"1"
    assert await redis.llen(KEYS.log(PERIOD.id)) == 1
    assert await redis.zcard(KEYS.due) == 0
    # The next draw of a player confirms the previous one left pending.
    await draw_stock.reserve(store, RULES, period, record("c", 0), "o", "", NOW_MS, None)
    await draw_stock.reserve(store, RULES, period, record("c", 1), "o", "", NOW_MS, 0)
    logged = [r async for r in draw_stock.read_log(redis, "gashapon", PERIOD.id)]
    assert [(r.player, r.nonce) for r in logged] == [("a", 0), ("c", 0)]
    assert (
        await redis.llen(KEYS.log(PERIOD.id)) == 2
        and await redis.hlen(KEYS.pending(PERIOD.id)) == 1
    )
    with pytest.raises(Exception, match="BAD_ACTION"):
        await draw_stock.settle(store, "gashapon", PERIOD.id, "1:c", "keep")
