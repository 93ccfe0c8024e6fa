"""A socket's outgoing frames: sent at once when the socket is idle, queued when not.

The queue is bounded: a client that stops reading fills it and is disconnected (its
pushes wait in the inbox for a resume), so memory per socket stays bounded.

An idle socket owns no task, queue or event here: the queue is made by the first frame
that must wait, and a drain task lives only while frames wait (idle sockets are most
sockets; each of those objects costs RSS on every one of them).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable

Frame = bytes | str
SendFrame = Callable[[Frame], Awaitable[None]]
CloseSocket = Callable[[int], Awaitable[None]]
OnShut = Callable[[int], None]


class Sender:
    def __init__(
        self, send: SendFrame, close: CloseSocket, queued_max: int, on_shut: OnShut
    ) -> None:
        self._send = send
        self._close = close
        self._on_shut = on_shut  # told once a close is decided
        self.queued_max = queued_max
        self.backlog: deque[Frame] | None = None
        self.sending = False
        self.close_code: int | None = None
        self.close_sent = False
        self.drainer: asyncio.Task[None] | None = None

    @property
    def queued(self) -> int:
        return len(self.backlog) if self.backlog else 0

    def offer(self, frame: Frame, on_full_close: int) -> None:
        """Queue a frame behind the others; close with `on_full_close` when the queue is full."""
        if self.close_code is not None:
            return
        if self.queued >= self.queued_max:
            self.shut(on_full_close, drop_backlog=True)
            return
        if self.backlog is None:
            self.backlog = deque()
        self.backlog.append(frame)
        self._drain_soon()

    async def send(self, frame: Frame, on_full_close: int) -> None:
        """Send now when nothing is ahead of this frame, else queue it behind the rest."""
        if self.sending or self.queued or self.close_code is not None:
            self.offer(frame, on_full_close)
            return
        self.sending = True
        try:
            await self._send(frame)
        finally:
            self.sending = False
        self._drain_soon()

    def shut(self, code: int, drop_backlog: bool = False) -> None:
        """Close after the queued frames (or at once, dropping them, for a slow consumer)."""
        if self.close_code is None:
            self.close_code = code
            if drop_backlog:
                self.backlog = None
            self._on_shut(code)
            self._drain_soon()

    def _drain_soon(self) -> None:
        """Start the drain task when something waits for it and nothing sends yet."""
        if self.sending or (self.drainer is not None and not self.drainer.done()):
            return
        if self.queued or (self.close_code is not None and not self.close_sent):
            self.drainer = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        """Send the queued frames in order, then the close frame if one is decided."""
        while self.backlog and not self.sending:
            frame = self.backlog.popleft()
            self.sending = True
            try:
                await self._send(frame)
            finally:
                self.sending = False
        if not self.queued:
            self.backlog = None
        if self.close_code is not None and not self.sending and not self.close_sent:
            self.close_sent = True
            await self._close(self.close_code)

    async def stop(self) -> None:
        """Cancel the drain task, if any (the socket is going away)."""
        if self.drainer is not None:
            self.drainer.cancel()
            await asyncio.gather(self.drainer, return_exceptions=True)
