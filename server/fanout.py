"""Pushes from Redis to the sockets of this process.

One pub/sub connection per process, one channel per connected player: a commit publishes
on the player's channel (in the player's slot), and whichever process holds a socket of
that player gets the frame. Frames stay msgpack bytes until a JSON socket needs text.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable

from redis.asyncio import Redis
from redis.asyncio.client import PubSub

log = logging.getLogger(__name__)

Sink = Callable[[bytes], None]
CHANNELS_MAX = 200_000  # players with a socket on this process
RECONNECT_PAUSE_S = 0.5


class Fanout:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._pubsub: PubSub | None = None
        self._sinks: dict[str, set[Sink]] = {}
        self._reader: asyncio.Task[None] | None = None
        self.process_channel = f"m:proc:{uuid.uuid4().hex}"  # keeps the connection subscribed
        self.delivered = 0

    async def start(self) -> None:
        self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        await self._pubsub.subscribe(self.process_channel)
        self._reader = asyncio.create_task(self._read(), name="fanout-reader")

    async def close(self) -> None:
        if self._reader:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        if self._pubsub:
            await self._pubsub.aclose()  # type: ignore[no-untyped-call]

    @property
    def channels(self) -> int:
        return len(self._sinks)

    async def attach(self, channel: str, sink: Sink) -> None:
        """Deliver the channel's frames to `sink` until detached."""
        assert self._pubsub is not None
        sinks = self._sinks.get(channel)
        if sinks is None:
            if len(self._sinks) >= CHANNELS_MAX:
                raise RuntimeError("fanout: too many channels on this process")
            self._sinks[channel] = {sink}
            await self._pubsub.subscribe(channel)
        else:
            sinks.add(sink)

    async def detach(self, channel: str, sink: Sink) -> None:
        sinks = self._sinks.get(channel)
        if sinks is None:
            return
        sinks.discard(sink)
        if not sinks:
            del self._sinks[channel]
            if self._pubsub is not None:
                await self._pubsub.unsubscribe(channel)

    async def _read(self) -> None:
        assert self._pubsub is not None
        while True:
            try:
                message = await self._pubsub.get_message(timeout=None)
            except asyncio.CancelledError:
                raise
            except Exception:  # a dropped connection must not end fan-out
                log.exception("fanout: pub/sub read failed; resubscribing")
                await self._resubscribe()
                continue
            if message is None or message["type"] != "message":
                continue
            channel = message["channel"].decode()
            for sink in tuple(self._sinks.get(channel, ())):
                sink(message["data"])
                self.delivered += 1

    async def _resubscribe(self) -> None:
        """Until it works: pushes missed meanwhile are in each player's inbox."""
        while True:
            await asyncio.sleep(RECONNECT_PAUSE_S)
            try:
                if self._pubsub is not None:
                    await self._pubsub.aclose()  # type: ignore[no-untyped-call]
                self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
                await self._pubsub.subscribe(self.process_channel, *self._sinks)
                return
            except asyncio.CancelledError:
                raise
            except Exception:  # keep trying; pushes wait in the inbox
                log.warning("fanout: resubscribe failed; retrying", exc_info=True)

    def sinks_of(self, channel: str) -> int:
        return len(self._sinks.get(channel, ()))
