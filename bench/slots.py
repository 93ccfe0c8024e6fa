"""Which primary owns a key, for the bench's own raw and pipelined connections.

On a cluster the slot map is read once from a seed (CLUSTER SLOTS) and a key's slot is
`redis.crc.key_slot`, the function redis-py and the server route by; on one server every
slot is that server's. So a phase that writes or publishes per key groups its keys by
node and pipelines each group on that node's connection, on either store, with one code
path. The bench's stores do not move slots while a phase runs, so the map is not re-read.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from redis import Redis
from redis.crc import key_slot

from server.settings import cluster_seeds
from server.store.keys import BUCKETS, timers

SLOTS = 16384
K = TypeVar("K", str, bytes)


@dataclass(frozen=True)
class SlotMap:
    """`owner[slot]` is an index into `nodes` (each `redis://host:port/0`)."""

    nodes: tuple[str, ...]
    owner: tuple[int, ...]
    cluster: bool

    @property
    def publish(self) -> bytes:
        """How a commit publishes a push there (commit.lua: SPUBLISH on a cluster)."""
        return b"SPUBLISH" if self.cluster else b"PUBLISH"

    @property
    def subscribe(self) -> bytes:
        return b"SSUBSCRIBE" if self.cluster else b"SUBSCRIBE"

    @property
    def unsubscribe(self) -> bytes:
        return b"SUNSUBSCRIBE" if self.cluster else b"UNSUBSCRIBE"

    def node_of(self, key: str | bytes) -> str:
        raw = key.encode() if isinstance(key, str) else key
        return self.nodes[self.owner[key_slot(raw)]]

    def by_node(self, keys: Iterable[K]) -> dict[str, list[K]]:
        """`keys` grouped by the node that owns each, in their order; every node present."""
        out: dict[str, list[K]] = defaultdict(list)
        for node in self.nodes:
            out[node] = []
        for key in keys:
            out[self.node_of(key)].append(key)
        return dict(out)


def bucket_shares(slot_map: SlotMap) -> dict[str, float]:
    """The fraction of the buckets each node holds: the polling jobs read every bucket's
    keys (its timers and its outbox, one hash tag) each pass, so a node gets this share of
    their polls."""
    held = dict.fromkeys(slot_map.nodes, 0)
    for bucket in range(BUCKETS):
        held[slot_map.node_of(timers(bucket))] += 1
    return {node: count / BUCKETS for node, count in held.items()}


def node_url(host: str, port: int) -> str:
    return f"redis://{host}:{port}/0"


def read_slot_map(url: str) -> SlotMap:
    """The slot map of the store at `url` (`redis://` or `redis+cluster://`)."""
    if "+cluster://" not in url:
        return SlotMap((url,), (0,) * SLOTS, cluster=False)
    host, port = cluster_seeds(url)[0]
    with Redis(host, port) as seed:
        ranges = cast(list[list[Any]], seed.execute_command("CLUSTER SLOTS"))
    nodes: list[str] = []
    owner = [-1] * SLOTS
    for first, last, primary, *_replicas in ranges:
        address = node_url(_text(primary[0]) or host, int(primary[1]))
        if address not in nodes:
            nodes.append(address)
        owner[int(first) : int(last) + 1] = [nodes.index(address)] * (int(last) - int(first) + 1)
    if -1 in owner:
        raise RuntimeError(f"slot {owner.index(-1)} has no primary in the cluster at {url}")
    return SlotMap(tuple(nodes), tuple(owner), cluster=True)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
