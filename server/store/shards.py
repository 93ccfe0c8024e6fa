"""Redis Cluster: one pipelined Link per primary, each command sent to its slot's owner.

The slot map is redis-py's: its NodesManager reads it from the cluster and follows
failovers. `Shards` copies it into a table of 16384 node names, so routing a command
costs a hash-tag lookup and no await, and each primary gets the single store's path:
commands packed by hiredis, one write per tick, replies parsed in `data_received`.

What a link cannot settle alone goes through redis-py's cluster pipeline, which knows
how (fallback.py): a command whose key we do not know where to find (PING,
SCRIPT LOAD, anything outside `KEY_FIRST`), and a command the cluster answered with a
redirection (MOVED, ASK), TRYAGAIN (its slot is moving) or CLUSTERDOWN. Such an answer
means the command did not run, so sending it again is safe. After one, the table is copied
again from redis-py's map, which the pipeline has just corrected. A lost link (a node died,
a failover is under way) has redis-py read the map from the cluster again, at most once
every MAP_READ_S_MIN; until the cluster has promoted a replica, commands for the dead
node's slots fail fast with ConnectionError, as they did through redis-py.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import AskError, ClusterDownError, RedisClusterException, TryAgainError

from server.store.link import Arg, Endpoint, Link, Owner, Request, deliver

SLOTS = 16384
TAGS_MAX = 65_536  # hash tags whose slot is remembered; forgotten all at once when full
MAP_READ_S_MIN = 0.25  # between two reads of the slot map from the cluster
HELD_MAX = 100_000  # requests waiting for the first slot map
# Commands whose one key is their first argument: every data command the store issues.
# Anything else goes through redis-py, which knows every command's keys.
KEY_FIRST = frozenset(
    b"GET SET DEL EXISTS EXPIRE PEXPIRE TTL PTTL INCR INCRBY DECRBY HGET HGETALL HMGET HSET "
    b"HDEL HINCRBY HEXISTS HLEN HSCAN HKEYS HVALS LRANGE LINDEX LLEN LREM LPUSH RPUSH LTRIM "
    b"LPOP RPOP SADD SREM SCARD SISMEMBER SMEMBERS SSCAN ZADD ZREM ZCARD ZSCORE ZRANGE "
    b"ZREVRANGE ZRANGEBYSCORE ZREMRANGEBYSCORE ZSCAN XADD XLEN XRANGE".split()
)
SCRIPTS = frozenset(b"EVALSHA EVAL EVALSHA_RO EVAL_RO FCALL FCALL_RO".split())
# Answers meaning "not run here": redis-py's pipeline follows or waits them out.
# MovedError is an AskError.
RETRIED_ELSEWHERE = (AskError, TryAgainError, ClusterDownError)


def _upper(name: Arg) -> bytes:
    raw = name if isinstance(name, bytes) else str(name).encode()
    return raw.upper()


class Shards:
    """The links to a cluster's primaries and the table that routes commands to them."""

    def __init__(self, owner: Owner, redis: RedisCluster) -> None:
        self.owner = owner
        self.redis = redis
        seed = next(iter(redis.nodes_manager.startup_nodes.values()))
        self.template = Endpoint.of_node(seed).template  # packs what hiredis cannot
        self._table: list[str] | None = None  # slot -> node name; None until first read
        self._endpoints: dict[str, Endpoint] = {}
        self._links: dict[str, Link] = {}
        self._tags: dict[bytes, int] = {}
        self._names: dict[Arg, int] = {}  # command name -> 0 key first, 1 script, 2 unknown
        self._held: list[tuple[Request, list[bytes]]] = []
        self._reading: asyncio.Task[None] | None = None
        self._read_at_s = -MAP_READ_S_MIN
        self._copy_scheduled = False

    # -- routing ---------------------------------------------------------------------------

    def slot(self, args: tuple[Arg, ...]) -> int | None:
        """The slot of a command's key; None when redis-py must route it."""
        kind = self._names.get(args[0])
        if kind is None:
            name = _upper(args[0])
            kind = 0 if name in KEY_FIRST else 1 if name in SCRIPTS else 2
            if len(self._names) < 256:
                self._names[args[0]] = kind
        if kind == 0 and len(args) > 1:
            key = args[1]
        elif kind == 1 and len(args) > 3 and int(args[2]) > 0:
            key = args[3]
        else:
            return None
        raw = key if isinstance(key, bytes) else str(key).encode()
        start = raw.find(b"{")
        if start >= 0:
            end = raw.find(b"}", start + 1)
            if end > start + 1:
                raw = raw[start + 1 : end]
        slot = self._tags.get(raw)
        if slot is None:
            slot = key_slot(raw)
            if len(self._tags) >= TAGS_MAX:
                self._tags.clear()
            self._tags[raw] = slot
        return slot

    def send(self, request: Request, packed: list[bytes]) -> bool:
        """Send a request on its primaries' links; False when redis-py must route it."""
        slots = [self.slot(args) for args in request.commands]
        if None in slots:
            return False
        if self._table is None:
            if len(self._held) >= HELD_MAX:
                return False  # redis-py's pipeline waits for the map its own way
            self._held.append((request, packed))
            self._read_map()
            return True
        table = self._table
        nodes = [table[s] for s in slots if s is not None]
        if len(set(nodes)) == 1:
            deliver(self._link(nodes[0]), request, packed)
            return True
        self._split(request, packed, nodes)
        return True

    def _split(self, request: Request, packed: list[bytes], nodes: list[str]) -> None:
        """A group spread over primaries: one part per primary, joined in the group's order."""
        assert request.future is not None
        loop = asyncio.get_running_loop()
        positions: dict[str, list[int]] = {}
        for at, node in enumerate(nodes):
            positions.setdefault(node, []).append(at)
        parts: list[tuple[list[int], asyncio.Future[Any]]] = []
        for node, where in positions.items():
            part = Request([request.commands[i] for i in where], loop.create_future(), True)
            assert part.future is not None
            parts.append((where, part.future))
            deliver(self._link(node), part, [packed[i] for i in where])
        remaining = [len(parts)]

        def joined(_: asyncio.Future[Any]) -> None:
            remaining[0] -= 1
            if remaining[0] or request.future is None or request.future.done():
                return
            # Every part's error read, so none is logged as never retrieved.
            errors = [future.exception() for _, future in parts]
            error = next((e for e in errors if e is not None), None)
            if error is not None:
                request.future.set_exception(error)
                return
            replies: list[Any] = [None] * len(request.commands)
            for where, future in parts:
                for i, reply in zip(where, future.result(), strict=True):
                    replies[i] = reply
            request.future.set_result(replies if request.many else replies[0])

        for _, future in parts:
            future.add_done_callback(joined)

    @property
    def mapped(self) -> bool:
        return self._table is not None

    async def read_first_map(self) -> None:
        """Until the first slot map is read (RedisClusterException if it cannot be)."""
        if self._table is None:
            self._read_map()
            assert self._reading is not None
            await asyncio.shield(self._reading)
        if self._table is None:
            raise RedisClusterException("the cluster's slot map could not be read")

    def link_of(self, key: str) -> Link:
        """The link to the primary serving `key`'s slot (the map must be read)."""
        assert self._table is not None
        slot = self.slot(("GET", key))
        assert slot is not None
        return self._link(self._table[slot])

    def _link(self, node: str) -> Link:
        link = self._links.get(node)
        if link is None or link.lost:
            if link is not None:  # the node was lost: has the cluster moved on?
                self._read_map()
            link = self._links[node] = Link(self.owner, self._endpoints[node])
        return link

    # -- the slot map ----------------------------------------------------------------------

    def _read_map(self) -> None:
        """Have redis-py read the slot map from the cluster (at most every MAP_READ_S_MIN),
        then copy it."""
        if self._reading is not None and not self._reading.done():
            return
        if time.monotonic() - self._read_at_s < MAP_READ_S_MIN and self._table is not None:
            return
        self._read_at_s = time.monotonic()
        self._reading = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        first = self._table is None
        try:
            if first:
                await self.redis.initialize()
            else:
                await self.redis.nodes_manager.initialize()
        except Exception as exc:  # noqa: BLE001 - every held request must hear of it
            held, self._held = self._held, []
            for request, _ in held:
                if request.future is not None and not request.future.done():
                    request.future.set_exception(exc)
            return
        self.copy_map()
        held, self._held = self._held, []
        for request, packed in held:
            self.send(request, packed)

    def map_changed(self) -> None:
        """redis-py corrected its map (it followed a redirection): copy it, once a tick."""
        if not self._copy_scheduled:
            self._copy_scheduled = True
            asyncio.get_running_loop().call_soon(self.copy_map)

    def copy_map(self) -> None:
        self._copy_scheduled = False
        cache = self.redis.nodes_manager.slots_cache
        table = [""] * SLOTS
        seen: dict[int, str] = {}
        for slot, nodes in cache.items():
            primary = nodes[0]
            name = seen.get(id(primary))
            if name is None:
                name = seen[id(primary)] = primary.name
                if name not in self._endpoints:
                    self._endpoints[name] = Endpoint.of_node(primary)
            table[slot] = name
        if "" in table:  # a slot nobody serves: its node answers CLUSTERDOWN or MOVED
            anyone = next(iter(self._endpoints))
            table = [name or anyone for name in table]
        self._table = table

    # -- lifetime --------------------------------------------------------------------------

    def links(self) -> list[Link]:
        return list(self._links.values())

    def close(self) -> None:
        for link in self._links.values():
            link.close()
        if self._reading is not None:
            self._reading.cancel()
