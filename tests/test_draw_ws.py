"""End to end: the lucky draw over real sockets, a real store and `manor draw verify`."""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import msgpack
import pytest
import yaml
from redis.asyncio import Redis

from game_rules.draw import DrawRecord, pick, roll, seed_hash
from game_rules.rules import parse_rules
from server.auth import issue_token
from server.client import ManorClient, ManorError
from server.clock import FrozenClock
from server.ledger.commit import Commit, apply
from server.ledger.ledger import Transfer
from server.ledger.verify import verify
from server.ops import draw as draw_ops
from server.ops import draw_stock
from server.store.draw_keys import DrawKeys
from server.store.embedded import EmbeddedStore
from server.store.keys import PlayerKeys
from server.store.store import Store
from tests.conftest import calls
from tests.live import SECRET, Live, serve
from tests.processes import manor_serve
from tests.test_cli import manor

DAY_MS = 86_400_000
ADMIN = "admin-key-0123456789-abcdefghijklmnop"
PERIOD = "20261123"  # the conftest clock's business day

# A small pool: a prize with a stock of 3 that most draws hit, a guaranteed one after 3
# misses, a 5 s reservation.
RULES = """
version = "draw-test"
[signin]
rewards = [10]
[draw]
reservation_timeout_s = 5
[draw.pools.tiny]
cost_coins = 10
draws_per_day_max = 50
pity_misses = 3
pity_prize = "big"
fallback = "small"
[draw.pools.tiny.prizes.small]
kind = "coins"
coins = 1
weight = 20
[draw.pools.tiny.prizes.rare]
kind = "goods"
weight = 70
stock = 3
[draw.pools.tiny.prizes.big]
kind = "coins"
coins = 100
weight = 10
[draw.pools.one]
cost_coins = 1
draws_per_period_max = 1
fallback = "nothing"
[draw.pools.one.prizes.nothing]
kind = "none"
weight = 1
"""


@pytest.fixture
async def drawing(
    redis: Redis, redis_server: EmbeddedStore, tmp_path: Path, clock: FrozenClock
) -> AsyncIterator[Live]:
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    async with serve(redis_server.url, tmp_path, clock, rules=str(rules), admin_key=ADMIN) as live:
        yield live


ASYNCAPI = yaml.safe_load(Path("docs/asyncapi.yaml").read_text("utf-8"))


def check_reply(schema: str, result: dict[str, Any]) -> None:
    """The reply as docs/asyncapi.yaml describes it."""
    document = {**ASYNCAPI, "$ref": f"#/components/schemas/{schema}"}
    jsonschema.validate({"id": "r", "ok": True, "result": result}, document)


async def fund(live: Live, player: str, coins: int) -> None:
    transfer = Transfer(f"fund:{player}", "c", coins, "mint:grant", date(2027, 12, 31))
    await apply(live.manor.store, PlayerKeys(player), Commit(transfers=[transfer]), 1)


async def error_code(client: ManorClient, op: str, **args: Any) -> str:
    with pytest.raises(ManorError) as err:
        await client.call(op, **args)
    return err.value.code


async def log_of(redis: Redis, pool: str = "tiny") -> list[DrawRecord]:
    raw = await redis.lrange(DrawKeys(pool).log(PERIOD), 0, -1)
    return [DrawRecord.from_wire(msgpack.unpackb(r, raw=False)) for r in raw]


async def test_hash_first_then_a_draw_that_the_revealed_seed_reproduces(
    drawing: Live, redis: Redis, clock: FrozenClock
) -> None:
    await fund(drawing, "ana", 100)
    ana = await drawing.connect("ana")
    pool = await ana.call("draw_pool", pool="tiny")
    assert pool["nonce"] == 0 and pool["client_seed"] is None and pool["period"]["id"] == PERIOD
    committed = pool["seed_hash"]
    assert [p["stock_left"] for p in pool["prizes"]] == [None, 3, None]
    assert (await ana.call("draw_seed", client_seed="ana-s33d"))["client_seed"] == "ana-s33d"
    got = await ana.call("draw", pool="tiny")
    assert got["seed_hash"] == committed and got["nonce"] == 0 and got["client_seed"] == "ana-s33d"
    assert got["balance"] == 100 - 10 + got["prize"]["coins"]
    seeds = await ana.call("draw_seeds", pool="tiny")
    assert seeds["periods"][0]["seed"] is None  # not before the period ends
    clock.advance(DAY_MS)
    revealed = (await ana.call("draw_seeds", pool="tiny"))["periods"]
    seed = next(p for p in revealed if p["id"] == PERIOD)["seed"]
    assert seed_hash(seed) == committed
    rolled = roll(seed, "ana", "ana-s33d", 0, got["total_weight"])
    assert (rolled.number, rolled.digest_hex) == (got["number"], got["digest"])
    table = parse_rules(RULES).draw.pools["tiny"]
    assert pick(table.prizes, rolled.number).name == got["drawn"]
    assert [r.nonce for r in await log_of(redis)] == [0]
    assert (await verify(redis)).ok
    check_reply("DrawPoolReply", pool)
    check_reply("DrawReply", got)
    check_reply("DrawSeedsReply", {"pool": "tiny", "periods": revealed})
    headers = {"Authorization": f"Bearer {ADMIN}"}
    async with httpx.AsyncClient(base_url=drawing.http, headers=headers) as http:
        lookup = (await http.get("/v1/admin/players/ana")).json()
    assert lookup["draw"]["client_seed"] == "ana-s33d"
    assert lookup["draw"]["pools"]["tiny"]["nonce"] == 1
    await ana.close()


async def test_a_retry_replays_the_same_draw_and_moves_coins_once(
    drawing: Live, redis: Redis
) -> None:
    broke = await drawing.connect("broke")
    assert await error_code(broke, "draw", pool="tiny") == "INSUFFICIENT_FUNDS"
    assert await redis.keys("m:{draw:tiny}*") == []  # a refused draw wrote nothing
    await broke.close()
    await fund(drawing, "ben", 100)
    ben = await drawing.connect("ben")
    first = await ben.call("draw", request_id="draw-1", pool="tiny")
    again = await ben.call("draw", request_id="draw-1", pool="tiny")
    assert again == first
    assert (await ben.call("draw_pool", pool="tiny"))["nonce"] == 1
    journal = await redis.lrange(PlayerKeys("ben").journal, 0, -1)
    assert len(journal) == 2 + (first["prize"]["coins"] > 0)  # fund, cost, prize
    assert await error_code(ben, "draw", pool="nope") == "UNKNOWN_POOL"
    assert (await ben.call("draw", pool="one"))["prize"]["kind"] == "none"
    assert await error_code(ben, "draw", pool="one") == "DRAW_PERIOD_FULL"
    assert await error_code(ben, "draw_seed", client_seed="no spaces") == "BAD_ARGS"
    await ben.close()


async def test_a_draw_from_the_players_only_socket_publishes_no_balance_push(
    drawing: Live, redis: Redis
) -> None:
    """The draw's reply carries the balance; with no other socket of the player open, its
    commit publishes no `balance` push (commit.lua, asked_by_socket)."""
    await fund(drawing, "dee", 100)
    dee = await drawing.connect("dee")
    await dee.call("state")
    before = await calls(redis, "publish") + await calls(redis, "spublish")
    got = await dee.call("draw", pool="one")
    assert got["balance"] == 99
    assert await calls(redis, "publish") + await calls(redis, "spublish") == before
    await dee.close()


async def test_stock_is_never_exceeded_under_concurrent_draws(drawing: Live, redis: Redis) -> None:
    players = [f"racer{i}" for i in range(12)]
    for player in players:
        await fund(drawing, player, 1000)
    clients = [await drawing.connect(p) for p in players]

    async def five(client: ManorClient) -> list[dict[str, Any]]:
        return [await client.call("draw", pool="tiny") for _ in range(5)]

    results = [r for batch in await asyncio.gather(*(five(c) for c in clients)) for r in batch]
    awarded = [r["prize"]["name"] for r in results]
    assert awarded.count("rare") == 3  # 70 % of 60 draws hit it: the stock is what stops it
    assert sum(r["sold_out"] for r in results) > 0
    assert all(r["prize"]["name"] == "small" for r in results if r["sold_out"])
    assert await redis.hget(DrawKeys("tiny").stock(PERIOD), "rare") == b"3"
    assert len(await log_of(redis)) == 60
    assert await redis.hlen(DrawKeys("tiny").pending(PERIOD)) == 0
    pool = await clients[0].call("draw_pool", pool="tiny")
    assert pool["prizes"][1]["stock_left"] == 0
    assert (await verify(redis)).ok
    for client in clients:
        await client.close()


async def test_the_guarantee_comes_after_three_misses(drawing: Live) -> None:
    await fund(drawing, "cat", 1000)
    cat = await drawing.connect("cat")
    misses, forced = 0, 0
    for _ in range(40):  # no guarantee in 40 draws: below 2e-7 with these weights
        got = await cat.call("draw", pool="tiny")
        assert got["misses_before"] == misses
        assert got["forced"] == (misses == 3)
        if misses == 3:
            assert got["prize"]["name"] == "big" and got["misses"] == 0
            forced += 1
        misses = got["misses"]
    assert forced > 0
    await cat.close()


async def test_a_crash_before_the_commit_is_released_by_the_sweep(
    drawing: Live, redis: Redis, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    await fund(drawing, "dee", 100)
    dee = await drawing.connect("dee")

    async def dies(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the process died before the commit")

    monkeypatch.setattr(draw_ops, "apply", dies)
    assert await error_code(dee, "draw", pool="tiny") == "INTERNAL"
    monkeypatch.undo()
    pending = DrawKeys("tiny").pending(PERIOD)
    assert await redis.hlen(pending) == 1
    services = drawing.manor.dispatcher.services
    assert await draw_stock.sweep(services) == 0  # not overdue yet
    clock.advance(6_000)
    assert await draw_stock.sweep(services) == 1
    assert await redis.hlen(pending) == 0 and await redis.hget(
        DrawKeys("tiny").stock(PERIOD), "rare"
    ) in (None, b"0")
    got = await dee.call("draw", pool="tiny")  # the same nonce, drawn for real now
    assert got["nonce"] == 0 and got["balance"] == 90 + got["prize"]["coins"]
    assert [r.nonce for r in await log_of(redis)] == [0]
    await dee.close()


async def test_a_crash_after_the_commit_is_confirmed_by_the_next_draw(
    drawing: Live, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    await fund(drawing, "eve", 100)
    eve = await drawing.connect("eve")
    real_settle = draw_stock.settle

    async def dies(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the process died before confirming")

    monkeypatch.setattr(draw_stock, "settle", dies)
    assert await error_code(eve, "draw", request_id="e-1", pool="tiny") == "INTERNAL"
    monkeypatch.setattr(draw_stock, "settle", real_settle)
    assert await redis.hlen(DrawKeys("tiny").pending(PERIOD)) == 1
    assert await log_of(redis) == []
    # The commit stored the reply: a retry of the request id replays it, drawing nothing...
    replayed = await eve.call("draw", request_id="e-1", pool="tiny")
    assert replayed["nonce"] == 0 and replayed["balance"] == 90 + replayed["prize"]["coins"]
    assert await log_of(redis) == []
    second = await eve.call("draw", pool="tiny")
    assert second["nonce"] == 1
    # ... and the next draw confirms the first one into the log.
    assert [r.nonce for r in await log_of(redis)] == [0, 1]
    assert await redis.hlen(DrawKeys("tiny").pending(PERIOD)) == 0
    assert (await verify(redis)).ok
    await eve.close()


async def test_a_crash_after_the_commit_is_confirmed_by_the_sweep(
    drawing: Live, redis: Redis, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    await fund(drawing, "fin", 100)
    fin = await drawing.connect("fin")
    real_settle = draw_stock.settle

    async def dies(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the process died before confirming")

    monkeypatch.setattr(draw_stock, "settle", dies)
    assert await error_code(fin, "draw", pool="tiny") == "INTERNAL"
    monkeypatch.setattr(draw_stock, "settle", real_settle)
    clock.advance(6_000)
    assert await draw_stock.sweep(drawing.manor.dispatcher.services) == 1
    assert [r.player for r in await log_of(redis)] == ["fin"]
    assert await redis.hlen(DrawKeys("tiny").pending(PERIOD)) == 0
    assert (await fin.call("draw_pool", pool="tiny"))["nonce"] == 1  # no fence: it committed
    await fin.close()


async def test_manor_draw_verify_end_to_end(
    drawing: Live, redis: Redis, redis_server: EmbeddedStore, tmp_path: Path
) -> None:
    for player in ("fay", "gus"):
        await fund(drawing, player, 500)
        client = await drawing.connect(player)
        for _ in range(6):
            await client.call("draw", pool="tiny")
        await client.close()
    env = {"MANOR_REDIS_URL": redis_server.url, "MANOR_RULES": str(tmp_path / "rules.toml")}
    good = manor("draw", "verify", "--pool", "tiny", "--period", PERIOD, **env)
    assert good.returncode == 0, good.stderr
    assert f"draw verify tiny {PERIOD}" in good.stdout and "12 draws, 0 problems" in good.stdout
    ledger = manor("ledger", "verify", **env)
    assert ledger.returncode == 0, ledger.stderr
    finance = manor("report", "finance", "--from", "2026-11-23", "--to", "2026-11-23", **env)
    assert "flow,sink:draw,spent,12,120" in finance.stdout, finance.stdout
    # A recorded result changed in the store: the recomputation catches it.
    key = DrawKeys("tiny").log(PERIOD)
    record = DrawRecord.from_wire(msgpack.unpackb(await redis.lindex(key, 3), raw=False))
    better = "big" if record.awarded != "big" else "small"
    forged = DrawRecord(*[*record.to_wire()[:5], better, better, *record.to_wire()[7:]])
    await redis.lset(key, 3, msgpack.packb(forged.to_wire()))
    bad = manor("draw", "verify", "--pool", "tiny", "--period", PERIOD, **env)
    assert bad.returncode == 1
    assert f"player {record.player} nonce {record.nonce}" in bad.stderr and "FAILED" in bad.stdout
    # A seed swapped after the fact no longer hashes to the published commitment.
    await redis.lset(key, 3, msgpack.packb(record.to_wire()))
    await redis.hset(DrawKeys("tiny").period(PERIOD), "seed", hashlib.sha256(b"x").hexdigest())
    swapped = manor("draw", "verify", "--pool", "tiny", "--period", PERIOD, **env)
    assert swapped.returncode == 1 and "does not hash" in swapped.stderr
    assert manor("draw", "verify", "--period", "2026-11", **env).returncode == 2


def test_the_cli_module_runs() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "server.cli", "draw", "verify", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0 and "--period" in done.stdout


async def test_two_processes_racing_never_exceed_the_stock(
    store: Store, redis: Redis, redis_server: EmbeddedStore, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    settings = {"MANOR_RULES": str(rules), "MANOR_JOBS": "0"}
    players = [f"duo{i}" for i in range(16)]
    batch = date(2099, 12, 31)
    for player in players:
        transfer = Transfer(f"fund:{player}", "c", 1000, "mint:grant", batch)
        await apply(store, PlayerKeys(player), Commit(transfers=[transfer]), 1)
    async with (
        manor_serve(redis_server.url, tmp_path / "a", settings) as one,
        manor_serve(redis_server.url, tmp_path / "b", settings) as two,
    ):
        clients = [
            await ManorClient.connect(
                (one, two)[i % 2].ws, issue_token(SECRET, p, int(time.time()), 600)
            )
            for i, p in enumerate(players)
        ]

        async def five(client: ManorClient) -> list[dict[str, Any]]:
            return [await client.call("draw", pool="tiny") for _ in range(5)]

        results = [r for b in await asyncio.gather(*(five(c) for c in clients)) for r in b]
        for client in clients:
            await client.close()
    by_period: dict[str, list[str]] = {}
    for result in results:
        by_period.setdefault(result["period"]["id"], []).append(result["prize"]["name"])
    for period_id, prizes in by_period.items():
        taken = await redis.hget(DrawKeys("tiny").stock(period_id), "rare")
        assert prizes.count("rare") == int(taken or 0) <= 3
        assert await redis.llen(DrawKeys("tiny").log(period_id)) == len(prizes)
    assert sum(p.count("rare") for p in by_period.values()) >= 3
    assert (await verify(redis)).ok
    env = {"MANOR_REDIS_URL": redis_server.url, "MANOR_RULES": str(rules)}
    for period_id in by_period:
        checked = manor("draw", "verify", "--pool", "tiny", "--period", period_id, **env)
        assert checked.returncode == 0, checked.stderr
