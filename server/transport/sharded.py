"""Pushes from a Redis Cluster to the sockets of this process, over sharded pub/sub.

A player's channel lives in the player's slot (commit.lua SPUBLISHes there), so the
process SSUBSCRIBEs each channel on the primary that owns its slot: one connection per
primary at most, never one per channel or per slot. Channels without a hash tag (the
rules-reload notice, the process channel) use classic pub/sub, which the cluster bus
carries to every node; one of the connections subscribes them.

Each connection is its own asyncio.Protocol that delivers inside `data_received`, so a
slow or dead node delays only the channels it owns (redis-py's ClusterPubSub polls its
nodes in turn: one sick node stalls them all). When a connection drops, a node answers
MOVED, or a node drops our subscriptions because their slot moved away (a `sunsubscribe`
we did not ask for), the slot map is read again and each channel affected is subscribed
where its slot now lives. Pushes published in between wait in each player's inbox, and
the channel's gap callbacks run once it is subscribed again, so sockets can replay them.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterable
from typing import cast

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisClusterException, RedisError

from server.store.link import MORE, Endpoint, pack_command
from server.transport.fanout import (
    CHANNELS_MAX,
    CHANNELS_PER_SUBSCRIBE_MAX,
    Attaching,
    Fanout,
    Gap,
    Gaps,
    Pushes,
    Sink,
)
from server.transport.tick_batch import TickBatch

log = logging.getLogger(__name__)

REPAIR_PAUSE_S = 0.2  # between a lost subscription and the next read of the slot map
REPAIR_PAUSE_S_MAX = 2.0  # the pause doubles while the cluster cannot be read, up to this
# Redirections and cluster-state errors mean "ask the cluster where the slot lives now".
REROUTE_ERRORS = ("MOVED", "ASK", "CLUSTERDOWN", "TRYAGAIN")


def is_sharded(channel: str) -> bool:
    """Channels with a hash tag live in their slot; the others are cluster-wide."""
    start = channel.find("{")
    return start >= 0 and channel.find("}", start + 2) > start


class _NodeWire(asyncio.Protocol):
    """One pub/sub connection to one primary. Ready once its PING is answered: then the
    owner sends the subscriptions that belong on this node."""

    def __init__(self, owner: ShardedFanout, name: str, endpoint: Endpoint) -> None:
        self.owner = owner
        self.name = name
        self.endpoint = endpoint
        self.reader = endpoint.reader()
        self.transport: asyncio.Transport | None = None
        self.hello: list[bytes] = []
        self.ready = False
        self.lost = False
        self.batch = TickBatch(self._write_now)  # (UN)SUBSCRIBEs of one tick in one write

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(b"".join([*self.hello, pack_command(("PING",))]))

    def write(self, packed: bytes) -> None:
        if self.transport is not None and self.ready and not self.lost:
            self.batch.add(packed)

    def _write_now(self, data: bytes) -> None:
        if self.transport is not None and not self.lost:
            self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while not self.lost:
            try:
                reply = self.reader.gets()
            except Exception as exc:  # noqa: BLE001 - hiredis.ProtocolError: start over
                self.fail(exc)
                return
            if reply is MORE:
                return
            if not self.ready:
                if isinstance(reply, Exception):  # AUTH or SELECT refused
                    self.fail(reply)
                    return
                if reply == b"PONG":
                    self.ready = True
                    self.owner.wire_ready(self)
                continue
            if type(reply) is list and len(reply) == 3:
                kind = reply[0]
                if kind in (b"smessage", b"message"):
                    self.owner.deliver(reply[1], reply[2])
                elif kind in (b"ssubscribe", b"subscribe"):
                    self.owner.subscribed(reply[1].decode())
                elif kind == b"sunsubscribe":
                    self.owner.unsubscribed(self, reply[1].decode())
            elif isinstance(reply, Exception):
                self.owner.refused(self, reply)

    def fail(self, error: Exception) -> None:
        log.warning("sharded fan-out: %s: %r", self.name, error)
        if self.transport is not None:
            self.transport.abort()
        else:
            self.connection_lost(error)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.lost:
            return
        self.lost = True
        self.owner.wire_lost(self, exc)


class ShardedFanout(Attaching):
    """The Fanout interface (start, attach, detach, close) on a Redis Cluster."""

    def __init__(self, cluster: RedisCluster) -> None:
        self._cluster = cluster
        self._sinks: dict[str, set[Sink]] = {}
        self._gaps = Gaps()
        self._home: dict[str, str] = {}  # sharded channel -> the node it is subscribed on
        self._wires: dict[str, _NodeWire] = {}  # node name -> its connection
        self._global: str = ""  # the node whose connection holds the classic channels
        self._lost: set[str] = set()  # channels to subscribe again where their slot lives
        self._dirty = False
        self._repair: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self.process_channel = f"m:proc:{uuid.uuid4().hex}"
        self.delivered = 0
        self.repairs = 0  # slot-map reads after a loss: for tests and logs

    async def start(self) -> None:
        await self._cluster.initialize()
        self._sinks.setdefault(self.process_channel, set())
        self._global = self._primaries()[0]
        wire = self._wire(self._global)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wire.endpoint.connect_s
        while not wire.ready:  # fail start-up, as Fanout does, if the cluster cannot be reached
            if wire.lost or loop.time() > deadline:
                raise ConnectionError(f"sharded fan-out: cannot subscribe on {wire.name}")
            await asyncio.sleep(0.01)

    async def close(self) -> None:
        self._closed = True
        tasks = [t for t in (self._repair, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for wire in self._wires.values():
            if wire.transport is not None:
                wire.transport.close()
        self._wires.clear()

    @property
    def channels(self) -> int:
        return len(self._sinks)

    @property
    def connections(self) -> int:
        return sum(1 for w in self._wires.values() if not w.lost)

    def sinks_of(self, channel: str) -> int:
        return len(self._sinks.get(channel, ()))

    def subscribe(
        self, channel: str, sink: Sink, gap: Gap | None = None
    ) -> asyncio.Future[None] | None:
        """Deliver the channel's frames to `sink` until detached: every frame published once
        the returned future is done (None: at once), the subscription being confirmed;
        `gap` runs after the channel was resubscribed (frames published meanwhile were not
        delivered)."""
        self._gaps.add(channel, gap)
        sinks = self._sinks.get(channel)
        if sinks is not None:
            sinks.add(sink)
            return self._gaps.confirmation(channel)
        if len(self._sinks) >= CHANNELS_MAX:
            raise RuntimeError("fanout: too many channels on this process")
        self._sinks[channel] = {sink}
        self._gaps.subscribing(channel)
        self._subscribe([channel])
        return self._gaps.confirmation(channel)

    async def detach(self, channel: str, sink: Sink, gap: Gap | None = None) -> None:
        self._gaps.discard(channel, gap)
        sinks = self._sinks.get(channel)
        if sinks is None:
            return
        sinks.discard(sink)
        if sinks:
            return
        del self._sinks[channel]
        self._lost.discard(channel)
        if is_sharded(channel):
            wire = self._wires.get(self._home.pop(channel, ""))
            if wire is not None:
                wire.write(pack_command(("SUNSUBSCRIBE", channel)))
        else:
            wire = self._wires.get(self._global)
            if wire is not None:
                wire.write(pack_command(("UNSUBSCRIBE", channel)))

    def deliver(self, channel: bytes, data: bytes) -> None:
        for sink in tuple(self._sinks.get(channel.decode(), ())):
            try:
                sink(data)
            except Exception:  # one socket's failure must not end fan-out
                log.exception("sharded fan-out: a sink failed")
                continue
            self.delivered += 1

    # -- where each channel lives ------------------------------------------------------------

    def _primaries(self) -> list[str]:
        nodes = self._cluster.nodes_manager.get_nodes_by_server_type("primary")
        return sorted(node.name for node in nodes)

    def _owner(self, channel: str) -> str:
        slot = self._cluster.keyslot(channel)
        return str(self._cluster.nodes_manager.get_node_from_slot(slot).name)

    def _wire(self, name: str) -> _NodeWire:
        """The live connection to a node, opened (in the background) if there is none."""
        wire = self._wires.get(name)
        if wire is not None and not wire.lost:
            return wire
        node = self._cluster.nodes_manager.nodes_cache.get(name)
        if node is None:
            raise RedisError(f"sharded fan-out: no node {name} in the slot map")
        wire = _NodeWire(self, name, Endpoint.of_node(node))
        self._wires[name] = wire
        task = asyncio.get_running_loop().create_task(self._open(wire))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return wire

    async def _open(self, wire: _NodeWire) -> None:
        try:
            # RESP2 whatever the URL says: messages are plain arrays, not RESP3 pushes.
            wire.hello = [pack_command(args) for args in await wire.endpoint.hello(2)]
            await wire.endpoint.open(wire)
        except Exception as exc:  # noqa: BLE001 - the repair retries elsewhere or later
            wire.connection_lost(exc)

    def _subscribe(self, channels: Iterable[str]) -> None:
        """Send SSUBSCRIBE (or SUBSCRIBE) on the node each channel belongs to now; a node
        whose connection is still opening subscribes its channels once it is ready."""
        for channel in channels:
            if is_sharded(channel):
                home = self._owner(channel)
                self._home[channel] = home
                self._wire(home).write(pack_command(("SSUBSCRIBE", channel)))
            else:
                self._wire(self._global).write(pack_command(("SUBSCRIBE", channel)))

    def wire_ready(self, wire: _NodeWire) -> None:
        mine = [c for c, home in self._home.items() if home == wire.name and c in self._sinks]
        by_slot: dict[int, list[str]] = {}
        for channel in mine:  # one SSUBSCRIBE may only name channels of one slot
            by_slot.setdefault(self._cluster.keyslot(channel), []).append(channel)
        packed = [pack_command(("SSUBSCRIBE", *group)) for group in by_slot.values()]
        if wire.name == self._global:
            classic = [c for c in self._sinks if not is_sharded(c)]
            packed += [
                pack_command(("SUBSCRIBE", *classic[at : at + CHANNELS_PER_SUBSCRIBE_MAX]))
                for at in range(0, len(classic), CHANNELS_PER_SUBSCRIBE_MAX)
            ]
        if packed:
            wire.write(b"".join(packed))

    # -- losses and the repair -----------------------------------------------------------------

    def wire_lost(self, wire: _NodeWire, exc: Exception | None) -> None:
        if self._closed or self._wires.get(wire.name) is not wire:
            return
        del self._wires[wire.name]
        gone = [c for c, home in self._home.items() if home == wire.name]
        if wire.name == self._global:
            gone += [c for c in self._sinks if not is_sharded(c)]
        log.warning("sharded fan-out: lost %s (%r): %d channels to move", wire.name, exc, len(gone))
        self._lose(gone)

    def unsubscribed(self, wire: _NodeWire, channel: str) -> None:
        """A `sunsubscribe` we did not ask for: the channel's slot moved off this node."""
        if channel in self._sinks and self._home.get(channel) == wire.name:
            self._lose([channel])

    def refused(self, wire: _NodeWire, error: Exception) -> None:
        text = str(error)
        if not text.startswith(REROUTE_ERRORS):
            log.error("sharded fan-out: %s refused a subscription: %s", wire.name, text)
            return
        # "MOVED <slot> <host:port>": every channel of that slot that we placed on this node
        words = text.split()
        slot = int(words[1]) if len(words) > 1 and words[1].isdigit() else None
        self._lose(
            c
            for c, home in self._home.items()
            if home == wire.name and (slot is None or self._cluster.keyslot(c) == slot)
        )

    def _lose(self, channels: Iterable[str]) -> None:
        self._lost.update(c for c in channels if c in self._sinks)
        self._dirty = True
        if not self._closed and (self._repair is None or self._repair.done()):
            self._repair = asyncio.get_running_loop().create_task(self._repair_loop())

    async def _repair_loop(self) -> None:
        pause_s = REPAIR_PAUSE_S
        while self._dirty and not self._closed:
            self._dirty = False
            await asyncio.sleep(pause_s)
            try:
                await self._cluster.nodes_manager.initialize()
                primaries = self._primaries()
            except (RedisError, RedisClusterException, OSError) as exc:  # none answers yet
                log.warning("sharded fan-out: slot map unreadable (%r); retrying", exc)
                self._dirty = True
                pause_s = min(pause_s * 2, REPAIR_PAUSE_S_MAX)
                continue
            pause_s = REPAIR_PAUSE_S
            self.repairs += 1
            for name in list(self._wires):
                if name not in primaries:  # a demoted or forgotten node
                    self._drop(name)
            moved = [c for c, home in self._home.items() if home not in primaries]
            lost, self._lost = self._lost | set(moved), set()
            if self._global not in primaries or self._global not in self._wires:
                self._global = primaries[0]
                lost |= {c for c in self._sinks if not is_sharded(c)}
            try:
                self._subscribe(sorted(lost))
            except RedisError as exc:  # a node vanished between the map read and now
                log.warning("sharded fan-out: %r; repairing again", exc)
                self._lost |= lost
                self._dirty = True
                continue
            self._gaps.lost(lost)

    def subscribed(self, channel: str) -> None:
        self._gaps.confirmed(channel)

    def _drop(self, name: str) -> None:
        wire = self._wires.pop(name)
        wire.lost = True
        if wire.transport is not None:
            wire.transport.close()
        self._lost.update(c for c, home in self._home.items() if home == name)


def fanout_for(redis: Redis | RedisCluster) -> Pushes:
    """The fan-out on a store client of its own: sharded pub/sub on a cluster, one
    subscriber connection on a single server."""
    return ShardedFanout(redis) if isinstance(redis, RedisCluster) else Fanout(redis)
