"""The WebSocket upgrade request as uvicorn replays it to the wire, read once.

uvicorn's HTTP parser has already read and checked the request when it hands its bytes to
the wire (`GET <target> HTTP/1.1`, then one `name: value` line per header). A plain
handshake, which is nearly every one, is read here in one pass and answered with a
101 of our own: websockets' sans-I/O parser would read the same bytes again, line by line
in a generator, and build a response object (16 % of the server's time in a connect
wave: docs/benchmark.md). Anything else (a partial or odd request, a header websockets
would refuse) returns None here, and handshake.py hands the bytes to websockets, whose answers
stay the library's; so does a request offering extensions when permessage-deflate is on
(with it off, websockets declines them without reading them, and so does the 101 here).
So `read_upgrade` may only be stricter than websockets' `ServerProtocol.accept`, never
looser (tests/test_upgrade.py holds it to that).
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import hashlib
import http
import re
from typing import NamedTuple

ACCEPT_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455, section 1.3
KEY_BYTES = 16  # a Sec-WebSocket-Key is 16 random bytes in base64
HEADERS_MAX = 128  # websockets' MAX_NUM_HEADERS: past it, its 431 answers
LINE_BYTES_MAX = 8192  # websockets' MAX_LINE_LENGTH
TOKEN = re.compile(r"[-!#$%&'*+.^_`|~0-9A-Za-z]+")  # RFC 9110's token: header names, options
VALUE = re.compile(r"[\x20-\x7e\t]*")  # printable ASCII and tabs: no control characters


class Upgrade(NamedTuple):
    """An upgrade request: its target (path and query) and headers (lower-case names)."""

    path: str
    headers: dict[str, list[str]]
    key: str  # Sec-WebSocket-Key ("" when websockets read the request)
    extensions: bool = False  # the client offered extensions (declined here: none is on)

    def values(self, name: str) -> list[str]:
        """Every value of a header, in order; `name` in lower case."""
        return self.headers.get(name, [])


def tokens(values: list[str]) -> list[str] | None:
    """The comma-separated tokens of a header's values, lower-cased; None when one is not
    a token (an empty one included: websockets' own parser may read those otherwise)."""
    found = [token.strip(" \t") for value in values for token in value.split(",")]
    if not all(TOKEN.fullmatch(token) for token in found):
        return None
    return [token.lower() for token in found]


def read_upgrade(data: bytes) -> Upgrade | None:
    """A complete, plain WebSocket handshake request, or None (websockets reads it then)."""
    head, end, rest = data.partition(b"\r\n\r\n")
    if not end or rest or not head.isascii():
        return None
    lines = head.decode("ascii").split("\r\n")
    if len(lines) > HEADERS_MAX + 1 or any(len(line) > LINE_BYTES_MAX for line in lines):
        return None
    parts = lines[0].split(" ")
    if (
        len(parts) != 3
        or parts[0] != "GET"
        or parts[2] != "HTTP/1.1"
        or not VALUE.fullmatch(parts[1])
    ):
        return None
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        value = value.strip(" \t")
        if not colon or not TOKEN.fullmatch(name) or not VALUE.fullmatch(value):
            return None
        headers.setdefault(name.lower(), []).append(value)
    keys, versions = headers.get("sec-websocket-key", []), headers.get("sec-websocket-version")
    connection = tokens(headers.get("connection", [])) or []
    if (
        "upgrade" not in connection
        or tokens(headers.get("upgrade", [])) != ["websocket"]
        or versions != ["13"]
        or len(keys) != 1
    ):
        return None
    try:
        raw_key = base64.b64decode(keys[0], validate=True)
    except binascii.Error:
        return None
    if len(raw_key) != KEY_BYTES:
        return None
    return Upgrade(parts[1], headers, keys[0], "sec-websocket-extensions" in headers)


def switching(key: str, subprotocol: str | None) -> bytes:
    """The 101 answer to a handshake read by `read_upgrade`."""
    accept = base64.b64encode(hashlib.sha1(key.encode() + ACCEPT_GUID).digest())
    protocol = f"Sec-WebSocket-Protocol: {subprotocol}\r\n".encode() if subprotocol else b""
    return (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept + b"\r\n" + protocol + b"\r\n"
    )


def refusal(status: int, text: str) -> bytes:
    """A plain-text HTTP answer that ends the connection, as websockets' `reject` writes."""
    body = text.encode()
    phrase = http.HTTPStatus(status).phrase
    return (
        f"HTTP/1.1 {status} {phrase}\r\nDate: {email.utils.formatdate(usegmt=True)}\r\n"
        f"Connection: close\r\nContent-Length: {len(body)}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\n"
    ).encode() + body
