"""The upgrade request read once (server/transport/upgrade.py): it may only be stricter than
websockets' own handshake, never looser, and its 101 carries the same accept key."""

from __future__ import annotations

import logging

import pytest
from websockets.http11 import Request
from websockets.server import ServerProtocol
from websockets.utils import accept_key

from server.transport.upgrade import read_upgrade, refusal, switching

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
PLAIN = [
    ("Host", "127.0.0.1:8000"),
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Key", KEY),
    ("Sec-WebSocket-Version", "13"),
    ("Sec-WebSocket-Protocol", "manor.v1.msgpack"),
    ("Authorization", "Bearer a.b.c"),
]


def request_bytes(
    headers: list[tuple[str, str]], line: str = "GET /v1/ws?token=t HTTP/1.1"
) -> bytes:
    """As uvicorn replays a request to the WebSocket protocol: its line, its headers."""
    return (line + "\r\n" + "".join(f"{n}: {v}\r\n" for n, v in headers) + "\r\n").encode()


def without(name: str) -> list[tuple[str, str]]:
    return [(n, v) for n, v in PLAIN if n != name]


def replaced(name: str, value: str) -> list[tuple[str, str]]:
    return [(n, value if n == name else v) for n, v in PLAIN]


VARIANTS: dict[str, bytes] = {
    "plain": request_bytes(PLAIN),
    "lower-case names, extra options": request_bytes(
        [(n.lower(), v) for n, v in replaced("Connection", "keep-alive, Upgrade")]
    ),
    "Upgrade in capitals": request_bytes(replaced("Upgrade", "WebSocket")),
    "offers deflate": request_bytes([*PLAIN, ("Sec-WebSocket-Extensions", "permessage-deflate")]),
    "POST": request_bytes(PLAIN, "POST /v1/ws HTTP/1.1"),
    "HTTP/1.0": request_bytes(PLAIN, "GET /v1/ws HTTP/1.0"),
    "no key": request_bytes(without("Sec-WebSocket-Key")),
    "two keys": request_bytes([*PLAIN, ("Sec-WebSocket-Key", KEY)]),
    "short key": request_bytes(replaced("Sec-WebSocket-Key", "c2hvcnQ=")),
    "key not base64": request_bytes(replaced("Sec-WebSocket-Key", "!!!!!!!!!!!!!!!!!!!!!!!!")),
    "version 8": request_bytes(replaced("Sec-WebSocket-Version", "8")),
    "no version": request_bytes(without("Sec-WebSocket-Version")),
    "no Connection: upgrade": request_bytes(replaced("Connection", "keep-alive")),
    "Upgrade: h2c": request_bytes(replaced("Upgrade", "h2c")),
    "Upgrade: websocket, h2c": request_bytes(replaced("Upgrade", "websocket, h2c")),
    "Upgrade: websocket/13": request_bytes(replaced("Upgrade", "websocket/13")),
    "a bad token in Connection": request_bytes(replaced("Connection", "Upgrade, @@")),
    "an empty token in Connection": request_bytes(replaced("Connection", "Upgrade,,")),
    "not complete": request_bytes(PLAIN)[:-2],
    "bytes after the head": request_bytes(PLAIN) + b"\x81\x80abcd",
    "a non-ASCII header": request_bytes([*PLAIN, ("X-Name", "é")]),
}


def websockets_accepts(data: bytes) -> bool:
    protocol = ServerProtocol(logger=logging.getLogger("test"))
    protocol.receive_data(data)
    requests = [e for e in protocol.events_received() if isinstance(e, Request)]
    return bool(requests) and protocol.accept(requests[0]).status_code == 101


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_never_looser_than_websockets(name: str) -> None:
    data = VARIANTS[name]
    if read_upgrade(data) is not None:
        assert websockets_accepts(data), name


def test_a_plain_handshake_is_read_here() -> None:
    for name in ("plain", "lower-case names, extra options", "Upgrade in capitals"):
        upgrade = read_upgrade(VARIANTS[name])
        assert upgrade is not None and upgrade.key == KEY and not upgrade.extensions, name
        assert upgrade.path == "/v1/ws?token=t"
        assert upgrade.values("sec-websocket-protocol") == ["manor.v1.msgpack"]
    offered = read_upgrade(VARIANTS["offers deflate"])
    assert offered is not None and offered.extensions  # the wire decides: deflate on or off


def test_the_101_carries_the_rfc_accept_key() -> None:
    answer = switching(KEY, "manor.v1.json")
    assert answer.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert f"Sec-WebSocket-Accept: {accept_key(KEY)}\r\n".encode() in answer
    assert answer.endswith(b"Sec-WebSocket-Protocol: manor.v1.json\r\n\r\n")
    assert b"Sec-WebSocket-Protocol" not in switching(KEY, None)


def test_a_refusal_is_plain_text_and_closes() -> None:
    head, _, body = refusal(403, "token expired").partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 403 Forbidden\r\n")
    assert b"Connection: close" in head and b"Content-Length: 13" in head
    assert body == b"token expired"
