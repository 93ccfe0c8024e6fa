"""A socket's outgoing frames: sent at once when the socket is idle, queued when not.

The queue is bounded: a client that stops reading fills it and is disconnected (its
pushes wait in the inbox for a resume), so memory per socket stays bounded.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable

Frame = bytes | str
SendFrame = Callable[[Frame], Awaitable[None]]
CloseSocket = Callable[[int], Awaitable[None]]


class Sender:
    def __init__(self, send: SendFrame, close: CloseSocket, queued_max: int) -> None:
        self._send = send
        self._close = close
        self.queued_max = queued_max
        self.backlog: deque[Frame] = deque()
        self.sending = False
        self.close_code: int | None = None
        self._wake = asyncio.Event()
        self.closing = asyncio.Event()  # set once a close is decided

    def offer(self, frame: Frame, on_full_close: int) -> None:
        """Queue a frame for the writer; close with `on_full_close` when the queue is full."""
        if self.close_code is not None:
            return
        if len(self.backlog) >= self.queued_max:
            self.shut(on_full_close, drop_backlog=True)
            return
        self.backlog.append(frame)
        if not self.sending:
            self._wake.set()

    async def send(self, frame: Frame, on_full_close: int) -> None:
        """Send now when nothing is ahead of this frame, else queue it behind the rest."""
        if self.sending or self.backlog or self.close_code is not None:
            self.offer(frame, on_full_close)
            return
        self.sending = True
        try:
            await self._send(frame)
        finally:
            self.sending = False
        if self.backlog or self.close_code is not None:
            self._wake.set()

    def shut(self, code: int, drop_backlog: bool = False) -> None:
        """Close after the queued frames (or at once, dropping them, for a slow consumer)."""
        if self.close_code is None:
            self.close_code = code
            if drop_backlog:
                self.backlog.clear()
            self._wake.set()
            self.closing.set()

    async def run(self) -> None:
        """The writer: drains the backlog whenever woken; sends the close last."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self.backlog and not self.sending:
                frame = self.backlog.popleft()
                self.sending = True
                try:
                    await self._send(frame)
                finally:
                    self.sending = False
            if self.close_code is not None and not self.backlog and not self.sending:
                await self._close(self.close_code)
                return
