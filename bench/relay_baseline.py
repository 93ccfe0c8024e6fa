"""The fan-out baseline: a bare Redis pub/sub -> WebSocket relay on the same stack.

One pub/sub connection (hiredis-parsed), one queue per socket, the socket's own task
sends what arrives. A socket subscribes to its player's push channel (`?player=`, no
token check) and gets every frame published there, as is. On a cluster
(`redis+cluster://`), its sharded twin: one such connection per primary, each channel
SSUBSCRIBEd on the primary that owns its slot (bench/slots.py), as the app does
(server/transport/sharded.py) minus its repairs after a failover or a slot move.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator
from urllib.parse import urlparse

import hiredis
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from bench.slots import read_slot_map
from server.protocol import SUBPROTOCOL_MSGPACK
from server.store.keys import PlayerKeys
from server.store.link import pack_command

MESSAGES = (b"message", b"smessage")  # classic and sharded pub/sub


class PubSub(asyncio.Protocol):
    def __init__(self) -> None:
        self.reader, self.queues = hiredis.Reader(), dict[bytes, asyncio.Queue[bytes | None]]()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while (reply := self.reader.gets()) is not False:
            if reply[0] in MESSAGES and reply[1] in self.queues:
                self.queues[reply[1]].put_nowait(reply[2])

    def command(self, *args: bytes) -> None:
        assert self.transport is not None
        self.transport.write(pack_command(args))


def _same(pubsub: PubSub) -> PubSub:
    """The protocol factory of a node's connection: its one PubSub."""
    return pubsub


def create_relay_app(redis_url: str) -> Starlette:
    slots = read_slot_map(redis_url)
    pubsubs = {node: PubSub() for node in slots.nodes}

    async def endpoint(websocket: WebSocket) -> None:
        channel = PlayerKeys(websocket.query_params["player"]).push_channel.encode()
        await websocket.accept(SUBPROTOCOL_MSGPACK)
        pubsub = pubsubs[slots.node_of(channel)]
        queue = pubsub.queues[channel] = asyncio.Queue()
        pubsub.command(slots.subscribe, channel)

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
            pubsub.command(slots.unsubscribe, channel)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        transports = []
        for node, pubsub in pubsubs.items():
            url = urlparse(node)
            host, port = url.hostname or "127.0.0.1", url.port or 6379
            transport, _ = await loop.create_connection(
                functools.partial(_same, pubsub), host, port
            )
            transports.append(transport)
        yield
        for transport in transports:
            transport.close()

    return Starlette(routes=[WebSocketRoute("/v1/ws", endpoint)], lifespan=lifespan)
