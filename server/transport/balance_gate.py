"""Which `balance` pushes one socket is sent: only news.

A `balance` push is a state push (seq 0): the balance as of a journal entry, its
entry_seq. A socket is never sent one at or below the newest entry_seq it was given (in a
reply, a push, `state`, a resume), so the socket whose request made a commit reads that
balance in its reply and not again as the push (docs/protocol.md, Pushes). The commit's
own push usually comes back through the fan-out before its reply: while a request is
answered, a push waits here (the newest one) until the reply shows whether it is news.

Pure state, no I/O: the socket (server/transport/ws.py) asks and sends; the bench's floor
path (bench/credit_floor.py) uses the same gate.
"""

from __future__ import annotations

from typing import Any


class BalanceGate:
    __slots__ = ("answering", "entry_seq", "held", "held_entry_seq")

    def __init__(self) -> None:
        self.entry_seq = -1  # the newest balance the socket was given, by its entry_seq
        self.answering = False  # set by the socket while a request of its is answered
        self.held: bytes | None = None  # the newest push that came meanwhile
        self.held_entry_seq = -1

    def admit(self, frame: bytes, entry_seq: int) -> bool:
        """Whether to send this `balance` push now (it is then the socket's newest); a push
        that comes while a request is answered is held instead."""
        if entry_seq <= self.entry_seq:
            return False
        if self.answering:
            if entry_seq > self.held_entry_seq:
                self.held, self.held_entry_seq = frame, entry_seq
            return False
        self.entry_seq = entry_seq
        return True

    def answered(self, reply: dict[str, Any]) -> bytes | None:
        """The reply is on its way: the balance it carries (a commit's, `state`'s) is the
        socket's. The held push, if newer than that, to send now."""
        self.answering = False
        result = reply.get("result")
        if result.__class__ is dict:
            entry_seq = result.get("entry_seq")
            if entry_seq.__class__ is int and entry_seq > self.entry_seq:
                self.entry_seq = entry_seq
        held, held_entry_seq = self.held, self.held_entry_seq
        if held is None:
            return None
        self.held, self.held_entry_seq = None, -1
        if held_entry_seq <= self.entry_seq:
            return None
        self.entry_seq = held_entry_seq
        return held
