"""The whole app on a local Redis Cluster of its own: pushes across shards, and readiness
that names the node it cannot reach. (MANOR_TEST_ENGINES=cluster runs the rest of the
suite on a cluster too; these tests break the cluster, so they start their own.)"""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path

import httpx
import pytest
from redis.asyncio.cluster import RedisCluster

from server.ledger.commit import Commit, apply
from server.ledger.ledger import Transfer
from server.store.cluster import EmbeddedCluster, _call, _text
from server.store.keys import PlayerKeys
from server.store.store import connect
from tests.live import Live, serve

pytestmark = pytest.mark.slow


@pytest.fixture
async def live(cluster: EmbeddedCluster, tmp_path: Path) -> AsyncIterator[Live]:
    async with serve(cluster.url, tmp_path) as running:
        yield running


async def players_on_every_shard(cluster: EmbeddedCluster) -> list[str]:
    """One player id per primary, by the slot of the player's keys."""
    client = connect(cluster.url)
    assert isinstance(client, RedisCluster)
    await client.initialize()
    owners: dict[int, str] = {}
    n = 0
    while len(owners) < len(cluster.primaries):
        player = f"p{n}"
        owners.setdefault(client.get_node_from_key(PlayerKeys(player).state).port, player)
        n += 1
    await client.aclose()
    return list(owners.values())


async def test_sign_in_pushes_reach_players_on_every_shard(
    live: Live, cluster: EmbeddedCluster
) -> None:
    for player in await players_on_every_shard(cluster):
        client = await live.connect(player)
        tablet = await live.connect(player)
        await tablet.call("state")  # subscribed before the credit
        assert (await client.call("sign_in"))["already"] is False
        push = await tablet.next_push()  # the player's other socket gets the push
        assert push["push"] == "balance" and push["data"]["delta"] == 10
        await client.close()
        await tablet.close()


async def test_readyz_names_the_primary_it_cannot_reach(
    live: Live, cluster: EmbeddedCluster
) -> None:
    async with httpx.AsyncClient() as http:
        ready = (await http.get(f"{live.http}/readyz")).json()
        assert ready["ok"] and len(ready["nodes"]) == 3
        gone = cluster.primaries[2]
        assert gone.process is not None
        # Stopped, not killed: a silent node is the harder case (a PING that never
        # answers), and the slot map stays as it is.
        os.kill(gone.process.pid, signal.SIGSTOP)
        try:
            answer = await http.get(f"{live.http}/readyz", timeout=10)
        finally:
            os.kill(gone.process.pid, signal.SIGCONT)
    assert answer.status_code == 503
    body = answer.json()
    assert body["ok"] is False
    assert body["nodes"][f"127.0.0.1:{gone.port} (primary)"].startswith("unreachable")
    assert f"127.0.0.1:{gone.port}" in body["store"]


@pytest.mark.usefixtures("kills_cluster_nodes")
async def test_a_dead_nodes_connection_error_is_raised_not_returned(
    cluster: EmbeddedCluster,
) -> None:
    """redis-py's cluster pipeline hands back a dead node's ConnectionError as that
    command's reply (raise_on_error=False); the store must raise it, for a single call and
    inside a group, or callers read an exception object as data."""
    from redis.exceptions import ConnectionError as RedisConnectionError

    from server.store.store import Store

    store = Store(connect(cluster.url))
    await store.load_scripts()
    wallet = PlayerKeys("ann").state
    client = store.redis
    assert isinstance(client, RedisCluster)
    port = client.get_node_from_key(wallet).port
    next(n for n in cluster.primaries if n.port == port).kill()
    with pytest.raises(RedisConnectionError):
        await store.call("HGET", wallet, "bal")
    with pytest.raises(RedisConnectionError):
        await store.call_many(("HGET", wallet, "bal"), ("HGET", wallet, "seq"))
    await store.close()


def move_slot(cluster: EmbeddedCluster, slot: int, source: int, target: int) -> int:
    """Migrate a slot with its keys from one primary to another, as an operator's
    resharding does (IMPORTING, MIGRATING, MIGRATE every key, then SETSLOT NODE on every
    primary). The count of keys moved."""
    source_id = _text(_call(source, "CLUSTER", "MYID"))
    target_id = _text(_call(target, "CLUSTER", "MYID"))
    _call(target, "CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
    _call(source, "CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
    moved = 0
    while keys := _call(source, "CLUSTER", "GETKEYSINSLOT", slot, 100):
        _call(source, "MIGRATE", "127.0.0.1", target, "", 0, 5000, "KEYS", *keys)
        moved += len(keys)
    for node in cluster.primaries:
        _call(node.port, "CLUSTER", "SETSLOT", slot, "NODE", target_id)
    return moved


async def test_a_slot_moved_under_a_live_socket_keeps_its_pushes_and_ops(
    live: Live, cluster: EmbeddedCluster
) -> None:
    """The player's slot migrates to another primary while their socket is open: ops keep
    answering (never INTERNAL) and the next credit's push still reaches the socket."""
    client = await live.connect("mover")
    assert (await client.call("sign_in"))["entry_seq"] == 1  # no push: the reply carries it
    store = live.manor.store
    keys = PlayerKeys("mover")
    redis = store.redis
    assert isinstance(redis, RedisCluster)
    slot = redis.keyslot(keys.state)
    source = redis.get_node_from_key(keys.state).port
    target = next(n.port for n in cluster.primaries if n.port != source)
    assert move_slot(cluster, slot, source, target) >= 3  # state, wallet, journal...
    assert (await client.call("state"))["balance"] == 10  # the store follows MOVED
    grant = Transfer("grant:moved", "c", 5, "mint:grant", date(2027, 6, 30))
    done = await apply(store, keys, Commit(transfers=[grant]), live.manor.clock.now_ms())
    assert done.status == "ok"
    push = await client.next_push(timeout_s=10)  # the fan-out subscribed where it moved
    # Live (delta 5), or sent as it is by the catch-up after the channel moved (delta 0).
    assert (push["push"], push["data"]["balance"], push["data"]["entry_seq"]) == ("balance", 15, 2)
    await client.close()
