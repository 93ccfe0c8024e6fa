"""The store on Redis Cluster: one pipelined link per primary, routed by slot, and what it
hands to redis-py's pipeline (keyless commands, ASK and MOVED while a slot moves, a node
that died and the replica promoted in its place). Each test forms a cluster of its own,
because each breaks or reshapes it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from redis.crc import key_slot

from server.store.cluster import EmbeddedCluster, _call, _text
from server.store.shards import Shards
from server.store.store import Store, connect
from tests.test_cluster_app import move_slot

FAILOVER_S_MAX = 20.0  # node timeout (2 s) + election + the store's map reads, with room


def shards_of(store: Store) -> Shards:
    shards = store._shards
    assert shards is not None
    return shards


def owner_port(cluster: EmbeddedCluster, slot: int) -> int:
    """The primary serving a slot, asked of the cluster itself (not of any client's map)."""
    ranges = _call(cluster.primaries[0].port, "CLUSTER", "SLOTS")
    return next(int(r[2][1]) for r in ranges if r[0] <= slot <= r[1])


def replicated(primary: int, replica: int) -> bool:
    def offset(port: int) -> str:
        info = _text(_call(port, "INFO", "replication"))
        name = "master_repl_offset:" if port == primary else "slave_repl_offset:"
        return next(line for line in info.splitlines() if line.startswith(name)).split(":")[1]

    return offset(primary) == offset(replica)


def commands_on(port: int, command: str) -> int:
    stats = _text(_call(port, "INFO", "commandstats"))
    for line in stats.splitlines():
        if line.startswith(f"cmdstat_{command.lower()}:"):
            return int(line.split("calls=")[1].split(",")[0])
    return 0


async def test_a_group_over_every_primary_answers_in_its_order(cluster: EmbeddedCluster) -> None:
    store = Store(connect(cluster.url))
    await store.load_scripts()
    keys = [f"k:{{t{i}}}" for i in range(30)]
    ports = {owner_port(cluster, key_slot(k.encode())) for k in keys}
    assert len(ports) == 3  # the group really spans the three primaries
    await asyncio.gather(*(store.call("SET", k, i) for i, k in enumerate(keys)))
    assert await store.call_many(*(("GET", k) for k in keys)) == [
        str(i).encode() for i in range(len(keys))
    ]
    assert await store.call("PING") is True  # no key: through redis-py, to some node
    # One link per primary carried them, each command to the primary of its slot.
    assert sorted(int(n.rsplit(":", 1)[1]) for n in shards_of(store)._links) == sorted(ports)
    for port in ports:
        assert commands_on(port, "GET") == sum(
            1 for k in keys if owner_port(cluster, key_slot(k.encode())) == port
        )
    await store.close()


async def test_a_moving_slot_is_followed_by_ask_then_moved(cluster: EmbeddedCluster) -> None:
    """Mid-migration a key already moved answers ASK on its old primary, and a script on a
    key still there runs there; once the slot is handed over, MOVED corrects the map and
    the next commands go straight to the new primary."""
    store = Store(connect(cluster.url))
    await store.load_scripts()
    moved, stays = "a:{mover}", "b:{mover}"
    slot = key_slot(b"mover")
    source = owner_port(cluster, slot)
    target = next(p.port for p in cluster.primaries if p.port != source)
    await store.call("SET", moved, "there")
    await store.call("SET", stays, "here")
    source_id = _text(_call(source, "CLUSTER", "MYID"))
    target_id = _text(_call(target, "CLUSTER", "MYID"))
    _call(target, "CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
    _call(source, "CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
    _call(source, "MIGRATE", "127.0.0.1", target, "", 0, 5000, "KEYS", moved)

    assert await store.call("GET", moved) == b"there"  # ASK, followed by redis-py
    assert await store.call("GET", stays) == b"here"
    assert await store.call_many(("GET", stays), ("GET", moved)) == [b"here", b"there"]

    _call(source, "MIGRATE", "127.0.0.1", target, "", 0, 5000, "KEYS", stays)
    for node in cluster.primaries:
        _call(node.port, "CLUSTER", "SETSLOT", slot, "NODE", target_id)
    assert await store.call("GET", stays) == b"here"  # MOVED, followed by redis-py
    await asyncio.sleep(0)  # the map is copied on the next tick
    gets_before = commands_on(target, "GET")
    assert await store.call_many(("GET", stays), ("GET", moved)) == [b"here", b"there"]
    assert commands_on(target, "GET") == gets_before + 2  # sent there, not redirected
    await store.close()


async def test_a_script_redirected_to_a_node_without_it_is_loaded_there(
    cluster: EmbeddedCluster,
) -> None:
    """A script sent to the old owner of a moved slot is redirected by MOVED to a node whose
    script cache is empty (a promoted replica's is): loaded there, run once, answered."""
    store = Store(connect(cluster.url))
    await store.load_scripts()
    lease = "m:{moving}:lease"
    slot = key_slot(b"moving")
    source = owner_port(cluster, slot)
    target = next(p.port for p in cluster.primaries if p.port != source)
    assert await store.script("lease", [lease], ["me", 60_000]) == 1  # the map knows source
    # As an operator's resharding does (IMPORTING, MIGRATING, MIGRATE, SETSLOT NODE): a bare
    # SETSLOT NODE bumps no config epoch, and under load gossip could hand the slot back,
    # leaving the two primaries redirecting to each other.
    assert move_slot(cluster, slot, source, target) == 1
    _call(target, "SCRIPT", "FLUSH")
    assert await store.script("lease", [lease], ["me", 60_000]) == 1  # MOVED, then NOSCRIPT
    assert _text(_call(target, "GET", lease)) == "me"
    assert await store.script("lease", [lease], ["me", 60_000]) == 1  # straight there now
    await store.close()


@pytest.mark.slow
@pytest.mark.usefixtures("kills_cluster_nodes")
async def test_the_links_follow_a_failover(tmp_path: Path) -> None:
    """A primary killed: its slots' commands fail with ConnectionError (the caller's answer
    is STORE_UNAVAILABLE, never a hang) until the replica is promoted, then they reach the
    new primary with the data it replicated."""
    from redis.exceptions import ConnectionError as RedisConnectionError

    cluster = EmbeddedCluster(tmp_path / "cluster", shards=3, replicas=1, appendfsync="always")
    await asyncio.to_thread(cluster.start)
    try:
        store = Store(connect(cluster.url))
        await store.load_scripts()
        started_s = time.monotonic()
        key = "w:{victim}"
        await store.call("SET", key, "kept")
        slot = key_slot(b"victim")
        shard = next(
            i for i, n in enumerate(cluster.primaries) if n.port == owner_port(cluster, slot)
        )
        victim = cluster.primaries[shard]
        replica = cluster.replicas_of(shard)[0]
        while not replicated(victim.port, replica.port):
            assert time.monotonic() - started_s < FAILOVER_S_MAX, "the replica never caught up"
            await asyncio.sleep(0.05)
        victim.kill()
        started_s = time.monotonic()
        started_s = time.monotonic()
        failures = 0
        while True:
            try:
                value = await store.call("GET", key)
                break
            except RedisConnectionError:
                failures += 1
            assert time.monotonic() - started_s < FAILOVER_S_MAX, "the store never recovered"
            await asyncio.sleep(0.05)
        assert value == b"kept"
        assert failures > 0  # it did meet the dead node first
        table = shards_of(store)._table
        assert table is not None and table[slot] == f"127.0.0.1:{replica.port}"
        await store.close()
    finally:
        cluster.stop()


def test_a_transport_error_leaked_by_redis_py_is_a_lost_connection() -> None:
    """redis-py 8.1 (issue #4287) can hand back a transport's AttributeError or TypeError
    for a command whose connection went away (seen in a failover test run: the op answered
    INTERNAL). The store reports it as the lost connection it is, so the op answers
    STORE_UNAVAILABLE and the client retries; real error replies pass unchanged."""
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import ResponseError

    from server.store.fallback import as_store_error

    leaked = AttributeError("'NoneType' object has no attribute 'writelines'")
    error = as_store_error(leaked)
    assert isinstance(error, RedisConnectionError) and error.__cause__ is leaked
    assert isinstance(
        as_store_error(TypeError("'NoneType' object is not callable")), RedisConnectionError
    )
    refusal = ResponseError("WRONGTYPE")
    assert as_store_error(refusal) is refusal
    assert as_store_error(b"OK") == b"OK"
