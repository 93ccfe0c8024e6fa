"""A flash sale (秒杀) raced from two server processes: 100 units, 2 000 requests, one per
player at most; exactly 100 sold, nobody twice, the books balance. Prints the figures."""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from server.client import ManorClient
from server.clock import SystemClock
from server.ledger.commit import Commit, apply
from server.ledger.ledger import Transfer
from server.ledger.verify import verify
from server.store.embedded import EmbeddedStore
from server.store.keys import BUCKETS, PlayerKeys, sys_accounts
from server.store.stock import StockKeys
from server.store.store import Store, connect
from tests.conftest import SHANGHAI
from tests.live import SECRET
from tests.processes import manor_serve
from tests.test_mall_ws import BATCH, rules_with

pytestmark = pytest.mark.slow

UNITS = 100
PLAYERS = 500  # each on both processes, two requests on each socket: 2 000 requests
REQUESTS_PER_SOCKET = 2
PRICE_COINS = 1000
LEAD_S = 600  # the sale opens this far ahead; the dev clock jumps there once all connected
CONNECTS_AT_ONCE = 50
FOLLOW_WAIT_S = 1.0  # the other process polls the dev clock every 0.2 s


def flash_rules(starts: datetime) -> str:
    ends = starts + timedelta(hours=1)
    return rules_with(f"""
[mall]
orders_per_day_max = 20

[mall.items.flash]
kind = "goods"
title = "Flash sale"
coins = {PRICE_COINS}
stock = {UNITS}
per_player_max = 1
starts_at = "{starts:%Y-%m-%dT%H:%M:%S}"
ends_at = "{ends:%Y-%m-%dT%H:%M:%S}"
""")


async def fund(url: str, players: list[str]) -> None:
    store = Store(connect(url))
    await store.load_scripts()
    now_ms = SystemClock().now_ms()
    try:

        async def one(player: str) -> None:
            credit = Transfer(f"grant:{player}", "c", 5 * PRICE_COINS, "mint:grant", BATCH)
            done = await apply(store, PlayerKeys(player), Commit(transfers=[credit]), now_ms)
            assert done.status == "ok"

        await asyncio.gather(*(one(p) for p in players))
    finally:
        await store.close()


async def press(client: ManorClient, n: int) -> tuple[str, float, dict[str, Any]]:
    started = time.perf_counter()
    reply = await client.request("mall_buy", {"item": "flash"}, f"flash-{n}")
    elapsed_ms = (time.perf_counter() - started) * 1000
    if reply["ok"]:
        return reply["result"]["order"]["state"], elapsed_ms, reply["result"]
    return reply["error"]["code"], elapsed_ms, {}


async def test_flash_sale_of_100_raced_by_2000_requests_on_two_processes(
    redis: Redis, redis_server: EmbeddedStore, tmp_path: Path
) -> None:
    from server.auth import issue_token

    players = [f"fan{n:04d}" for n in range(PLAYERS)]
    await fund(redis_server.url, players)
    starts = datetime.now(SHANGHAI).replace(tzinfo=None, microsecond=0) + timedelta(seconds=LEAD_S)
    rules = tmp_path / "rules.toml"
    rules.write_text(flash_rules(starts))
    settings = {"MANOR_RULES": str(rules), "MANOR_DEV_CLOCK": "1"}
    async with contextlib.AsyncExitStack() as stack:
        servers = [
            await stack.enter_async_context(
                manor_serve(redis_server.url, tmp_path / f"p{n}", settings, tmp_path / f"p{n}.log")
            )
            for n in range(2)
        ]
        now_s = int(time.time())
        gate = asyncio.Semaphore(CONNECTS_AT_ONCE)

        async def connect(url: str, player: str) -> ManorClient:
            async with gate:
                return await ManorClient.connect(url, issue_token(SECRET, player, now_s, 3600))

        clients = await asyncio.gather(
            *(connect(server.ws, player) for player in players for server in servers)
        )
        stack.push_async_callback(lambda: asyncio.gather(*(c.close() for c in clients)))
        early = await press(clients[0], -1)
        assert early[0] == "NOT_ON_SALE"
        # 00:00:00 arrives: every process's clock jumps to just past the opening.
        opens_ms = int(starts.replace(tzinfo=SHANGHAI).timestamp() * 1000)
        async with httpx.AsyncClient() as http:
            advance_ms = opens_ms - int(time.time() * 1000) + 50
            jumped = await http.post(
                f"{servers[0].http}/dev/clock", json={"advance_ms": advance_ms}
            )
            assert jumped.status_code == 200, jumped.text
        await asyncio.sleep(FOLLOW_WAIT_S)
        started = time.perf_counter()
        results = await asyncio.gather(
            *(
                press(client, n * REQUESTS_PER_SOCKET + k)
                for n, client in enumerate(clients)
                for k in range(REQUESTS_PER_SOCKET)
            )
        )
        wall_s = time.perf_counter() - started

    outcomes: dict[str, int] = {}
    for code, _, _ in results:
        outcomes[code] = outcomes.get(code, 0) + 1
    latencies = sorted(ms for _, ms, _ in results)
    p50, p99 = latencies[len(latencies) // 2], latencies[int(len(latencies) * 0.99)]
    print(
        f"\nflash sale: {len(results)} requests from {PLAYERS} players on 2 processes, "
        f"{UNITS} units: outcomes {outcomes}; wall {wall_s:.2f} s; "
        f"latency p50 {p50:.0f} ms, p99 {p99:.0f} ms, max {latencies[-1]:.0f} ms"
    )
    assert len(results) == PLAYERS * 2 * REQUESTS_PER_SOCKET == 2000
    assert outcomes.get("delivered", 0) == UNITS
    assert set(outcomes) <= {"delivered", "SOLD_OUT", "LIMIT_REACHED"}, outcomes
    winners = [r["order"]["order_id"] for code, _, r in results if code == "delivered"]
    assert len(set(winners)) == UNITS
    # Nobody bought twice: each player's wallet paid at most one price.
    balances = [await redis.hget(PlayerKeys(p).state, "bal") for p in players]
    paid = [5 * PRICE_COINS - int(b) for b in balances]
    assert sorted(set(paid)) == [0, PRICE_COINS] and paid.count(PRICE_COINS) == UNITS
    stock = await redis.hgetall(StockKeys("flash").stock)
    assert (int(stock[b"sold"]), int(stock[b"reserved"])) == (UNITS, 0)
    sunk = 0
    for bucket in range(BUCKETS):
        sunk += int(await redis.hget(sys_accounts(bucket), "sink:mall") or 0)
    assert sunk == UNITS * PRICE_COINS
    report = await verify(redis)
    assert report.ok, report.problems
