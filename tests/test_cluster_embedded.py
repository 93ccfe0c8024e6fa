"""server/store/cluster.py: a local cluster forms from plain commands and again on restart."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import pytest
from redis.asyncio.cluster import RedisCluster

from server.store.cluster import EmbeddedCluster, _call, _text, slot_ranges
from server.store.embedded import EmbeddedStoreError


def test_slot_ranges_cover_every_slot_once() -> None:
    for shards in (1, 2, 3, 7, 16):
        ranges = slot_ranges(shards)
        assert ranges[0][0] == 0 and ranges[-1][1] == 16383
        assert all(b[0] == a[1] + 1 for a, b in pairwise(ranges))
        sizes = [high - low + 1 for low, high in ranges]
        assert max(sizes) - min(sizes) <= 1
    for bad in (0, 17):
        with pytest.raises(ValueError):
            slot_ranges(bad)


def _roles(cluster: EmbeddedCluster) -> dict[int, str]:
    """port -> "master" or "slave <primary port>", as the first node sees the cluster."""
    roles: dict[int, str] = {}
    by_id: dict[str, int] = {}
    lines = _text(_call(cluster.nodes[0].port, "CLUSTER", "NODES")).splitlines()
    for line in lines:
        node_id, address, flags, primary = line.split()[:4]
        by_id[node_id] = int(address.split(":")[1].split("@")[0])
    for line in lines:
        node_id, _, flags, primary = line.split()[:4]
        port = by_id[node_id]
        roles[port] = "master" if "master" in flags else f"slave {by_id[primary]}"
    return roles


async def test_cluster_serves_keys_on_every_shard_and_restarts(tmp_path: Path) -> None:
    cluster = EmbeddedCluster(tmp_path / "c", shards=3, replicas=1, appendfsync="no")
    cluster.start()
    try:
        roles = _roles(cluster)
        assert sorted(roles[p.port] for p in cluster.primaries) == ["master"] * 3
        for shard, primary in enumerate(cluster.primaries):
            assert [roles[r.port] for r in cluster.replicas_of(shard)] == [f"slave {primary.port}"]
        client = RedisCluster(host="127.0.0.1", port=cluster.primaries[0].port)
        keys = [f"k{{b{n}}}" for n in range(64)]
        for key in keys:
            await client.set(key, key)
        owners = {client.get_node_from_key(k).port for k in keys}
        assert owners == {p.port for p in cluster.primaries}  # every shard holds some
        await client.aclose()
    finally:
        cluster.stop()

    again = EmbeddedCluster(tmp_path / "c", shards=3, replicas=1, appendfsync="no")
    again.start()  # the nodes.conf files bring the same cluster back
    try:
        assert [n.port for n in again.nodes] == [n.port for n in cluster.nodes]
        client = RedisCluster(host="127.0.0.1", port=again.primaries[1].port)
        assert [await client.get(k) for k in keys] == [k.encode() for k in keys]
        await client.aclose()
    finally:
        again.stop()


def test_a_folder_keeps_its_shape(tmp_path: Path) -> None:
    cluster = EmbeddedCluster(tmp_path, shards=1, appendfsync="no")
    cluster.start()
    cluster.stop()
    with pytest.raises(EmbeddedStoreError, match="1 shards x 0 replicas"):
        EmbeddedCluster(tmp_path, shards=2, appendfsync="no").start()
