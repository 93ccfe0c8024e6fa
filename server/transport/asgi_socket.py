"""/v1/ws through ASGI, for a server that is not uvicorn with our wire.

`manor serve` runs uvicorn with `ManorWire` (ws.py), which takes every WebSocket upgrade
before the ASGI app sees it. Under another ASGI server (hypercorn, daphne, uvicorn with
its own `ws=` protocols) the upgrade reaches the app as an ASGI `websocket` scope instead;
this route serves it with the same handler (`serve_socket`), through Starlette's
WebSocket seen as a sockets.Socket. It costs what the ASGI stack costs (a task and queues per
socket: docs/benchmark.md measured 31 KiB an idle socket), and the server's own keepalive
and shutdown codes apply.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any

from starlette.responses import PlainTextResponse
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from server.transport.sockets import CODE_ABNORMAL, Disconnected, Message
from server.transport.upgrade import Upgrade
from server.transport.ws import serve_socket

CODE_NO_STATUS = 1005  # the client's close frame carried no code
CODE_POLICY = 1008  # a refusal where the ASGI server cannot answer the upgrade with HTTP
DENIAL_EXTENSION = "websocket.http.response"


def upgrade_of(scope: Mapping[str, Any]) -> Upgrade:
    """The upgrade request of an ASGI websocket scope, as upgrade.py reads one."""
    headers: dict[str, list[str]] = {}
    for name, value in scope.get("headers", []):
        headers.setdefault(name.decode("latin-1").lower(), []).append(value.decode("latin-1"))
    offered = scope.get("subprotocols") or []
    if offered and "sec-websocket-protocol" not in headers:  # some servers list them apart
        headers["sec-websocket-protocol"] = [", ".join(offered)]
    query = scope.get("query_string", b"").decode("latin-1")
    path = str(scope.get("path", "")) + (f"?{query}" if query else "")
    return Upgrade(path, headers, "")


class AsgiSocket:
    """Starlette's WebSocket as a sockets.Socket. `accept` and `deny` are calls without an
    await in the handler, so they start here and every later step waits for them."""

    __slots__ = ("_closed", "_opening", "request", "websocket")

    def __init__(self, websocket: WebSocket) -> None:
        self.websocket = websocket
        self.request: Upgrade | None = upgrade_of(websocket.scope)
        self._opening: asyncio.Future[None] | None = None
        self._closed = False

    @property
    def peer(self) -> str:
        client = self.websocket.scope.get("client")
        return f"{client[0]}:{client[1]}" if client else "-"

    def deny(self, status: int, text: str) -> None:
        self.request = None
        if DENIAL_EXTENSION in self.websocket.scope.get("extensions", {}):
            response = PlainTextResponse(text, status_code=status)
            self._opening = asyncio.ensure_future(self.websocket.send_denial_response(response))
        else:
            self._opening = asyncio.ensure_future(self.websocket.close(CODE_POLICY, text))
        self._closed = True

    def accept(self, subprotocol: str | None) -> None:
        self.request = None
        self._opening = asyncio.ensure_future(self.websocket.accept(subprotocol))

    async def opened(self) -> None:
        """Wait for the accept or the denial started, if any."""
        if self._opening is not None:
            await self._opening

    async def receive(self) -> Message:
        await self.opened()
        try:
            message = await self.websocket.receive()
        except (RuntimeError, OSError):  # the socket has ended already
            raise Disconnected(CODE_ABNORMAL) from None
        if message["type"] == "websocket.disconnect":
            raise Disconnected(int(message.get("code") or CODE_NO_STATUS))
        data = message.get("bytes")
        if data is not None:
            return bytes(data)
        return str(message.get("text") or "")

    def send_now(self, message: Message) -> bool:
        return False  # every send goes through the ASGI server's own send

    def cork(self) -> None:
        pass  # how the ASGI server writes is its own

    def uncork(self) -> None:
        pass

    async def send(self, message: Message) -> None:
        await self.opened()
        if self._closed:
            return  # after our close, as the wire does: dropped
        try:
            if isinstance(message, bytes):
                await self.websocket.send_bytes(message)
            else:
                await self.websocket.send_text(message)
        except (WebSocketDisconnect, RuntimeError, OSError):
            raise Disconnected(CODE_ABNORMAL) from None

    async def close(self, code: int) -> None:
        await self.opened()
        if self._closed or self.websocket.application_state != WebSocketState.CONNECTED:
            return
        self._closed = True
        with contextlib.suppress(RuntimeError, OSError):  # the client went first
            await self.websocket.close(code)


async def endpoint(websocket: WebSocket) -> None:
    """The WebSocketRoute of /v1/ws (app.py)."""
    socket = AsgiSocket(websocket)
    await serve_socket(dict(websocket.scope.get("state") or {}), socket)
    await socket.opened()
