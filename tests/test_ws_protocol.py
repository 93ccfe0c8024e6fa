"""Bad input over a real socket: a clear error code, the socket stays usable, nothing moves."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import msgpack
import pytest
from redis.asyncio import Redis
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from server.auth import issue_token
from server.client import ManorClient
from server.protocol import CLOSE_RATE_LIMITED
from server.store.embedded import EmbeddedStore
from tests.conftest import contents, publish_push
from tests.live import SECRET, Live, serve


async def snapshot(redis: Redis) -> dict[bytes, Any]:
    return {k: v for k, v in (await contents(redis)).items() if b":rep:" not in k}


def pack(message: Any) -> bytes:
    packed: bytes = msgpack.packb(message)
    return packed


MSGPACK_CASES: list[tuple[bytes | str, str]] = [
    (b"\xc1", "BAD_FRAME"),
    (b"\x92\x01", "BAD_FRAME"),  # truncated
    ("a text frame", "BAD_FRAME"),
    (pack({1: 2}), "BAD_FRAME"),  # map keys must be strings
    (b"\x91" * 2000 + b"\x01", "BAD_FRAME"),  # nesting deeper than the unpacker allows
    (pack([1, 2]), "BAD_REQUEST"),
    (pack({"op": "state"}), "BAD_REQUEST"),
    (pack({"id": True, "op": "state"}), "BAD_REQUEST"),
    (pack({"id": 1.5, "op": "state"}), "BAD_REQUEST"),
    (pack({"id": 2**60, "op": "state"}), "BAD_REQUEST"),
    (pack({"id": "x" * 65, "op": "state"}), "BAD_REQUEST"),
    (pack({"id": "", "op": "state"}), "BAD_REQUEST"),
    (pack({"id": 1}), "BAD_REQUEST"),
    (pack({"id": 2, "op": 5}), "BAD_REQUEST"),
    (pack({"id": 3, "op": "sign_in", "args": [1]}), "BAD_REQUEST"),
    (pack({"id": 4, "op": "state", "extra": 1}), "BAD_REQUEST"),
    (pack({"id": 5, "op": "fly"}), "UNKNOWN_OP"),
    (pack({"id": 6, "op": "ledger", "args": {"limit": "5"}}), "BAD_ARGS"),
    (pack({"id": 7, "op": "ledger", "args": {"limit": 10_000}}), "BAD_ARGS"),
    (pack({"id": 8, "op": "sign_in", "args": {"coins": 1000}}), "BAD_ARGS"),
    (pack({"id": 9, "op": "state", "args": {"k": "v" * 5000}}), "FRAME_TOO_LARGE"),
]


@pytest.mark.parametrize(("frame", "code"), MSGPACK_CASES)
async def test_bad_msgpack_frame_gets_error_and_changes_nothing(
    live: Live, redis: Redis, frame: bytes | str, code: str
) -> None:
    client = await live.connect("mal")
    await client.call("sign_in")
    before = await snapshot(redis)
    await client.send_raw(frame)
    reply = await asyncio.wait_for(client.unmatched.get(), 5)
    assert reply["ok"] is False
    assert reply["error"]["code"] == code
    assert reply["error"]["message"]
    state = await client.call("state")  # still usable
    assert state["balance"] == 10
    assert await snapshot(redis) == before
    await client.close()


JSON_CASES: list[tuple[bytes | str, str]] = [
    ("not json", "BAD_FRAME"),
    (b"\x80", "BAD_FRAME"),  # binary frame on the JSON subprotocol
    ("[" * 3000, "BAD_FRAME"),
    ('{"id": NaN, "op": "state"}', "BAD_REQUEST"),
    ('{"id": 1, "op": "fly", "args": {}}', "UNKNOWN_OP"),
]


@pytest.mark.parametrize(("frame", "code"), JSON_CASES)
async def test_bad_json_frame_gets_error(live: Live, frame: bytes | str, code: str) -> None:
    client = await live.connect("jay", json_mode=True)
    await client.send_raw(frame)
    reply = await asyncio.wait_for(client.unmatched.get(), 5)
    assert reply["error"]["code"] == code
    assert (await client.call("state"))["balance"] == 0
    await client.close()


async def test_frame_over_the_hard_cap_closes_with_1009(live: Live) -> None:
    client = await live.connect("big")
    await client.send_raw(b"\x00" * 70_000)
    await asyncio.wait_for(client._reader, 5)
    assert client.socket.close_code == 1009


async def test_flood_gets_rate_limited_then_closed(
    redis: Redis, redis_server: EmbeddedStore, tmp_path: Path
) -> None:
    async with serve(
        redis_server.url, tmp_path, requests_per_s_max=1, request_burst_max=3, rate_strikes_max=5
    ) as live:
        client = await live.connect("flo")
        for rid in range(20):
            try:
                await client.send_raw(pack({"id": rid, "op": "state"}))
            except ConnectionClosed:
                break
        await asyncio.wait_for(client._reader, 5)
        codes = []
        while not client.unmatched.empty():
            reply = client.unmatched.get_nowait()
            codes.append("ok" if reply["ok"] else reply["error"]["code"])
        assert codes == ["ok"] * 3 + ["RATE_LIMITED"] * 5
        assert client.socket.close_code == CLOSE_RATE_LIMITED


async def handshake_status(url: str, **kwargs: Any) -> int:
    try:
        async with connect(url, **kwargs):
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


async def test_handshake_refuses_missing_bad_and_expired_tokens(live: Live) -> None:
    url = f"{live.url}/v1/ws"
    good = live.token("tim")
    expired = issue_token(SECRET, "tim", int(time.time()) - 7200, 60)
    forged = issue_token("another-secret-0123456789-abcdefghijkl", "tim", int(time.time()))
    assert await handshake_status(url) == 401
    assert await handshake_status(url + "?token=garbage") == 403
    assert await handshake_status(url + f"?token={expired}") == 403
    assert await handshake_status(url + f"?token={forged}") == 403
    assert await handshake_status(url, subprotocols=["chat.v9"]) == 400
    bad_proto = await handshake_status(url + f"?token={good}", subprotocols=["chat.v9"])
    assert bad_proto == 400
    assert await handshake_status(url + f"?token={good}") == 101


async def test_token_in_query_parameter_works(live: Live) -> None:
    client = await ManorClient.connect(
        live.url, live.token("qin"), header_auth=False, json_mode=True
    )
    assert (await client.call("sign_in"))["coins"] == 10
    await client.close()


async def test_json_and_msgpack_sockets_get_the_same_reply(live: Live) -> None:
    packed = await live.connect("sam")
    text = await live.connect("sam", json_mode=True)
    assert await packed.call("state") == await text.call("state")
    raw = await text.request("state", request_id="s-1")
    assert json.loads(json.dumps(raw)) == raw and raw["id"] == "s-1"
    await packed.close()
    await text.close()


async def test_a_client_that_stops_reading_is_cut_off(
    redis: Redis, redis_server: EmbeddedStore, tmp_path: Path
) -> None:
    """Pushes pile up for a client that reads nothing: the bounded queue fills and the
    server drops the socket (close 4410, then cut off) instead of growing memory."""
    import socket

    from server.store.keys import PlayerKeys

    async with serve(redis_server.url, tmp_path, send_queue_max=8) as live:
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a phone on a bad network
        raw.setblocking(False)
        port = int(live.http.rsplit(":", 1)[1])
        await asyncio.get_running_loop().sock_connect(raw, ("127.0.0.1", port))
        reader, writer = await asyncio.open_connection(sock=raw)
        writer.write(
            f"GET /v1/ws?token={live.token('zed')} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Protocol: manor.v1.msgpack\r\n\r\n".encode()
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 101")
        channel = PlayerKeys("zed").push_channel
        fanout = live.manor.fanout
        for _ in range(100):
            if fanout.sinks_of(channel):
                break
            await asyncio.sleep(0.02)
        assert live.manor.sockets == 1
        frame = pack({"push": "noise", "seq": 0, "data": {"pad": "x" * 60_000}})
        for _ in range(300):  # 18 MB, far past what the socket buffers hold
            await publish_push(redis, channel, frame)
        for _ in range(400):  # the close grace is 5 s
            if live.manor.sockets == 0:
                break
            await asyncio.sleep(0.025)
        assert live.manor.sockets == 0
        assert fanout.sinks_of(channel) == 0
        writer.close()
