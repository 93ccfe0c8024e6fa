"""The socket's sender (server/transport/sender.py): order, the lingering drain task, the
bounded queue and the close that comes last."""

from __future__ import annotations

import asyncio

import pytest

from server.transport import sender as sender_module
from server.transport.sender import Frame, Sender

SLOW = 4410


class Socket:
    """What a sender writes to: frames in order, then at most one close."""

    def __init__(self) -> None:
        self.frames: list[Frame] = []
        self.closed: list[int] = []
        self.shut: list[int] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def send(self, frame: Frame) -> None:
        await self.gate.wait()
        self.frames.append(frame)

    async def close(self, code: int) -> None:
        self.closed.append(code)

    def sender(self, queued_max: int = 8) -> Sender:
        return Sender(self.send, self.close, queued_max, self.shut.append)


async def test_pushes_that_keep_coming_reuse_one_drain_task() -> None:
    socket = Socket()
    sender = socket.sender()
    sender.offer(b"1", SLOW)
    first = sender.drainer
    await asyncio.sleep(0.01)
    sender.offer(b"2", SLOW)
    sender.offer(b"3", SLOW)
    await asyncio.sleep(0.01)
    assert socket.frames == [b"1", b"2", b"3"]
    assert sender.drainer is first and first is not None and not first.done()
    await sender.stop()


async def test_the_drain_task_ends_after_lingering(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sender_module, "DRAIN_LINGER_S", 0.02)
    socket = Socket()
    sender = socket.sender()
    sender.offer(b"1", SLOW)
    drainer = sender.drainer
    assert drainer is not None
    await asyncio.wait_for(drainer, 1.0)
    assert sender.backlog is None  # an idle socket keeps no queue either
    sender.offer(b"2", SLOW)  # a new one starts
    assert sender.drainer is not drainer
    await asyncio.sleep(0.01)
    assert socket.frames == [b"1", b"2"]
    await sender.stop()


async def test_a_direct_send_waits_behind_queued_frames() -> None:
    socket = Socket()
    socket.gate.clear()
    sender = socket.sender()
    sender.offer(b"push", SLOW)
    await asyncio.sleep(0)
    reply = asyncio.create_task(sender.send(b"reply", SLOW))
    await asyncio.sleep(0)
    socket.gate.set()
    await reply
    await asyncio.sleep(0.01)
    assert socket.frames == [b"push", b"reply"]
    await sender.stop()


async def test_a_full_queue_drops_its_frames_and_closes_last() -> None:
    socket = Socket()
    socket.gate.clear()  # a client that reads nothing
    sender = socket.sender(queued_max=2)
    for n in range(3):
        sender.offer(f"{n}".encode(), SLOW)
    assert socket.shut == [SLOW] and sender.close_code == SLOW
    sender.offer(b"late", SLOW)  # after the decision: dropped
    socket.gate.set()
    await asyncio.sleep(0.01)
    assert socket.closed == [SLOW]
    assert b"late" not in socket.frames and len(socket.frames) <= 1  # one was on the wire
    await sender.stop()


class Wire(Socket):
    """A socket that can take a frame at once unless `busy` (its transport's buffer full)."""

    def __init__(self) -> None:
        super().__init__()
        self.busy = False
        self.at_once: list[Frame] = []

    def send_now(self, frame: Frame) -> bool:
        if self.busy:
            return False
        self.at_once.append(frame)
        self.frames.append(frame)
        return True

    def sender(self, queued_max: int = 8) -> Sender:
        return Sender(self.send, self.close, queued_max, self.shut.append, self.send_now)


async def test_frames_with_nothing_ahead_go_out_at_once_without_a_task() -> None:
    socket = Wire()
    sender = socket.sender()
    sender.offer(b"push", SLOW)
    await sender.send(b"reply", SLOW)
    assert socket.at_once == [b"push", b"reply"]
    assert sender.drainer is None and sender.backlog is None


async def test_a_busy_socket_queues_and_later_frames_wait_behind() -> None:
    socket = Wire()
    socket.busy = True
    socket.gate.clear()
    sender = socket.sender()
    sender.offer(b"1", SLOW)  # queued: the socket cannot take it now
    socket.busy = False
    sender.offer(b"2", SLOW)  # the socket could, but "1" is ahead of it
    reply = asyncio.create_task(sender.send(b"3", SLOW))
    await asyncio.sleep(0)
    assert socket.at_once == []
    socket.gate.set()
    await reply
    await asyncio.sleep(0.01)
    assert socket.frames == [b"1", b"2", b"3"]
    await sender.stop()
