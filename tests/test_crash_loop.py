"""kill -9 of the store under load: no acknowledged credit is lost, none is paid twice.

The embedded store (the wheel's Valkey, AOF with appendfsync always) runs on a data
folder; `manor serve` runs as its own OS process on it. A few concurrent clients post
credits: HTTP workers report paid orders with unique order ids (500 coins each), and
WebSocket workers sign new players in (10 coins each). The store is killed with SIGKILL
MANOR_CRASH_LOOPS times (3 by default; e.g. 100 for a long run) and restarted on the same
folder and port; the server reconnects by itself. Every request that was not acknowledged
is sent again with the SAME id (the order id; the WebSocket request id) until it is.

At the end, from the store itself: every acknowledged credit must be in the ledger exactly
once, no player may hold more than the credits acknowledged to them, nothing the clients
did not have acknowledged may be in the ledger, and `verify` must pass. Run with -s to see
the counts. While the store is down the server answers 5xx (HTTP) or an error reply
(WebSocket): all are retried and counted.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from server.auth import issue_token
from server.client import ManorClient, ManorError
from server.ledger.verify import live_entries, verify
from server.store.embedded import EmbeddedStore
from server.store.keys import PlayerKeys
from tests.live import SECRET
from tests.processes import manor_serve

LOOPS = int(os.environ.get("MANOR_CRASH_LOOPS", "3"))
HTTP_WORKERS = 4
WS_WORKERS = 2
PLAYERS_PER_WORKER = 4
ORDER_FEN = 5000  # earns 500 coins
ORDER_COINS = 500
SIGNIN_COINS = 10  # day 1 of a streak
WARMUP_S = 1.0
UP_S = (0.4, 1.0)  # load between two kills, drawn at random
DOWN_S = 0.3  # the store stays dead this long
DRAIN_S_MAX = 45.0  # after the last restart, every request must be acknowledged by then
REQUEST_TIMEOUT_S = 5.0
RETRY_PAUSE_S = 0.02
WS_RETRYABLE = {"BUSY", "STORE_UNAVAILABLE", "INTERNAL"}  # docs/protocol.md, Errors
PLATFORM_KEY = "crash-platform-key-0123456789-abcdefghij"


@dataclass
class Tally:
    """What the clients saw: acknowledged credits, and every answer that was retried."""

    orders: dict[str, set[str]] = field(default_factory=lambda: collections.defaultdict(set))
    signins: dict[str, int] = field(default_factory=dict)  # player -> coins acknowledged
    retried: collections.Counter[str] = field(default_factory=collections.Counter)
    # Orders whose failed attempts were all answered 5xx, and whose ack says `already`: an
    # attempt the server answered with an error had written the order after all.
    written_despite_5xx: list[str] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    def retry(self, kind: str) -> None:
        self.retried[kind] += 1


@contextlib.asynccontextmanager
async def server_process(redis_url: str, data_dir: Path) -> AsyncIterator[str]:
    """`manor serve` as its own OS process on `redis_url`; yields its http:// base URL."""
    settings = {"MANOR_PLATFORM_KEY": PLATFORM_KEY, "MANOR_JOBS": "0"}
    async with manor_serve(redis_url, data_dir, settings, data_dir / "server.log") as server:
        yield server.http
        assert server.process.returncode is None, "manor serve died during the crash loop"


async def order_worker(base: str, worker: int, tally: Tally) -> None:
    """Paid orders, one at a time, each sent again with its id until acknowledged."""
    headers = {"Authorization": f"Bearer {PLATFORM_KEY}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=REQUEST_TIMEOUT_S) as http:
        n = 0
        while not tally.stop.is_set():
            n += 1
            player = f"w{worker}p{n % PLAYERS_PER_WORKER}"
            order_id = f"w{worker}o{n}"
            body = {
                "player": player,
                "order_id": order_id,
                "items": [{"item_id": "i0", "paid_fen": ORDER_FEN}],
            }
            answered_5xx = unanswered = 0
            while True:  # the same order id until acknowledged, even after `stop`
                try:
                    response = await http.post("/v1/platform/orders/paid", json=body)
                except httpx.TransportError as exc:
                    unanswered += 1
                    tally.retry(f"http {type(exc).__name__}")
                    await asyncio.sleep(RETRY_PAUSE_S)
                    continue
                if response.status_code >= 500:
                    try:
                        code = response.json()["error"]["code"]
                    except (ValueError, KeyError, TypeError):
                        code = "(no JSON body)"
                    tally.retry(f"http {response.status_code} {code}")
                    answered_5xx += 1
                    await asyncio.sleep(RETRY_PAUSE_S)
                    continue
                assert response.status_code == 200, response.text
                got = response.json()
                assert got["coins"] == ORDER_COINS, got
                if got["already"] and answered_5xx and not unanswered:
                    tally.written_despite_5xx.append(order_id)
                tally.orders[player].add(order_id)
                break


async def signin_worker(ws_url: str, worker: int, tally: Tally) -> None:
    """New players sign in, one at a time: each sign-in keeps its request id until
    acknowledged, across reconnects."""
    n = 0
    client: ManorClient | None = None
    try:
        while not tally.stop.is_set():
            n += 1
            player = f"s{worker}n{n}"
            request_id = f"signin-{worker}-{n}"
            if client is not None:
                await client.close()
                client = None
            while True:
                if client is None:
                    token = issue_token(SECRET, player, int(time.time()), 3600)
                    try:
                        client = await ManorClient.connect(ws_url, token)
                    except Exception as exc:  # noqa: BLE001 - refused or broken: again
                        tally.retry(f"ws connect {type(exc).__name__}")
                        await asyncio.sleep(RETRY_PAUSE_S)
                        continue
                try:
                    reply = await client.request("sign_in", {}, request_id, REQUEST_TIMEOUT_S)
                except (ManorError, TimeoutError) as exc:
                    tally.retry(f"ws {getattr(exc, 'code', type(exc).__name__)}")
                    await client.close()
                    client = None
                    await asyncio.sleep(RETRY_PAUSE_S)
                    continue
                except Exception as exc:  # noqa: BLE001 - a socket that broke mid-send
                    tally.retry(f"ws {type(exc).__name__}")
                    await client.close()
                    client = None
                    await asyncio.sleep(RETRY_PAUSE_S)
                    continue
                if not reply["ok"]:
                    code = reply["error"]["code"]
                    assert code in WS_RETRYABLE, reply  # anything else is not worth a retry
                    tally.retry(f"ws {code}")
                    await asyncio.sleep(RETRY_PAUSE_S)
                    continue
                result = reply["result"]
                assert result["coins"] == SIGNIN_COINS, result
                tally.signins[player] = result["coins"]
                break
    finally:
        if client is not None:
            await client.close()


@dataclass
class Ledger:
    credits: int = 0  # credit entries of the players the clients used
    lost: list[str] = field(default_factory=list)  # acknowledged, not in the ledger
    doubled: list[str] = field(default_factory=list)  # twice in a journal, or too many coins
    unacked: list[str] = field(default_factory=list)  # in the ledger, never acknowledged


async def read_ledger(redis: Redis, tally: Tally) -> Ledger:
    found = Ledger()
    players = {*tally.orders, *tally.signins}
    for worker in range(HTTP_WORKERS):
        players |= {f"w{worker}p{n}" for n in range(PLAYERS_PER_WORKER)}
    for player in sorted(players):
        keys = PlayerKeys(player)
        # A format-2 entry's id is its txids field, which names one seq: an id posted twice
        # would leave an entry without an id.
        entries = await live_entries(redis, keys)
        found.doubled += [f"{player}: seq {e.seq} has no id" for e in entries if not e.transfer_id]
        ids = collections.Counter(e.transfer_id for e in entries if e.amount > 0)
        found.credits += sum(ids.values())
        found.doubled += [f"{player}: {tid} x{count}" for tid, count in ids.items() if count > 1]
        expected = {f"order:{o}:reward" for o in tally.orders.get(player, set())}
        if player in tally.signins:
            expected |= {tid for tid in ids if tid.startswith(f"signin:{player}:")} or {
                f"signin:{player}:?"
            }
        found.lost += [f"{player}: {tid}" for tid in sorted(expected - set(ids))]
        found.unacked += [f"{player}: {tid}" for tid in sorted(set(ids) - expected)]
        balance = int(await redis.hget(keys.state, "bal") or 0)  # type: ignore[misc]
        acked = ORDER_COINS * len(tally.orders.get(player, ())) + tally.signins.get(player, 0)
        if balance > acked:
            found.doubled.append(f"{player}: balance {balance} > {acked} acknowledged")
    return found


@pytest.mark.slow
async def test_kill_the_store_under_load_loses_and_doubles_nothing(tmp_path: Path) -> None:
    started = time.monotonic()
    store = EmbeddedStore(tmp_path / "store")  # appendfsync always
    store.start()
    tally = Tally()
    kills = 0
    try:
        async with server_process(store.url, tmp_path) as base:
            ws_url = base.replace("http://", "ws://")
            workers = [
                *(asyncio.create_task(order_worker(base, w, tally)) for w in range(HTTP_WORKERS)),
                *(asyncio.create_task(signin_worker(ws_url, w, tally)) for w in range(WS_WORKERS)),
            ]
            try:
                await asyncio.sleep(WARMUP_S)
                rng = random.Random(LOOPS)
                for _ in range(LOOPS):
                    await asyncio.sleep(rng.uniform(*UP_S))
                    assert not any(w.done() for w in workers), [w for w in workers if w.done()]
                    store.kill()  # SIGKILL
                    kills += 1
                    await asyncio.sleep(DOWN_S)
                    await asyncio.to_thread(store.start)  # same folder, same port
                await asyncio.sleep(rng.uniform(*UP_S))
                tally.stop.set()
                done, pending = await asyncio.wait(workers, timeout=DRAIN_S_MAX)
                assert not pending, f"{len(pending)} workers still had unacknowledged requests"
                for task in done:
                    task.result()  # a worker's failed assertion fails the test
            finally:
                for task in workers:
                    task.cancel()
                await asyncio.gather(*workers, return_exceptions=True)
        redis = Redis.from_url(store.url)
        try:
            ledger = await read_ledger(redis, tally)
            report = await verify(redis)
        finally:
            await redis.aclose()
    finally:
        store.stop()
    acked = sum(len(o) for o in tally.orders.values()) + len(tally.signins)
    elapsed = time.monotonic() - started
    print(
        f"\ncrash loop: {kills} kills in {elapsed:.1f} s; acked credits {acked} "
        f"({sum(len(o) for o in tally.orders.values())} orders, {len(tally.signins)} sign-ins); "
        f"in the ledger {ledger.credits}; lost {len(ledger.lost)}; doubled {len(ledger.doubled)}; "
        f"in the ledger but never acked {len(ledger.unacked)}; "
        f"retried answers {sum(tally.retried.values())} {dict(sorted(tally.retried.items()))}; "
        f"verify ok={report.ok}; orders an error answer had written "
        f"{len(tally.written_despite_5xx)}"
    )
    assert kills == LOOPS
    assert acked > 0
    assert not ledger.lost, ledger.lost[:20]
    assert not ledger.doubled, ledger.doubled[:20]
    assert not ledger.unacked, ledger.unacked[:20]
    assert ledger.credits == acked
    assert report.ok, report.problems[:20]
