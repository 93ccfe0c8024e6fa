"""friend_edge.lua and push_gate.lua against a real store, one call at a time."""

from __future__ import annotations

from redis.asyncio import Redis

from game_rules.friends import Edge
from server.ops.components import pack
from server.store.keys import PlayerKeys
from server.store.store import Store

ANN = PlayerKeys("ann")
FRIENDS = pack(Edge("friends", 1).to_wire())
OUT = pack(Edge("outgoing", 1).to_wire())
BLOCK = pack(Edge("blocked", 1).to_wire())


async def edge(
    store: Store, peer: str, expected: bytes, new: bytes, rel_max: int = 2
) -> list[object]:
    keys = [ANN.friends, ANN.friend_counts]
    reply = await store.script("friend_edge", keys, [peer, expected, new, rel_max, 1])
    return [reply[0].decode(), int(reply[1]), int(reply[2])]


async def snapshot(redis: Redis) -> tuple[dict[bytes, bytes], dict[bytes, bytes]]:
    return await redis.hgetall(ANN.friends), await redis.hgetall(ANN.friend_counts)


async def test_friend_edge_counts_each_kind_against_its_own_limit(store: Store) -> None:
    assert await edge(store, "bob", b"", OUT) == ["ok", 1, 0]
    assert await edge(store, "cat", b"", FRIENDS) == ["ok", 2, 0]
    assert await edge(store, "dan", b"", OUT) == ["FRIENDS_LIMIT", 2, 0]
    assert await edge(store, "bob", OUT, FRIENDS) == ["ok", 2, 0]  # same kind: no new place
    assert await edge(store, "eve", b"", BLOCK) == ["ok", 2, 1]  # blocks count apart
    assert await edge(store, "fay", b"", BLOCK) == ["BLOCKS_LIMIT", 2, 1]
    assert await edge(store, "bob", FRIENDS, BLOCK) == ["BLOCKS_LIMIT", 2, 1]
    assert await edge(store, "cat", FRIENDS, b"") == ["ok", 1, 1]
    assert await edge(store, "eve", BLOCK, b"") == ["ok", 1, 0]
    assert await edge(store, "bob", FRIENDS, BLOCK) == ["ok", 0, 1]


async def test_friend_edge_refusals_write_nothing(store: Store, redis: Redis) -> None:
    await edge(store, "bob", b"", OUT)
    await edge(store, "cat", b"", OUT)
    before = await snapshot(redis)
    assert (await edge(store, "bob", b"", FRIENDS))[0] == "CONFLICT"  # bob's edge is OUT
    assert (await edge(store, "dan", OUT, b""))[0] == "CONFLICT"  # dan has none
    assert (await edge(store, "dan", b"", OUT))[0] == "FRIENDS_LIMIT"
    assert await snapshot(redis) == before


async def test_friend_edge_counts_a_hash_written_before_counts_existed(
    store: Store, redis: Redis
) -> None:
    await redis.hset(ANN.friends, mapping={"bob": FRIENDS, "cat": BLOCK})
    assert await edge(store, "dan", b"", OUT, rel_max=1) == ["FRIENDS_LIMIT", 1, 1]
    assert await redis.exists(ANN.friend_counts) == 0  # a refusal does not even write counts
    assert await edge(store, "dan", b"", OUT, rel_max=3) == ["ok", 2, 1]
    assert await redis.hgetall(ANN.friend_counts) == {b"rel": b"2", b"blk": b"1"}


async def test_push_gate_lets_one_push_through_per_window(store: Store, redis: Redis) -> None:
    gate = ANN.friend_push("incoming", "bob")
    assert await store.script("push_gate", [gate], [1_000, 600]) == 1
    assert await store.script("push_gate", [gate], [1_599, 600]) == 0
    assert await redis.get(gate) == b"1000"  # a shut gate writes nothing
    assert 0 < await redis.pttl(gate) <= 600
    assert await store.script("push_gate", [gate], [1_600, 600]) == 1
    assert await redis.get(gate) == b"1600"
