"""server/transport/sharded.py on a real local cluster: delivery on every shard, bounded
connections, a sick node that stalls nobody else, a slot moved away, a primary lost."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

from server.store.cluster import EmbeddedCluster, _call, _text
from server.store.keys import PlayerKeys
from server.transport.sharded import ShardedFanout, is_sharded

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("kills_cluster_nodes")]

DELIVERY_S_MAX = 2.0  # a push on a healthy shard
RECOVERY_S_MAX = 15.0  # node timeout (2 s) + election + our repair, with room for a slow CI


async def started(tmp_path: Path, replicas: int = 0) -> tuple[EmbeddedCluster, RedisCluster]:
    cluster = EmbeddedCluster(tmp_path / "cluster", shards=3, replicas=replicas, appendfsync="no")
    await asyncio.to_thread(cluster.start)
    client = RedisCluster(host="127.0.0.1", port=cluster.primaries[0].port)
    await client.initialize()
    return cluster, client


@pytest.fixture
async def plain(tmp_path: Path) -> AsyncIterator[tuple[EmbeddedCluster, RedisCluster]]:
    cluster, client = await started(tmp_path)
    yield cluster, client
    await client.aclose()
    cluster.stop()


class Inbox:
    """What a sink received, per channel, and a way to wait for it."""

    def __init__(self) -> None:
        self.frames: dict[str, list[bytes]] = {}
        self.gaps: dict[str, int] = {}
        self.changed = asyncio.Event()

    def sink(self, channel: str) -> Callable[[bytes], None]:
        def take(data: bytes) -> None:
            self.frames.setdefault(channel, []).append(data)
            self.changed.set()

        return take

    def gap(self, channel: str) -> Callable[[], None]:
        def note() -> None:
            self.gaps[channel] = self.gaps.get(channel, 0) + 1

        return note

    async def until(self, check: Callable[[], bool], timeout_s: float) -> None:
        async with asyncio.timeout(timeout_s):
            while not check():
                self.changed.clear()
                await self.changed.wait()


def channels_on_every_shard(client: RedisCluster, per_shard: int) -> dict[str, list[str]]:
    """node name -> player channels whose slot it owns."""
    found: dict[str, list[str]] = {}
    n = 0
    while min((len(v) for v in found.values()), default=0) < per_shard or len(found) < 3:
        channel = PlayerKeys(f"p{n}").push_channel
        owner = client.get_node_from_key(channel).name
        if len(found.setdefault(owner, [])) < per_shard:
            found[owner].append(channel)
        n += 1
    return found


async def publish_until_delivered(
    client: RedisCluster, inbox: Inbox, channel: str, timeout_s: float
) -> float:
    """SPUBLISH a frame every 100 ms until one arrives; the seconds it took."""
    started_s = time.monotonic()
    before = len(inbox.frames.get(channel, []))
    deadline = started_s + timeout_s
    while len(inbox.frames.get(channel, [])) == before:
        if time.monotonic() > deadline:
            raise AssertionError(f"{channel}: nothing delivered within {timeout_s} s")
        try:
            await client.spublish(channel, b"ping")
        except (RedisError, OSError):
            await client.nodes_manager.initialize()  # the publisher follows the cluster too
        await asyncio.sleep(0.1)
    return time.monotonic() - started_s


def test_only_tagged_channels_are_sharded() -> None:
    assert is_sharded(PlayerKeys("alice").push_channel)
    assert not is_sharded("m:rules:reload") and not is_sharded("m:{}:x")


async def test_delivers_on_every_shard_over_one_connection_per_primary(
    plain: tuple[EmbeddedCluster, RedisCluster],
) -> None:
    _, client = plain
    fanout = ShardedFanout(client)
    await fanout.start()
    inbox = Inbox()
    by_node = channels_on_every_shard(client, per_shard=5)
    channels = [c for group in by_node.values() for c in group]
    for channel in channels:
        await fanout.attach(channel, inbox.sink(channel))
    await fanout.attach("m:rules:reload", inbox.sink("m:rules:reload"))
    await asyncio.sleep(0.3)  # the subscriptions go out as each node's connection is ready
    for channel in channels:
        assert await client.spublish(channel, channel.encode()) == 1
    await client.publish("m:rules:reload", b"digest")  # classic: reaches every node
    await inbox.until(lambda: len(inbox.frames) == len(channels) + 1, DELIVERY_S_MAX)
    assert all(inbox.frames[c] == [c.encode()] for c in channels)
    assert fanout.connections == 3  # one per primary, however many channels

    await fanout.detach(channels[0], next(iter(fanout._sinks[channels[0]])))
    await asyncio.sleep(0.2)
    assert await client.spublish(channels[0], b"after") == 0  # nobody listens any more
    await fanout.close()


async def test_attach_returns_once_the_channel_is_subscribed_on_its_shard(
    plain: tuple[EmbeddedCluster, RedisCluster],
) -> None:
    """attach() returns once the SSUBSCRIBE is confirmed, on every shard: an SPUBLISH sent
    right after it (blocking the loop, so before anything attach() left for later) is
    delivered. Sockets read their inbox after attach(), so nothing falls in between."""
    _, client = plain
    fanout = ShardedFanout(client)
    await fanout.start()
    inbox = Inbox()
    for node, channels in channels_on_every_shard(client, per_shard=2).items():
        port = int(node.rsplit(":", 1)[1])
        for channel in channels:
            await fanout.attach(channel, inbox.sink(channel))
            assert _call(port, "SPUBLISH", channel, "now") == 1, (node, channel)
    await fanout.close()


async def test_a_stopped_node_does_not_stall_the_others(
    plain: tuple[EmbeddedCluster, RedisCluster],
) -> None:
    cluster, client = plain
    fanout = ShardedFanout(client)
    await fanout.start()
    inbox = Inbox()
    by_node = channels_on_every_shard(client, per_shard=2)
    for channel in (c for group in by_node.values() for c in group):
        await fanout.attach(channel, inbox.sink(channel))
    await asyncio.sleep(0.3)
    sick = cluster.primaries[1]
    assert sick.process is not None
    os.kill(sick.process.pid, signal.SIGSTOP)  # alive, silent: the worst kind of node
    try:
        healthy = [
            c
            for name, group in by_node.items()
            if not name.endswith(f":{sick.port}")
            for c in group
        ]
        for channel in healthy:
            await client.spublish(channel, b"still here")
        await inbox.until(lambda: all(c in inbox.frames for c in healthy), DELIVERY_S_MAX)
    finally:
        os.kill(sick.process.pid, signal.SIGCONT)
    await fanout.close()


def node_id(port: int) -> str:
    return _text(_call(port, "CLUSTER", "MYID"))


async def test_a_slot_moved_away_is_followed(
    plain: tuple[EmbeddedCluster, RedisCluster],
) -> None:
    cluster, client = plain
    fanout = ShardedFanout(client)
    await fanout.start()
    inbox = Inbox()
    channel = PlayerKeys("mover").push_channel
    await fanout.attach(channel, inbox.sink(channel), inbox.gap(channel))
    await asyncio.sleep(0.3)
    assert await client.spublish(channel, b"before") == 1
    await inbox.until(lambda: inbox.frames.get(channel) == [b"before"], DELIVERY_S_MAX)

    slot = client.keyslot(channel)
    source = client.get_node_from_key(channel).port
    target = next(n.port for n in cluster.primaries if n.port != source)
    source_id, target_id = node_id(source), node_id(target)
    _call(target, "CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
    _call(source, "CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
    for node in cluster.primaries:  # no keys live in the slot: hand it over at once
        _call(node.port, "CLUSTER", "SETSLOT", slot, "NODE", target_id)

    took_s = await publish_until_delivered(client, inbox, channel, RECOVERY_S_MAX)
    assert client.get_node_from_key(channel).port == target
    assert fanout._home[channel].endswith(f":{target}")
    assert inbox.gaps.get(channel) == 1  # the socket is told to replay its inbox
    print(f"\nslot move: delivered again after {took_s:.2f} s")
    await fanout.close()


async def test_a_lost_primary_is_replaced_by_its_replica(tmp_path: Path) -> None:
    cluster, client = await started(tmp_path, replicas=1)
    try:
        fanout = ShardedFanout(client)
        await fanout.start()
        inbox = Inbox()
        by_node = channels_on_every_shard(client, per_shard=2)
        channels = [c for group in by_node.values() for c in group]
        for channel in channels:
            await fanout.attach(channel, inbox.sink(channel), inbox.gap(channel))
        await asyncio.sleep(0.3)
        victim = cluster.primaries[0]
        orphans = by_node[f"127.0.0.1:{victim.port}"]
        victim.kill()
        took_s = max(
            [await publish_until_delivered(client, inbox, c, RECOVERY_S_MAX) for c in orphans]
        )
        for channel in channels:  # the other shards never stopped
            await publish_until_delivered(client, inbox, channel, DELIVERY_S_MAX)
        assert all(inbox.gaps.get(c) == 1 for c in orphans)
        assert fanout.connections <= 3
        print(f"\nprimary lost: its channels delivered again after {took_s:.2f} s")
        await fanout.close()
    finally:
        await client.aclose()
        cluster.stop()


async def test_the_whole_cluster_down_and_back_is_followed(tmp_path: Path) -> None:
    """No node answers for a while (a power cut): the repair keeps trying, and once the
    cluster is back every channel is subscribed again."""
    cluster, client = await started(tmp_path)
    try:
        fanout = ShardedFanout(client)
        await fanout.start()
        inbox = Inbox()
        channels = [c for group in channels_on_every_shard(client, 1).values() for c in group]
        for channel in channels:
            await fanout.attach(channel, inbox.sink(channel), inbox.gap(channel))
        await asyncio.sleep(0.3)
        await asyncio.to_thread(cluster.stop)
        await asyncio.sleep(2.0)  # several failed reads of the slot map
        await asyncio.to_thread(cluster.start)  # the same ports and nodes.conf files
        for channel in channels:
            await publish_until_delivered(client, inbox, channel, RECOVERY_S_MAX)
        assert all(inbox.gaps.get(c) == 1 for c in channels)
        await fanout.close()
    finally:
        await client.aclose()
        cluster.stop()
