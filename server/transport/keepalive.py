"""A socket's keepalive: a ping every `ws_ping_interval`, and the socket ended when one
goes unanswered for `ws_ping_timeout` (uvicorn's options, as its own protocols read them).

The wire (wire.py) owns one per socket from its 101 on: it sends the pings and ends the
socket for the keepalive, and hands it each pong. The payload is random, so a stale pong
(an answer to an earlier ping) is told apart.
"""

from __future__ import annotations

import asyncio
import random
import struct
from typing import Protocol

PING_BYTES = 4  # the ping's payload: random, so a stale pong is told apart


class Pinged(Protocol):
    """What the keepalive needs of its socket."""

    def send_ping(self, payload: bytes) -> bool:
        """Send a ping; False when the socket is closing or has ended (no ping sent)."""
        ...

    def keepalive_expired(self) -> None:
        """The last ping had no pong in time: end the socket."""
        ...


class Keepalive:
    """The ping timer and the ping awaiting its pong, of one socket."""

    __slots__ = ("interval_s", "payload", "socket", "timeout_s", "timer")

    def __init__(self, socket: Pinged, interval_s: float | None, timeout_s: float | None) -> None:
        self.socket: Pinged | None = socket  # None once stopped: no cycle left behind
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.payload: bytes | None = None  # the ping awaiting its pong
        self.timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        """The next ping in `interval_s` (none without an interval)."""
        if self.interval_s and self.socket is not None:
            self.timer = asyncio.get_running_loop().call_later(self.interval_s, self._ping)

    def pong(self, payload: bytes) -> None:
        if self.payload is not None and self.payload == payload:
            self.payload = None
            if self.timer is not None:  # the pong's deadline
                self.timer.cancel()
            self.start()

    def stop(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.socket = None

    def _ping(self) -> None:
        self.timer = None
        socket = self.socket
        if socket is None:
            return
        if self.payload is not None:  # the last ping had no answer in time
            socket.keepalive_expired()
            return
        payload = struct.pack("!I", random.getrandbits(8 * PING_BYTES))
        if not socket.send_ping(payload):
            return
        if self.timeout_s:
            self.payload = payload
            self.timer = asyncio.get_running_loop().call_later(self.timeout_s, self._ping)
        else:
            self.start()
