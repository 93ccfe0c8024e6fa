"""MANOR_SOCKETS_PER_PLAYER_MAX counts a player's sockets on every server process sharing the
store (socket_lease.lua, server/transport/presence.py), and a process that dies without
cleaning up gives its places back once their leases run out."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from redis.crc import key_slot
from redis.exceptions import ResponseError

from server.client import ManorClient
from server.clock import FrozenClock
from server.protocol import CLOSE_TOO_MANY_SOCKETS
from server.store.embedded import EmbeddedStore
from server.store.keys import PlayerKeys
from server.store.store import Store
from server.transport.presence import SOCKET_LEASE_MS, Presence
from tests.live import Live, serve
from tests.processes import manor_serve

LIMIT = 2
WAIT_S_MAX = 5.0


async def accepted(server: Live | str, token: str) -> ManorClient:
    """A socket the server took and serves (it answered `state`)."""
    client = await ManorClient.connect(server if isinstance(server, str) else server.url, token)
    await client.call("state")
    return client


async def close_code(server: Live | str, token: str) -> int | None:
    """The close code of a socket the server ends right after the handshake."""
    client = await ManorClient.connect(server if isinstance(server, str) else server.url, token)
    await asyncio.wait_for(client._reader, WAIT_S_MAX)
    return client.close_code


async def members(redis: Redis, player: str) -> dict[str, float]:
    pairs = await redis.zrange(PlayerKeys(player).sockets, 0, -1, withscores=True)
    return {member.decode(): score for member, score in pairs}


async def until_held(redis: Redis, player: str, count: int) -> None:
    """The servers remove a closed socket's lease after the client's close completes."""
    deadline = time.monotonic() + WAIT_S_MAX
    while len(await members(redis, player)) != count:
        assert time.monotonic() < deadline, await members(redis, player)
        await asyncio.sleep(0.02)


async def lease(store: Store, player: str, socket_id: str, now_ms: int, limit: int = LIMIT) -> Any:
    keys = PlayerKeys(player)
    return await store.script(
        "socket_lease", [keys.sockets, keys.state], [socket_id, now_ms, SOCKET_LEASE_MS, limit]
    )


# -- the script, against the store ---------------------------------------------------------


def test_the_sockets_key_lives_in_the_players_slot() -> None:
    keys = PlayerKeys("alice")
    assert keys.sockets == f"m:{{b{keys.bucket}}}:alice:sockets"
    assert key_slot(keys.sockets.encode()) == key_slot(keys.state.encode())


async def test_script_refuses_at_the_limit_and_writes_nothing(store: Store, redis: Redis) -> None:
    now_ms = 1_790_000_000_000
    key = PlayerKeys("sam").sockets
    assert await lease(store, "sam", "p1-1", now_ms) == 1
    assert await lease(store, "sam", "p2-1", now_ms + 1) == 1
    await redis.zadd(key, {"dead-1": now_ms - 1})  # expired: a refusal must not drop it
    dump, ttl_ms = await redis.dump(key), await redis.pttl(key)
    assert await redis.hget(PlayerKeys("sam").state, "sk") == b"2"
    assert await lease(store, "sam", "p1-2", now_ms + 5) == 0
    assert await redis.dump(key) == dump
    assert await redis.hget(PlayerKeys("sam").state, "sk") == b"2"
    assert 0 < await redis.pttl(key) <= ttl_ms  # not renewed either
    assert await members(redis, "sam") == {
        "dead-1": now_ms - 1,
        "p1-1": now_ms + SOCKET_LEASE_MS,
        "p2-1": now_ms + 1 + SOCKET_LEASE_MS,
    }


async def test_script_drops_expired_leases_and_counts_only_live_ones(
    store: Store, redis: Redis
) -> None:
    now_ms = 1_790_000_000_000
    assert await lease(store, "sam", "p1-1", now_ms) == 1
    assert await redis.hget(PlayerKeys("sam").state, "sk") == b"1"  # the live sockets
    assert await lease(store, "sam", "p2-1", now_ms + 1) == 1
    assert await redis.hget(PlayerKeys("sam").state, "sk") == b"2"
    # p1-1's lease ends at now + lease: from then on it no longer counts.
    assert await lease(store, "sam", "p1-2", now_ms + SOCKET_LEASE_MS - 1) == 0
    assert await lease(store, "sam", "p1-2", now_ms + SOCKET_LEASE_MS) == 1
    # p2-1 and p1-2, and p1-1 too: its lease ran out, but its socket may still be open
    # (its process cut off from the store); its renewal would write it back and drop sk.
    assert await redis.hget(PlayerKeys("sam").state, "sk") == b"3"
    assert await members(redis, "sam") == {
        "p2-1": now_ms + 1 + SOCKET_LEASE_MS,
        "p1-2": now_ms + 2 * SOCKET_LEASE_MS,
    }
    assert 0 < await redis.pttl(PlayerKeys("sam").sockets) <= SOCKET_LEASE_MS
    # Limits are per player.
    assert await lease(store, "tim", "p1-3", now_ms + SOCKET_LEASE_MS) == 1


@pytest.mark.parametrize(
    "args",
    [
        ["p1-1", "soon", SOCKET_LEASE_MS, LIMIT],
        ["p1-1", 1_790_000_000_000, 0, LIMIT],
        ["p1-1", 1_790_000_000_000, SOCKET_LEASE_MS, 0],
        ["", 1_790_000_000_000, SOCKET_LEASE_MS, LIMIT],
    ],
)
async def test_script_refuses_bad_arguments(store: Store, redis: Redis, args: list[Any]) -> None:
    with pytest.raises(ResponseError, match="socket_lease: bad arguments"):
        await store.script(
            "socket_lease", [PlayerKeys("sam").sockets, PlayerKeys("sam").state], args
        )
    assert await members(redis, "sam") == {}


async def test_renewal_moves_every_lease_and_writes_back_a_lost_one(
    store: Store, redis: Redis, clock: FrozenClock
) -> None:
    """A lost lease is written back, and the player's socket count dropped: a socket that
    opened meanwhile counted without it, and commit.lua would skip the `balance` push
    that this one still reads."""
    presence = Presence(store, clock)
    start_ms = clock.now_ms()
    sam, tim = PlayerKeys("sam"), PlayerKeys("tim")
    first, second, third = (presence.new_socket_id() for _ in range(3))
    assert len({first, second, third, Presence(store, clock).new_socket_id()}) == 4
    assert await presence.take(sam, first, LIMIT)
    assert await presence.take(sam, second, LIMIT)
    assert await presence.take(tim, third, LIMIT)
    await redis.delete(tim.sockets)  # lost by the store (a failover, a long outage)
    clock.advance(10_000)
    renewals = asyncio.create_task(presence.run(every_s=0.01))
    try:
        deadline = time.monotonic() + WAIT_S_MAX
        while (await members(redis, "tim")).get(third) != start_ms + 10_000 + SOCKET_LEASE_MS or (
            await redis.hexists(tim.state, "sk")
        ):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
    finally:
        renewals.cancel()
        await asyncio.gather(renewals, return_exceptions=True)
    expiry_ms = start_ms + 10_000 + SOCKET_LEASE_MS
    assert await members(redis, "sam") == {first: expiry_ms, second: expiry_ms}
    assert await redis.hget(sam.state, "sk") == b"2"  # nothing lost: the count stands
    assert 0 < await redis.pttl(tim.sockets) <= SOCKET_LEASE_MS
    await presence.release(sam, first)
    await presence.release(sam, second)
    await presence.release(tim, third)
    assert presence.held() == 0
    assert await redis.exists(sam.sockets, tim.sockets) == 0


# -- sockets over real servers ---------------------------------------------------------------


async def test_limit_counts_the_sockets_of_every_process(
    redis: Redis, redis_server: EmbeddedStore, tmp_path: Path, clock: FrozenClock
) -> None:
    async with (
        serve(redis_server.url, tmp_path, clock, sockets_per_player_max=LIMIT) as one,
        serve(redis_server.url, tmp_path, clock, sockets_per_player_max=LIMIT) as two,
    ):
        token = one.token("lin")
        first = await accepted(one, token)
        second = await accepted(two, token)
        assert await close_code(two, token) == CLOSE_TOO_MANY_SOCKETS
        assert await close_code(one, token) == CLOSE_TOO_MANY_SOCKETS
        assert len(await members(redis, "lin")) == LIMIT
        other = await accepted(two, one.token("liv"))  # the limit is per player
        await first.close()
        await until_held(redis, "lin", 1)
        third = await accepted(two, token)  # the freed place, taken on the other process
        assert await close_code(one, token) == CLOSE_TOO_MANY_SOCKETS
        for client in (second, third, other):
            await client.close()
        await until_held(redis, "lin", 0)
        assert await redis.exists(PlayerKeys("lin").sockets) == 0
        assert one.manor.presence.held() == two.manor.presence.held() == 0


async def test_places_of_a_process_that_stopped_renewing_free_after_the_lease(
    redis: Redis, redis_server: EmbeddedStore, tmp_path: Path, clock: FrozenClock, store: Store
) -> None:
    async with serve(redis_server.url, tmp_path, clock, sockets_per_player_max=LIMIT) as live:
        token = live.token("cat")
        # What a process killed with -9 leaves: two leases nobody renews or removes.
        assert await lease(store, "cat", "dead-1", clock.now_ms()) == 1
        assert await lease(store, "cat", "dead-2", clock.now_ms()) == 1
        assert await close_code(live, token) == CLOSE_TOO_MANY_SOCKETS
        clock.advance(SOCKET_LEASE_MS - 1)
        assert await close_code(live, token) == CLOSE_TOO_MANY_SOCKETS
        clock.advance(1)
        first = await accepted(live, token)
        held = await members(redis, "cat")  # the dead leases dropped, the new one added
        assert len(held) == 1 and next(iter(held)).startswith(live.manor.presence.process_id)
        await first.close()
        await until_held(redis, "cat", 0)


async def test_renewed_sockets_keep_their_places(
    redis: Redis, redis_server: EmbeddedStore, tmp_path: Path, clock: FrozenClock, store: Store
) -> None:
    async with serve(redis_server.url, tmp_path, clock, sockets_per_player_max=LIMIT) as live:
        token = live.token("ren")
        first = await accepted(live, token)
        assert await lease(store, "ren", "dead-1", clock.now_ms()) == 1  # never renewed
        clock.advance(20_000)
        await live.manor.presence.renew()  # what the process does every SOCKET_RENEW_S
        clock.advance(15_000)  # dead-1 has expired; the renewed socket has not
        second = await accepted(live, token)
        assert await close_code(live, token) == CLOSE_TOO_MANY_SOCKETS
        assert "dead-1" not in await members(redis, "ren")
        for client in (first, second):
            await client.close()
        await until_held(redis, "ren", 0)


# -- a real server process killed with -9 ----------------------------------------------------


@contextlib.asynccontextmanager
async def server_process(
    redis_url: str, data_dir: Path
) -> AsyncIterator[tuple[str, asyncio.subprocess.Process]]:
    """`manor serve` as its own OS process with the socket limit and the dev clock."""
    settings = {
        "MANOR_SOCKETS_PER_PLAYER_MAX": str(LIMIT),
        "MANOR_DEV_CLOCK": "1",
        "MANOR_JOBS": "0",
    }
    async with manor_serve(redis_url, data_dir, settings) as server:
        yield server.ws, server.process


async def test_sockets_of_a_killed_process_free_their_places_after_the_lease(
    redis: Redis, redis_server: EmbeddedStore, tmp_path: Path
) -> None:
    async with (
        serve(
            redis_server.url, tmp_path, None, sockets_per_player_max=LIMIT, dev_clock=True
        ) as live,
        server_process(redis_server.url, tmp_path) as (other_url, process),
    ):
        token = live.token("kim")
        doomed = [await accepted(other_url, token) for _ in range(LIMIT)]
        assert await close_code(live, token) == CLOSE_TOO_MANY_SOCKETS
        process.kill()  # SIGKILL: no close, no ZREM
        await asyncio.wait_for(process.wait(), 10)
        for client in doomed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.close(), WAIT_S_MAX)
        assert len(await members(redis, "kim")) == LIMIT  # still held: the lease window
        assert await close_code(live, token) == CLOSE_TOO_MANY_SOCKETS
        async with httpx.AsyncClient() as http:
            moved = await http.post(f"{live.http}/dev/clock", json={"advance_ms": SOCKET_LEASE_MS})
            assert moved.status_code == 200
        mine = [await accepted(live, token) for _ in range(LIMIT)]
        assert await close_code(live, token) == CLOSE_TOO_MANY_SOCKETS
        assert len(await members(redis, "kim")) == LIMIT  # the dead process's leases dropped
        for client in mine:
            await client.close()
        await until_held(redis, "kim", 0)
