"""/v1/ws through ASGI (server/transport/asgi_socket.py): the app served by uvicorn with its
own WebSocket protocols, and by hypercorn, as any ASGI server would serve it, not with our
wire."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
from redis.asyncio import Redis
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from server.clock import FrozenClock
from server.protocol import CLOSE_TOO_MANY_SOCKETS
from server.store.cluster import EmbeddedCluster
from server.store.embedded import EmbeddedStore
from server.transport import ws as wire_handler
from tests.live import Live, serve, serve_on_hypercorn

WAIT_S = 5.0


@pytest.fixture(params=["websockets-sansio", "wsproto", "hypercorn"])
async def asgi_live(
    request: pytest.FixtureRequest,
    redis: Redis,
    redis_server: EmbeddedStore | EmbeddedCluster,
    tmp_path: Path,
    clock: FrozenClock,
) -> AsyncIterator[Live]:
    """The app on uvicorn's own WebSocket protocols, or under hypercorn (wsproto beneath,
    its own ASGI glue): the upgrade reaches the ASGI app."""
    if request.param == "hypercorn":
        async with serve_on_hypercorn(redis_server.url, tmp_path, clock) as running:
            yield running
        return
    options: dict[str, Any] = {"ws": request.param}
    async with serve(redis_server.url, tmp_path, clock, ws_options=options) as running:
        yield running


async def call(socket: Any, request_id: int, op: str) -> dict[str, Any]:
    await socket.send(msgpack.packb({"id": request_id, "op": op}))
    while True:
        reply = msgpack.unpackb(await asyncio.wait_for(socket.recv(), WAIT_S))
        if reply.get("id") == request_id:
            return dict(reply)


async def test_a_player_signs_in_through_the_asgi_route(
    asgi_live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    served: list[str] = []
    real = wire_handler.serve_socket

    async def counted(app_state: dict[str, Any], socket: Any) -> None:
        served.append(type(socket).__name__)
        await real(app_state, socket)

    monkeypatch.setattr("server.transport.asgi_socket.serve_socket", counted)
    async with connect(
        f"{asgi_live.url}/v1/ws?token={asgi_live.token('asa')}",
        subprotocols=["manor.v1.msgpack"],  # type: ignore[list-item]
    ) as socket:
        assert socket.subprotocol == "manor.v1.msgpack"
        reply = await call(socket, 1, "sign_in")
        assert reply["ok"] and reply["result"]["coins"] == 10, reply
        assert not reply["result"]["already"]
        assert (await call(socket, 2, "sign_in"))["result"]["already"]
        assert asgi_live.manor.sockets == 1
    assert served == ["AsgiSocket"]  # the route served it, not our wire
    for _ in range(int(WAIT_S / 0.02)):
        if asgi_live.manor.sockets == 0:
            break
        await asyncio.sleep(0.02)
    assert asgi_live.manor.sockets == 0


@pytest.mark.parametrize(
    ("query", "status"),
    [("", 401), ("?token=forged", 403), ("?token={token}&since_seq=-1", 400)],
)
async def test_a_refused_handshake_gets_its_http_status(
    asgi_live: Live, query: str, status: int
) -> None:
    target = f"{asgi_live.url}/v1/ws" + query.format(token=asgi_live.token("ref"))
    with pytest.raises(InvalidStatus) as refused:
        await connect(target, subprotocols=["manor.v1.msgpack"])  # type: ignore[list-item]
    assert refused.value.response.status_code == status


async def test_a_socket_past_the_player_s_limit_is_closed_with_its_code(
    redis: Redis,
    redis_server: EmbeddedStore | EmbeddedCluster,
    tmp_path: Path,
    clock: FrozenClock,
) -> None:
    options = {"ws": "websockets-sansio"}
    async with serve(
        redis_server.url, tmp_path, clock, ws_options=options, sockets_per_player_max=1
    ) as live:
        target = f"{live.url}/v1/ws?token={live.token('two')}"
        async with connect(target, subprotocols=["manor.v1.json"]) as first:  # type: ignore[list-item]
            await first.send('{"id": 1, "op": "state"}')
            assert '"ok":true' in (await asyncio.wait_for(first.recv(), WAIT_S)).replace(" ", "")
            second = await connect(target, subprotocols=["manor.v1.json"])  # type: ignore[list-item]
            await asyncio.wait_for(second.wait_closed(), WAIT_S)
            assert second.close_code == CLOSE_TOO_MANY_SOCKETS
