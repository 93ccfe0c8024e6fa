"""A message as the bytes of one WebSocket frame, written by the server (wire.py)."""

from __future__ import annotations

from websockets.frames import Opcode

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
