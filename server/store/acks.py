"""MANOR_STORE_ACK=replica: durable writes answered only once a replica has them.

A WAIT (or WAITAOF) answers for the writes of the connection that sends it, up to its last
one. So the wait goes on the link that carried the writes, behind them: every durable write
of a tick on one link shares one wait (group commit). Before the wait, a probe write in the
first write's slot: a commit found done already (`exists`: the first attempt wrote, on
another process's connection or on a link since lost) writes nothing itself, and without
the probe the wait would answer for older writes only while the replica may still lack the
first attempt's.

On a cluster a write that a primary did not run (MOVED, ASK, NOSCRIPT...) goes again
through redis-py's pipeline, on a connection of redis-py's, possibly to another primary:
no wait of ours answers for it, so it is refused with ReplicaTimeout (the primary may have
it; a retry with the same id settles it, as the ReplicaTimeout contract says).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError

from server.store.link import Arg, Link, Request, deliver

PROBE_PX = 60_000  # a probe key lives this long (one per hash tag that waited lately)


class ReplicaTimeout(Exception):
    """MANOR_STORE_ACK=replica: no replica confirmed a write in time. The primary applied
    it, but a failover now could undo it, so it must not be reported as done; a retry with
    the same id finds out whether it survived."""


def probe_key(key: str) -> str:
    """A key in the slot of `key` (whose hash tag it copies; the app's keys all have one)."""
    start = key.find("{")
    end = key.find("}", start + 1)
    tag = key[start : end + 1] if start >= 0 and end > start + 1 else "{" + key + "}"
    return f"m:{tag}:ack_probe"


@dataclass(slots=True)
class Durable:
    request: Request  # the write, one command
    acked: asyncio.Future[Any]
    key: str  # its first key: the probe goes to its slot
    link: Link  # the connection that carried it


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()  # read, so an outcome nobody waits for is not logged as lost


class Acks:
    """The writes waiting for a replica, grouped per link and tick."""

    def __init__(
        self,
        pack: Callable[[tuple[Arg, ...]], bytes],
        link_for: Callable[[str], Link],
        refuse_retried: bool,
    ) -> None:
        self._pack = pack
        self._link_for = link_for  # the link that carries a key's commands now
        self._refuse_retried = refuse_retried  # cluster: a retried write went elsewhere
        self.timeout_ms = 0  # 0: local acks, no waiting
        self.command: tuple[Arg, ...] = ()  # WAIT 1 <ms> or WAITAOF 0 1 <ms>
        self._waiting: list[Durable] = []
        self._scheduled = False

    def after(self, request: Request, key: str, link: Link) -> asyncio.Future[Any]:
        """The write's outcome once a replica confirms it (ReplicaTimeout if none does)."""
        acked: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._add(Durable(request, acked, key, link))
        return acked

    def _add(self, durable: Durable) -> None:
        self._waiting.append(durable)
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._queue)

    def _queue(self) -> None:
        """One probe and one wait per link, behind every durable write it carried so far."""
        self._scheduled = False
        waiting, self._waiting = self._waiting, []
        groups: dict[int, list[Durable]] = {}
        for durable in waiting:
            groups.setdefault(id(durable.link), []).append(durable)
        loop = asyncio.get_running_loop()
        for group in groups.values():
            link = group[0].link
            commands = [("SET", probe_key(group[0].key), 1, "PX", PROBE_PX), self.command]
            # retried=True: a probe or wait must never be sent again elsewhere.
            wait = Request(commands, loop.create_future(), many=True, retried=True)
            assert wait.future is not None
            wait.future.add_done_callback(functools.partial(self._acknowledge, group))
            if link.lost:
                wait.future.set_exception(RedisConnectionError("the write's connection was lost"))
            else:
                deliver(link, wait, [self._pack(c) for c in commands])

    def _acknowledge(self, group: list[Durable], wait: asyncio.Future[Any]) -> None:
        error = wait.exception()
        if error is None:
            error = self.refusal(wait.result()[1])
        for durable in group:
            written = durable.request.future
            assert written is not None
            if durable.acked.done():
                continue
            if self._refuse_retried and (durable.request.retried or not written.done()):
                written.add_done_callback(_retrieve)
                durable.acked.set_exception(
                    ReplicaTimeout(
                        "the write went through another connection (a slot moved, a "
                        "failover, NOSCRIPT): no replica confirmed it here"
                    )
                )
            elif not written.done():  # sent again after NOSCRIPT, behind this wait: wait again
                written.add_done_callback(functools.partial(self._wait_again, durable))
            elif written.exception() is not None:
                durable.acked.set_exception(written.exception())  # type: ignore[arg-type]
            elif error is not None:
                durable.acked.set_exception(error)
            else:
                durable.acked.set_result(written.result())

    def _wait_again(self, durable: Durable, written: asyncio.Future[Any]) -> None:
        durable.link = self._link_for(durable.key)
        self._add(durable)

    def refusal(self, reply: Any) -> Exception | None:
        replicas = reply[1] if isinstance(reply, list) else reply
        if int(replicas) >= 1:
            return None
        return ReplicaTimeout(f"no replica confirmed the write within {self.timeout_ms} ms")
