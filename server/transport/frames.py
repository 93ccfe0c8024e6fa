"""WebSocket frames the server writes (a message as one frame's bytes) and the client
frames it reads without websockets' parser when they are the common kind (wire.py)."""

from __future__ import annotations

from websockets.frames import Opcode
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.speedups import apply_mask

from server.transport.sockets import Message

# The first byte of an unfragmented frame (FIN + opcode) and the one-byte lengths.
HEAD_BINARY = bytes([0x80 | Opcode.BINARY.value])
HEAD_TEXT = bytes([0x80 | Opcode.TEXT.value])
SIZE_BYTES = [bytes([size]) for size in range(126)]


def frame_bytes(message: Message) -> bytes:
    """One unfragmented server frame (unmasked, no extension), as websockets writes it at
    five times the cost: this runs for every reply and push."""
    payload = message if isinstance(message, bytes) else message.encode()
    head = HEAD_BINARY if isinstance(message, bytes) else HEAD_TEXT
    size = len(payload)
    if size < 126:
        return head + SIZE_BYTES[size] + payload
    if size < 1 << 16:
        return head + b"\x7e" + size.to_bytes(2, "big") + payload
    return head + b"\x7f" + size.to_bytes(8, "big") + payload


# A client frame's first two bytes: FIN with the text or binary opcode, RSV bits clear; the
# MASK bit, which a client must set.
FIRST_TEXT = 0x80 | Opcode.TEXT.value
FIRST_BINARY = 0x80 | Opcode.BINARY.value
MASKED = 0x80


def reads_data_frames(conn: ServerProtocol) -> bool:
    """Whether read_data_frames may read what comes next on `conn`, before websockets'
    parser: the socket open, no extension agreed, no fragmented message under way, a
    message's limit the frame's, and the parser between frames with nothing buffered.
    (websockets' parser state, read directly: `current_size`, `max_fragment_size` and
    `reader.buffer` need websockets >= 16.)"""
    return (
        conn.state is State.OPEN
        and not conn.extensions
        and conn.current_size is None
        and conn.max_fragment_size is None
        and not conn.reader.buffer
    )


def read_data_frames(data: bytes, size_max: int | None) -> tuple[list[tuple[bytes, bool]], int]:
    """The whole text and binary messages at the start of `data`, each one final masked
    frame as a client nearly always sends it, unmasked: [(payload, is text)], and where the
    first other thing starts. A control frame, a fragment, a frame the read cut short, one
    over `size_max`, a 64-bit length or anything malformed stops it there: websockets'
    parser takes the rest (and refuses what is wrong), as it takes every frame after it.
    Reading a request here instead of through websockets' generator-driven parse took 7 %
    off a credited sign-in's server instructions and 10 % off a steady one's
    (bench.instructions, docs/benchmark.md)."""
    messages: list[tuple[bytes, bool]] = []
    at, end_of_data = 0, len(data)
    while at + 6 <= end_of_data:
        first, second = data[at], data[at + 1]
        if first not in (FIRST_BINARY, FIRST_TEXT) or second < MASKED:
            break
        size, mask_at = second - MASKED, at + 2
        if size == 126:
            size, mask_at = int.from_bytes(data[mask_at : mask_at + 2], "big"), mask_at + 2
        elif size == 127:
            break
        end = mask_at + 4 + size
        if end > end_of_data or (size_max is not None and size > size_max):
            break
        payload = apply_mask(data[mask_at + 4 : end], data[mask_at : mask_at + 4])
        messages.append((payload, first == FIRST_TEXT))
        at = end
    return messages, at
