"""Pushes from Redis to the sockets of this process.

One pub/sub connection per process, one channel per connected player: a commit publishes
on the player's channel (in the player's slot), and whichever process holds a socket of
that player gets the frame. Frames stay msgpack bytes until a JSON socket needs text.

The connection is our own asyncio.Protocol with the store's hiredis reader (see
server/store/store.py): a message is dispatched to its sinks inside `data_received`, without
redis-py's PubSub (a retrying `get_message` call and a dict per message).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import uuid
from collections.abc import Callable, Iterable
from typing import Protocol, cast

from redis.asyncio import Redis

from server.store.link import MORE, Endpoint, pack_command
from server.transport.tick_batch import TickBatch

log = logging.getLogger(__name__)

Sink = Callable[[bytes], None]
Gap = Callable[[], None]  # the channel was resubscribed: frames may have been missed
CHANNELS_MAX = 200_000  # players with a socket on this process
CHANNELS_PER_SUBSCRIBE_MAX = 1_000  # a resubscribe sends its channels in commands this big
RECONNECT_PAUSE_S = 0.5
# attach() waits this long at most for its SUBSCRIBE to be confirmed (a pub/sub connection
# being repaired confirms later; the gap callback covers what that leaves).
SUBSCRIBE_WAIT_S_MAX = 2.0


class Pushes(Protocol):
    """What sockets need of a fan-out: Fanout (one server) or ShardedFanout (a cluster)."""

    @property
    def channels(self) -> int: ...

    def subscribe(
        self, channel: str, sink: Sink, gap: Gap | None = None
    ) -> asyncio.Future[None] | None: ...

    async def attach(self, channel: str, sink: Sink, gap: Gap | None = None) -> None: ...

    async def detach(self, channel: str, sink: Sink, gap: Gap | None = None) -> None: ...

    def sinks_of(self, channel: str) -> int: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...


class Gaps:
    """Per channel, what to call once it is subscribed again after subscriptions were lost:
    frames published in between were not delivered (both fan-outs keep one)."""

    def __init__(self) -> None:
        self._by_channel: dict[str, set[Gap]] = {}
        self._due: set[str] = set()  # lost: call their gaps at the next confirmation
        # Channels whose first SUBSCRIBE is on its way -> the attach() calls waiting for its
        # confirmation, a future each (one shared future would be cancelled with any of them).
        self._unconfirmed: dict[str, list[asyncio.Future[None]]] = {}
        # (deadline, future), oldest first: one timer releases the overdue, rather than a
        # timeout per attach (asyncio.wait with a timeout costs ~15 us, a connect's 1 %).
        self._deadlines: collections.deque[tuple[float, asyncio.Future[None]]] = collections.deque()
        self._sweep: asyncio.TimerHandle | None = None

    def subscribing(self, channel: str) -> None:
        """The channel's first SUBSCRIBE is on its way: attach() waits for its confirmation."""
        self._unconfirmed.setdefault(channel, [])

    def confirmation(self, channel: str) -> asyncio.Future[None] | None:
        """Done once the channel's subscription is confirmed (SUBSCRIBE_WAIT_S_MAX at most);
        None when it is already. A socket that reads its inbox after it misses no frame
        published in between, where reading before could miss one published between the
        read and the subscription."""
        waiting = self._unconfirmed.get(channel)
        if waiting is None:
            return None
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        waiting.append(future)
        self._deadlines.append((loop.time() + SUBSCRIBE_WAIT_S_MAX, future))
        if self._sweep is None:
            self._sweep = loop.call_later(SUBSCRIBE_WAIT_S_MAX, self._release_overdue)
        return future

    def _release_overdue(self) -> None:
        loop = asyncio.get_running_loop()
        deadlines, now = self._deadlines, loop.time()
        while deadlines and (deadlines[0][0] <= now or deadlines[0][1].done()):
            _release(deadlines.popleft()[1])
        self._sweep = None
        if deadlines:
            self._sweep = loop.call_at(deadlines[0][0], self._release_overdue)

    def add(self, channel: str, gap: Gap | None) -> None:
        if gap is not None:
            self._by_channel.setdefault(channel, set()).add(gap)

    def discard(self, channel: str, gap: Gap | None) -> None:
        gaps = self._by_channel.get(channel)
        if gap is None or gaps is None:
            return
        gaps.discard(gap)
        if not gaps:
            del self._by_channel[channel]

    def lost(self, channels: Iterable[str]) -> None:
        self._due.update(c for c in channels if c in self._by_channel)

    def lost_all(self) -> None:
        self._due = set(self._by_channel)
        waiting, self._unconfirmed = self._unconfirmed, {}
        for futures in waiting.values():  # their gaps run once subscribed again
            for future in futures:
                _release(future)

    def confirmed(self, channel: str) -> None:
        """Frames published from now on reach us: a socket that replays its inbox now
        misses nothing."""
        for future in self._unconfirmed.pop(channel, ()):
            _release(future)
        if channel not in self._due:
            return
        self._due.discard(channel)
        for gap in tuple(self._by_channel.get(channel, ())):
            try:
                gap()
            except Exception:  # one socket's failure must not end the others' replay
                log.exception("fanout: a gap callback failed")


class Attaching:
    """attach() for a fan-out: subscribe(), then wait until the subscription is confirmed
    (for a caller with nothing to overlap the wait with, such as the rules follower)."""

    def subscribe(
        self, channel: str, sink: Sink, gap: Gap | None = None
    ) -> asyncio.Future[None] | None:
        raise NotImplementedError

    async def attach(self, channel: str, sink: Sink, gap: Gap | None = None) -> None:
        confirmed = self.subscribe(channel, sink, gap)
        if confirmed is not None:
            await confirmed


def _release(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class _Wire(asyncio.Protocol):
    """One pub/sub connection; `ready` resolves when the process channel is subscribed."""

    def __init__(self, fanout: Fanout) -> None:
        self.fanout = fanout
        self.reader = fanout.endpoint.reader()
        self.transport: asyncio.Transport | None = None
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.hello: list[bytes] = []
        self.lost = False
        self.established = False  # subscribed; until then _connect handles a failure
        self.batch = TickBatch(self._write_now)  # (UN)SUBSCRIBEs of one tick in one write

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        channels = [self.fanout.process_channel, *self.fanout._sinks]
        self.transport.write(
            b"".join(
                [
                    *self.hello,
                    *(
                        pack_command(("SUBSCRIBE", *channels[at : at + CHANNELS_PER_SUBSCRIBE_MAX]))
                        for at in range(0, len(channels), CHANNELS_PER_SUBSCRIBE_MAX)
                    ),
                ]
            )
        )

    def write(self, packed: bytes) -> None:
        if self.transport is not None and not self.lost:
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
            if type(reply) is list and len(reply) == 3:
                kind = reply[0]
                if kind == b"message":
                    self.fanout.deliver(reply[1], reply[2])
                elif kind == b"subscribe":
                    if not self.ready.done():
                        self.ready.set_result(None)  # the first channel is the process channel
                    self.fanout.subscribed(reply[1].decode())
            elif isinstance(reply, Exception):  # AUTH or SELECT refused, or worse
                self.fail(reply)
                return

    def fail(self, error: Exception) -> None:
        if not self.ready.done():
            self.ready.set_exception(error)
        if self.transport is not None:
            self.transport.abort()
        else:
            self.lost = True

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"pub/sub connection lost: {exc!r}"))
        self.fanout.lost(self, exc)


class Fanout(Attaching):
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self.endpoint = Endpoint.of(redis)
        self._wire: _Wire | None = None
        self._sinks: dict[str, set[Sink]] = {}
        self._gaps = Gaps()
        self._reconnect: asyncio.Task[None] | None = None
        self._closed = False
        self.process_channel = f"m:proc:{uuid.uuid4().hex}"  # keeps the connection subscribed
        self.delivered = 0

    async def start(self) -> None:
        await self._connect()

    async def _connect(self) -> None:
        """Connect and subscribe to every channel with sinks (the process channel first)."""
        wire = _Wire(self)
        # RESP2 whatever the URL says: messages are plain arrays, not RESP3 pushes.
        wire.hello = [pack_command(args) for args in await self.endpoint.hello(2)]
        # From here attach/detach go to this wire: before connection_made they only change
        # _sinks, which connection_made subscribes to; after it they write to the socket.
        self._wire = wire
        try:
            await self.endpoint.open(wire)
            async with asyncio.timeout(self.endpoint.connect_s):
                await wire.ready
            if wire.lost:
                raise ConnectionError("pub/sub connection lost while subscribing")
        except BaseException:
            if self._wire is wire:
                self._wire = None
            wire.lost = True
            if wire.transport is not None:
                wire.transport.abort()
            raise
        wire.established = True

    async def close(self) -> None:
        self._closed = True
        if self._reconnect:
            self._reconnect.cancel()
            await asyncio.gather(self._reconnect, return_exceptions=True)
        if self._wire is not None and self._wire.transport is not None:
            self._wire.transport.close()
        self._wire = None

    @property
    def channels(self) -> int:
        return len(self._sinks)

    def subscribe(
        self, channel: str, sink: Sink, gap: Gap | None = None
    ) -> asyncio.Future[None] | None:
        """Deliver the channel's frames to `sink` until detached: every frame published once
        the returned future is done (None: at once), the subscription being confirmed;
        `gap` runs once the channel is subscribed again after a lost connection (frames may
        have been missed)."""
        self._gaps.add(channel, gap)
        sinks = self._sinks.get(channel)
        if sinks is None:
            if len(self._sinks) >= CHANNELS_MAX:
                raise RuntimeError("fanout: too many channels on this process")
            self._sinks[channel] = {sink}
            if self._wire is not None:  # else the resubscribe includes it
                self._gaps.subscribing(channel)
                self._wire.write(pack_command(("SUBSCRIBE", channel)))
        else:
            sinks.add(sink)
        return self._gaps.confirmation(channel)

    async def detach(self, channel: str, sink: Sink, gap: Gap | None = None) -> None:
        self._gaps.discard(channel, gap)
        sinks = self._sinks.get(channel)
        if sinks is None:
            return
        sinks.discard(sink)
        if not sinks:
            del self._sinks[channel]
            if self._wire is not None:
                self._wire.write(pack_command(("UNSUBSCRIBE", channel)))

    def deliver(self, channel: bytes, data: bytes) -> None:
        for sink in tuple(self._sinks.get(channel.decode(), ())):
            try:
                sink(data)
            except Exception:  # one socket's failure must not end fan-out
                log.exception("fanout: a sink failed")
                continue
            self.delivered += 1

    def lost(self, wire: _Wire, exc: Exception | None) -> None:
        if wire is not self._wire or not wire.established or self._closed:
            return
        self._wire = None
        self._gaps.lost_all()
        log.warning("fanout: pub/sub connection lost (%r); resubscribing", exc)
        self._reconnect = asyncio.get_running_loop().create_task(self._resubscribe())

    async def _resubscribe(self) -> None:
        """Until it works: pushes missed meanwhile are in each player's inbox."""
        while not self._closed:
            await asyncio.sleep(RECONNECT_PAUSE_S)
            try:
                await self._connect()
                return
            except asyncio.CancelledError:
                raise
            except Exception:  # keep trying; pushes wait in the inbox
                log.warning("fanout: resubscribe failed; retrying", exc_info=True)

    def sinks_of(self, channel: str) -> int:
        return len(self._sinks.get(channel, ()))

    def subscribed(self, channel: str) -> None:
        self._gaps.confirmed(channel)
