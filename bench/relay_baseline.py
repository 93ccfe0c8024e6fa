"""The fan-out baseline: a bare Redis pub/sub -> WebSocket relay on the same stack.

One pub/sub connection (hiredis-parsed), one queue per socket, the socket's own task
sends what arrives. A socket subscribes to its player's push channel (`?player=`, no
token check) and gets every frame published there, as is.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from urllib.parse import urlparse

import hiredis
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from server.protocol import SUBPROTOCOL_MSGPACK
from server.store.keys import PlayerKeys
from server.store.link import pack_command


class PubSub(asyncio.Protocol):
    def __init__(self) -> None:
        self.reader, self.queues = hiredis.Reader(), dict[bytes, asyncio.Queue[bytes | None]]()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while (reply := self.reader.gets()) is not False:
            if reply[0] == b"message" and reply[1] in self.queues:
                self.queues[reply[1]].put_nowait(reply[2])

    def command(self, *args: bytes) -> None:
        assert self.transport is not None
        self.transport.write(pack_command(args))


def create_relay_app(redis_url: str) -> Starlette:
    pubsub = PubSub()

    async def endpoint(websocket: WebSocket) -> None:
        channel = PlayerKeys(websocket.query_params["player"]).push_channel.encode()
        await websocket.accept(SUBPROTOCOL_MSGPACK)
        queue = pubsub.queues[channel] = asyncio.Queue()
        pubsub.command(b"SUBSCRIBE", channel)

        async def until_closed() -> None:  # clients send nothing but their close
            await websocket.receive()
            queue.put_nowait(None)

        watch = asyncio.create_task(until_closed())
        try:
            while (frame := await queue.get()) is not None:
                await websocket.send_bytes(frame)
        finally:
            watch.cancel()
            del pubsub.queues[channel]
            pubsub.command(b"UNSUBSCRIBE", channel)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        url = urlparse(redis_url)
        loop = asyncio.get_running_loop()
        host, port = url.hostname or "127.0.0.1", url.port or 6379
        transport, _ = await loop.create_connection(lambda: pubsub, host, port)
        yield
        transport.close()

    return Starlette(routes=[WebSocketRoute("/v1/ws", endpoint)], lifespan=lifespan)
