"""A socket's outgoing frames: sent at once when the socket is idle, queued when not.

The queue is bounded: a client that stops reading fills it and is disconnected (its
pushes wait in the inbox for a resume), so memory per socket stays bounded.

A frame with nothing ahead of it goes out at once through `send_now` (the wire writes it
to the transport: no coroutine, no task), unless the client reads too slowly.
An idle socket owns no task, queue or event here: the queue is made by the first frame
that must wait, and a drain task lives while frames come (idle sockets are most sockets;
each of those objects costs RSS on every one of them). The drain task lingers
DRAIN_LINGER_S after its last frame, so a socket that gets pushes steadily reuses one
task instead of making one per push.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable

Frame = bytes | str
SendFrame = Callable[[Frame], Awaitable[None]]
SendNow = Callable[[Frame], bool]  # sent at once (True), or not at all: the socket is busy
CloseSocket = Callable[[int], Awaitable[None]]
OnShut = Callable[[int], None]

DRAIN_LINGER_S = 1.0  # a drain task idle this long ends (a socket idle after pushes)


def _never(frame: Frame) -> bool:
    return False


def _wake(waiter: asyncio.Future[bool], more: bool) -> None:
    if not waiter.done():
        waiter.set_result(more)


class Sender:
    def __init__(
        self,
        send: SendFrame,
        close: CloseSocket,
        queued_max: int,
        on_shut: OnShut,
        send_now: SendNow | None = None,
    ) -> None:
        self._send = send
        self._send_now = send_now or _never  # a frame with nothing ahead of it, no task
        self._close = close
        self._on_shut = on_shut  # told once a close is decided
        self.queued_max = queued_max
        self.backlog: deque[Frame] | None = None
        self.sending = False
        self.close_code: int | None = None
        self.close_sent = False
        self.drainer: asyncio.Task[None] | None = None
        self._waiter: asyncio.Future[bool] | None = None  # the lingering drainer's wake-up

    @property
    def queued(self) -> int:
        return len(self.backlog) if self.backlog else 0

    def offer(self, frame: Frame, on_full_close: int) -> None:
        """Queue a frame behind the others; close with `on_full_close` when the queue is full."""
        if self.close_code is not None:
            return
        if not self.backlog and not self.sending and self._send_now(frame):
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
        if self.sending or self.backlog or self.close_code is not None:  # backlog: queued
            self.offer(frame, on_full_close)
            return
        if self._send_now(frame):
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
        """Wake or start the drain task when something waits for it and nothing sends yet."""
        if self.sending:
            return
        if not self.backlog and (self.close_code is None or self.close_sent):
            return
        if self._waiter is not None:
            _wake(self._waiter, True)
        elif self.drainer is None or self.drainer.done():
            self.drainer = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        """Send the queued frames in order, then the close frame if one is decided; wait
        up to DRAIN_LINGER_S for more before ending."""
        loop = asyncio.get_running_loop()
        while True:
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
                return
            if self.sending or self.close_code is not None:
                return  # a direct send is under way: it wakes or starts a drain after it
            waiter: asyncio.Future[bool] = loop.create_future()
            self._waiter = waiter
            timer = loop.call_later(DRAIN_LINGER_S, _wake, waiter, False)
            try:
                more = await waiter
            finally:
                timer.cancel()
                self._waiter = None
            if not more and not self.queued and self.close_code is None:
                return  # lingered long enough; a frame offered as the timer fired stays

    async def stop(self) -> None:
        """Cancel the drain task, if any (the socket is going away)."""
        if self.drainer is not None:
            self.drainer.cancel()
            await asyncio.gather(self.drainer, return_exceptions=True)
