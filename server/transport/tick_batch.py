"""Bytes written during one event-loop tick, sent in one transport write after it.

A wave of sockets attaching (every app opening at midnight) makes one SUBSCRIBE each; sent
one by one, each was a system call of its own (the connect-wave bench: ~9 % of the
server's time). Commands keep their order; a tick's batch has at most one write.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class TickBatch:
    def __init__(self, send: Callable[[bytes], None]) -> None:
        self._send = send
        self._pending: list[bytes] = []

    def add(self, packed: bytes) -> None:
        if not self._pending:
            asyncio.get_running_loop().call_soon(self._flush)
        self._pending.append(packed)

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        if pending:
            self._send(b"".join(pending))
