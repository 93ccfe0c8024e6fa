"""Two server processes on one store: a credit on one reaches the player's socket on the other."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from redis.asyncio import Redis

from server.client import ManorClient
from server.store.embedded import EmbeddedStore
from tests.live import Live
from tests.processes import manor_serve


@contextlib.asynccontextmanager
async def server_process(redis_url: str, data_dir: Path) -> AsyncIterator[str]:
    """`manor serve` as its own OS process; yields its ws:// base URL."""
    async with manor_serve(redis_url, data_dir, {}) as server:
        yield server.ws


async def test_credit_on_one_process_pushes_to_socket_on_another(
    live: Live, redis: Redis, redis_server: EmbeddedStore, tmp_path: Path
) -> None:
    async with server_process(redis_server.url, tmp_path) as other_url:
        remote = await ManorClient.connect(other_url, live.token("ola"))
        local = await live.connect("ola")
        await remote.call("state")  # attached on the other process
        signed = await local.call("sign_in")
        push = await remote.next_push()
        assert push == {
            "push": "balance",
            "seq": 0,
            "data": {"balance": signed["balance"], "delta": 10, "entry_seq": 1},
        }
        # The other process sees the same coins.
        assert (await remote.call("state"))["balance"] == 10
        await remote.close()
        await local.close()


async def test_reconnect_with_since_seq_replays_missed_pushes(live: Live) -> None:
    client = await live.connect("pia")
    await client.call("sign_in")
    await client.close()
    resumed = await live.connect("pia", since_seq=0)
    push = await resumed.next_push()
    # `balance` is a state push: not replayed from the inbox, the balance as it is instead.
    assert push == {
        "push": "balance",
        "seq": 0,
        "data": {"balance": 10, "delta": 0, "entry_seq": 1},
    }
    await resumed.close()
    ahead = await live.connect("pia", since_seq=50)
    resync = await ahead.next_push()
    assert resync["push"] == "resync" and resync["data"] == {"snapshot_needed": True}
    await ahead.close()


async def test_thief_on_one_process_victim_pushed_on_another(
    live: Live, redis: Redis, redis_server: EmbeddedStore, tmp_path: Path
) -> None:
    clock = live.manor.clock
    async with server_process(redis_server.url, tmp_path) as other_url:
        victim_phone = await ManorClient.connect(other_url, live.token("vic"))
        victim, thief = await live.connect("vic"), await live.connect("tom")
        await victim.call("friend_request", player="tom")
        await thief.call("friend_accept", player="vic")
        clock.advance(2 * 86_400_000)
        await victim.call("plant", plot=0, seed="turnip")
        clock.advance(4 * 3_600_000)
        await victim_phone.call("state")  # attached on the other process
        stolen = await thief.call("steal", player="vic", plot=0)
        push = await victim_phone.next_push()
        while push["push"] != "stolen":
            push = await victim_phone.next_push()
        assert push["data"] == {"by": "tom", "plot": 0, "coins": stolen["coins"]}
        for client in (victim_phone, victim, thief):
            await client.close()
