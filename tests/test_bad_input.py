"""Bad input gets a clear, documented error: never INTERNAL, never a 500, never a dead socket.

Also the store going away under a live server: a documented, retryable answer (WebSocket
`STORE_UNAVAILABLE`, HTTP 503 with Retry-After), and the same request id works once it is back.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import msgpack
import pytest
from redis.asyncio import Redis

from server.store.embedded import EmbeddedStore
from tests.conftest import contents
from tests.live import Live, serve

ADMIN = "admin-key-0123456789-abcdefghijklmnopqr"
PLATFORM = "platform-key-0123456789-abcdefghijklmnop"


def pack(message: Any) -> bytes:
    packed: bytes = msgpack.packb(message)
    return packed


async def snapshot(redis: Redis) -> dict[bytes, Any]:
    return {k: v for k, v in (await contents(redis)).items() if b":rep:" not in k}


async def next_reply(client: Any) -> dict[str, Any]:
    reply: dict[str, Any] = await asyncio.wait_for(client.unmatched.get(), 5)
    return reply


MIXED_KEYS: list[tuple[bytes, str]] = [
    # str and bytes (msgpack bin) keys side by side: sorting them raised TypeError.
    (pack({"id": 1, "op": "state", b"x": 1, "y": 2}), "BAD_FRAME"),
    (pack({"id": 2, "op": "ledger", "args": {"a": 1, b"b": 2}}), "BAD_FRAME"),
    (pack({"id": 3, "op": "ledger", "args": {b"limit": 1}}), "BAD_FRAME"),
    (pack({"id": 4, "op": "state", "args": {"deep": {b"k": 1}}}), "BAD_FRAME"),
    (pack({b"id": 5, b"op": b"state"}), "BAD_FRAME"),
    # null is not a value of any arg: not "absent", not "the default"
    (pack({"id": 6, "op": "ledger", "args": {"limit": None}}), "BAD_ARGS"),
    (pack({"id": 7, "op": "ledger", "args": {"before_seq": None}}), "BAD_ARGS"),
    (pack({"id": 8, "op": "visit", "args": {"player": None}}), "BAD_ARGS"),
    (pack({"id": 9, "op": "plant", "args": {"plot": None, "seed": "turnip"}}), "BAD_ARGS"),
]


@pytest.mark.parametrize(("frame", "code"), MIXED_KEYS, ids=[f"case{n}" for n in range(9)])
async def test_mixed_keys_and_null_args_get_a_clear_code(
    live: Live, redis: Redis, frame: bytes, code: str
) -> None:
    client = await live.connect("mix")
    await client.call("sign_in")
    before = await snapshot(redis)
    await client.send_raw(frame)
    reply = await next_reply(client)
    assert reply["ok"] is False and reply["error"]["code"] == code, reply
    assert (await client.call("state"))["balance"] == 10
    assert await snapshot(redis) == before
    await client.close()


@pytest.mark.parametrize(
    "frame",
    [
        '{"id": "\\ud800", "op": "state"}',
        '{"id": 1, "op": "state\\udfff"}',
        '{"id": 2, "op": "visit", "args": {"player": "a\\ud83d"}}',
        '{"id": 3, "op": "state", "args": {"\\udc00": 1}}',
    ],
)
async def test_lone_surrogates_on_json_are_bad_frame_and_the_socket_lives(
    live: Live, frame: str
) -> None:
    client = await live.connect("sur", json_mode=True)
    await client.send_raw(frame)
    await client.send_raw('{"id": "after", "op": "state"}')  # pipelined behind it
    first = await next_reply(client)
    assert first["error"]["code"] == "BAD_FRAME" and first["id"] is None, first
    second = await next_reply(client)
    assert second["id"] == "after" and second["ok"] is True
    assert client.close_code is None
    await client.close()


async def test_a_valid_surrogate_pair_is_fine(live: Live) -> None:
    client = await live.connect("pair", json_mode=True)
    await client.send_raw('{"id": "\\ud83d\\ude00", "op": "state"}')
    reply = await next_reply(client)
    assert reply["ok"] is True and reply["id"] == "\U0001f600"
    await client.close()


# --- HTTP bodies ---------------------------------------------------------------------------


@pytest.fixture
async def http_api(
    redis: Redis, redis_server: EmbeddedStore, tmp_path: Path
) -> AsyncIterator[tuple[Live, httpx.AsyncClient]]:
    async with (
        serve(redis_server.url, tmp_path, admin_key=ADMIN, platform_key=PLATFORM) as live,
        httpx.AsyncClient(base_url=live.http) as http,
    ):
        yield live, http


BAD_BODIES: list[bytes] = [
    b"[" * 1000 + b"]" * 1000,  # RecursionError in the JSON decoder
    b'{"player": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    b'{"player": "\\ud800", "order_fen": 1}',
    b'{"\\udfff": 1}',
    b"\xff\xfe\x00",
    b'{"player": "ann", "order_fen": 1e400}',
]


BODY_IDS = ["deep", "deeper", "surrogate", "surrogate-key", "not-utf8", "huge-float"]


@pytest.mark.parametrize("body", BAD_BODIES, ids=BODY_IDS)
async def test_bad_platform_bodies_get_400_json(
    http_api: tuple[Live, httpx.AsyncClient], body: bytes
) -> None:
    _, http = http_api
    headers = {"Authorization": f"Bearer {PLATFORM}"}
    response = await http.post("/v1/platform/checkout/quote", content=body, headers=headers)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "BAD_ARGS"


@pytest.mark.parametrize("path", ["grant", "reverse", "rules/validate"])
@pytest.mark.parametrize("body", BAD_BODIES, ids=BODY_IDS)
async def test_bad_admin_bodies_get_400_json(
    http_api: tuple[Live, httpx.AsyncClient], path: str, body: bytes
) -> None:
    _, http = http_api
    headers = {"Authorization": f"Bearer {ADMIN}"}
    response = await http.post(f"/v1/admin/{path}", content=body, headers=headers)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "BAD_ARGS"


async def test_rules_validate_with_a_lone_surrogate_in_the_toml(
    http_api: tuple[Live, httpx.AsyncClient],
) -> None:
    _, http = http_api
    headers = {"Authorization": f"Bearer {ADMIN}"}
    body = b'{"toml": "version = \\"\\ud800\\""}'
    response = await http.post("/v1/admin/rules/validate", content=body, headers=headers)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "BAD_ARGS"


# --- the store goes away ---------------------------------------------------------------------


@pytest.fixture
async def own_store(tmp_path: Path) -> AsyncIterator[EmbeddedStore]:
    """A private store this test may stop and start again (the session's one is shared)."""
    store = EmbeddedStore(tmp_path / "own-store", appendfsync="no")
    store.start()
    try:
        yield store
    finally:
        store.stop()


def assert_503(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["error"]["code"] == "STORE_UNAVAILABLE"
    assert int(response.headers["retry-after"]) >= 1


async def test_store_down_answers_a_retryable_code_everywhere(
    own_store: EmbeddedStore, tmp_path: Path
) -> None:
    async with serve(
        own_store.url, tmp_path / "data", admin_key=ADMIN, platform_key=PLATFORM
    ) as live:
        client = await live.connect("sto")
        assert (await client.call("state"))["balance"] == 0
        platform = {"Authorization": f"Bearer {PLATFORM}"}
        admin = {"Authorization": f"Bearer {ADMIN}"}
        grant = {"player": "sto", "coins": 5, "reason": "r", "grant_id": "g1"}
        review = {"player": "sto", "review_id": "rv1", "order_paid_fen": 100}
        own_store.stop()
        async with httpx.AsyncClient(base_url=live.http) as http:
            down = await client.request("sign_in", request_id="keep-1")
            assert down["ok"] is False and down["error"]["code"] == "STORE_UNAVAILABLE", down
            for op in ("state", "ledger", "farm"):
                reply = await client.request(op)
                assert reply["error"]["code"] == "STORE_UNAVAILABLE", reply
            assert_503(await http.post("/v1/platform/reviews", json=review, headers=platform))
            assert_503(await http.post("/v1/admin/grant", json=grant, headers=admin))
            assert_503(await http.get("/v1/admin/players/sto", headers=admin))
            own_store.start()  # the same port and data: the store is back
            for _ in range(50):
                again = await client.request("sign_in", request_id="keep-1")
                if again["ok"]:
                    break
                await asyncio.sleep(0.1)
            assert again["ok"] is True and again["result"]["coins"] == 10, again
            ok = await http.post("/v1/platform/reviews", json=review, headers=platform)
            assert ok.status_code == 200, ok.text
            granted = await http.post("/v1/admin/grant", json=grant, headers=admin)
            assert granted.status_code == 200 and granted.json()["balance"] == 25
        await client.close()
