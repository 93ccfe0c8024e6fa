"""WebSocket frames of API v1: decode, validate, encode. No I/O here.

Request `{"id": int|str, "op": str, "args": {...}}`; reply `{"id", "ok": true, "result"}` or
`{"id", "ok": false, "error": {"code", "message"}}`; push `{"push", "seq", "data"}`.
The same maps travel as msgpack (binary frames) or JSON (text frames).
"""

from __future__ import annotations

import json
import re
import threading
from typing import Any, NamedTuple

import msgpack

SUBPROTOCOL_MSGPACK = "manor.v1.msgpack"
SUBPROTOCOL_JSON = "manor.v1.json"
SUBPROTOCOLS = (SUBPROTOCOL_MSGPACK, SUBPROTOCOL_JSON)

REQUEST_ID_CHARS_MAX = 64
REQUEST_ID_INT_MAX = 2**53 - 1  # what a JavaScript client can hold exactly
OP_CHARS_MAX = 32
ARGS_KEYS_MAX = 16

# WebSocket close codes (4000-4999 are ours; see docs/protocol.md).
CLOSE_RATE_LIMITED = 4429
CLOSE_SLOW_CONSUMER = 4410
CLOSE_TOO_MANY_SOCKETS = 4409


LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")
# bin 8/16/32 (0xc4-0xc6): the only way to bytes; one regex scan costs a third of three `in`s
MSGPACK_BIN_MARKER = re.compile(b"[\xc4-\xc6]")


# One msgpack Packer per thread, reused: packb() builds a new one for every frame (~0.4 us
# more); a Packer empties its buffer after a failed pack, so a bad message leaves no trace.
_packers = threading.local()


def pack_message(message: dict[str, Any]) -> bytes:
    packer: msgpack.Packer | None = getattr(_packers, "packer", None)
    if packer is None:
        packer = _packers.packer = msgpack.Packer()
    packed: bytes = packer.pack(message)
    return packed


class ProtocolError(Exception):
    """Bad input: answered with an error reply, the connection stays open."""

    def __init__(self, code: str, message: str, request_id: int | str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id


class Request(NamedTuple):
    """Immutable; a NamedTuple, not a frozen dataclass: built for every request, and a
    frozen dataclass's __init__ (object.__setattr__ per field) costs twice as much."""

    id: int | str
    op: str
    args: dict[str, Any]


class BadKey(ValueError):
    """A msgpack map key that is not a string (bytes: a bin key)."""


def _str_keyed(pairs: list[tuple[Any, Any]]) -> dict[str, Any]:
    for key, _ in pairs:
        if not isinstance(key, str):
            raise BadKey(f"map keys must be strings, got {type(key).__name__}")
    return dict(pairs)


def unpack_msgpack(data: bytes) -> Any:
    """A msgpack message whose map keys are all strings; ValueError otherwise.

    `strict_map_key` already refuses keys that are not str or bytes; a frame without any
    bin marker byte cannot hold a bytes key, so only those pay for the per-map key check.
    """
    if MSGPACK_BIN_MARKER.search(data) is not None:
        return msgpack.unpackb(data, raw=False, strict_map_key=True, object_pairs_hook=_str_keyed)
    return msgpack.unpackb(data, raw=False, strict_map_key=True)


def _lone_surrogate(message: Any) -> bool:
    """Any string (value or key) with a UTF-16 surrogate, which no UTF-8 text can carry."""
    stack = [message]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if not item.isascii() and LONE_SURROGATE.search(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _may_escape_surrogates(text: str | bytes) -> bool:
    if isinstance(text, bytes):  # maybe UTF-16/32, where the escape is spelled otherwise
        return not text.isascii() or b"\\u" in text
    return "\\u" in text


def loads_json(text: str | bytes) -> Any:
    """JSON text (or bytes) as Python values; ValueError when it is not JSON, nests too
    deep for the decoder, or escapes a lone surrogate (`"\\ud800"`: not valid Unicode,
    and unencodable in a reply). Valid surrogate pairs decode to their character."""
    try:
        message = json.loads(text)
    except RecursionError:
        raise ValueError("nested too deep") from None
    if _may_escape_surrogates(text) and _lone_surrogate(message):
        raise ValueError("a string holds a lone UTF-16 surrogate escape (not valid Unicode)")
    return message


class Codec:
    """msgpack or JSON, chosen once per socket by its subprotocol."""

    def __init__(self, subprotocol: str) -> None:
        self.subprotocol = subprotocol
        self.binary = subprotocol == SUBPROTOCOL_MSGPACK

    def decode(self, data: bytes | str) -> Any:
        if self.binary:
            if not isinstance(data, bytes):
                raise ProtocolError("BAD_FRAME", "manor.v1.msgpack takes binary frames")
            try:
                return unpack_msgpack(data)
            except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
                raise ProtocolError("BAD_FRAME", f"not a msgpack message: {exc}") from None
        if not isinstance(data, str):
            raise ProtocolError("BAD_FRAME", "manor.v1.json takes text frames")
        try:
            return loads_json(data)
        except ValueError as exc:
            raise ProtocolError("BAD_FRAME", f"not a JSON message: {exc}") from None

    def encode(self, message: dict[str, Any]) -> bytes | str:
        if self.binary:
            return pack_message(message)
        return json.dumps(message, separators=(",", ":"), ensure_ascii=False)

    def push(self, frame: bytes) -> bytes | str:
        """A push as published (msgpack bytes), in this socket's encoding."""
        if self.binary:
            return frame
        return json.dumps(msgpack.unpackb(frame, raw=False), separators=(",", ":"))


# A push frame as commit.lua writes it: a map of 3 whose first key is `push` (a fixmap,
# a fixstr), its kind as a fixstr, then `seq`, 0 for a state push (`balance`).
# _SEQ_WIDTH: msgpack's unsigned int markers.
_PUSH_HEAD = b"\x83\xa4push"
_SEQ_KEY = b"\xa3seq"
_SEQ_WIDTH = {0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8}


def push_seq(frame: bytes) -> int | None:
    """A push frame's `seq`, or None for a state push (seq 0: not replayed, the newest
    wins). Read from the bytes where the frame has commit.lua's layout (every push of a
    rule op: a fan-out reads one per push, and unpacking the whole frame cost 2 % of a
    credited sign-in's server instructions); any other layout is unpacked."""
    if frame.startswith(_PUSH_HEAD) and 0xA0 <= frame[6] <= 0xBF:
        at = 7 + (frame[6] & 0x1F)
        if frame[at : at + 4] == _SEQ_KEY:
            marker = frame[at + 4]
            if marker < 0x80:
                return marker or None
            width = _SEQ_WIDTH.get(marker)
            if width is not None:
                return int.from_bytes(frame[at + 5 : at + 5 + width], "big") or None
    return int(msgpack.unpackb(frame)["seq"]) or None


_ENTRY_SEQ_KEY = b"\xa9entry_seq"
_UINT_TAILS = ((0xCC, 1), (0xCD, 2), (0xCE, 4), (0xCF, 8))  # msgpack marker, width


def state_entry_seq(frame: bytes) -> int | None:
    """A `balance` state push's entry_seq (the journal entry its balance is as of), or
    None for a frame that carries none. commit.lua and balance_push() write it last, so it
    is read from the frame's tail without unpacking (a fan-out reads one per credit)."""
    end = len(frame) - 1
    if end > len(_ENTRY_SEQ_KEY):
        last = frame[end]
        if last < 0x80 and frame.endswith(_ENTRY_SEQ_KEY, 0, end):
            return last
        for marker, width in _UINT_TAILS:
            at = end - width
            if at > 0 and frame[at] == marker and frame.endswith(_ENTRY_SEQ_KEY, 0, at):
                return int.from_bytes(frame[at + 1 :], "big")
    data = msgpack.unpackb(frame).get("data")
    value = data.get("entry_seq") if isinstance(data, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def balance_push(balance: int, delta: int, entry_seq: int) -> bytes:
    """The `balance` state push as commit.lua publishes it: seq 0, the newest entry_seq
    wins."""
    data = {"balance": balance, "delta": delta, "entry_seq": entry_seq}
    frame: bytes = msgpack.packb({"push": "balance", "seq": 0, "data": data})
    return frame


def parse_request(message: Any) -> Request:
    if not isinstance(message, dict):
        raise ProtocolError("BAD_REQUEST", "a request is a map with id, op and args")
    raw_id = message.get("id")
    request_id: int | str
    if (
        isinstance(raw_id, int)
        and not isinstance(raw_id, bool)
        and -REQUEST_ID_INT_MAX <= raw_id <= REQUEST_ID_INT_MAX
    ) or (isinstance(raw_id, str) and 0 < len(raw_id) <= REQUEST_ID_CHARS_MAX):
        request_id = raw_id
    else:
        raise ProtocolError(
            "BAD_REQUEST",
            f"id must be an integer or a string of 1..{REQUEST_ID_CHARS_MAX} characters",
        )
    op = message.get("op")
    if not isinstance(op, str) or not 0 < len(op) <= OP_CHARS_MAX:
        raise ProtocolError("BAD_REQUEST", "op must be a short string", request_id)
    args = message.get("args", {})
    if not isinstance(args, dict) or len(args) > ARGS_KEYS_MAX:
        raise ProtocolError("BAD_REQUEST", "args must be a map", request_id)
    # id and op are present by now: more keys than those and args are unknown fields.
    if len(message) > 2 + ("args" in message):
        extra = set(message) - {"id", "op", "args"}
        raise ProtocolError("BAD_REQUEST", f"unknown fields {sorted(extra)}", request_id)
    return Request(request_id, op, args)


def reply_ok(request_id: int | str, result: dict[str, Any]) -> dict[str, Any]:
    return {"id": request_id, "ok": True, "result": result}


def reply_error(request_id: int | str | None, code: str, message: str) -> dict[str, Any]:
    return {"id": request_id, "ok": False, "error": {"code": code, "message": message}}


def pick_subprotocol(offered: list[str]) -> str | None:
    """The first of the client's offers we speak; msgpack when it offers none; None: refuse."""
    if not offered:
        return SUBPROTOCOL_MSGPACK
    for name in offered:
        if name in SUBPROTOCOLS:
            return name
    return None
