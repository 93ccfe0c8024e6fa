"""The baseline: the same Starlette + uvicorn stack with a bare msgpack echo endpoint."""

from __future__ import annotations

import msgpack
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from server.protocol import SUBPROTOCOL_MSGPACK

FRAMES_PER_SOCKET_MAX = 100_000_000  # far above any bench run; the loop still has a bound


async def echo_endpoint(websocket: WebSocket) -> None:
    """Each binary frame `{"id", ...}` is answered `{"id", "ok": True, "result": {}}`."""
    offered = list(websocket.scope.get("subprotocols", []))
    await websocket.accept(SUBPROTOCOL_MSGPACK if SUBPROTOCOL_MSGPACK in offered else None)
    try:
        for _ in range(FRAMES_PER_SOCKET_MAX):
            request = msgpack.unpackb(await websocket.receive_bytes(), raw=False)
            reply = {"id": request.get("id"), "ok": True, "result": {}}
            await websocket.send_bytes(msgpack.packb(reply))
    except WebSocketDisconnect:
        return
    await websocket.close()


def create_echo_app() -> Starlette:
    return Starlette(routes=[WebSocketRoute("/v1/ws", echo_endpoint)])
