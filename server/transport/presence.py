"""Sockets per player across every server process: leases in the player's slot.

Each open socket holds a member of the player's sorted set (`PlayerKeys.sockets`): an id
unique across processes, scored by its lease expiry in the app clock's ms. A handshake
takes a place with `socket_lease.lua`, which refuses at MANOR_SOCKETS_PER_PLAYER_MAX live
members; the process renews the leases of all its sockets every SOCKET_RENEW_S (pipelined,
RENEW_PLAYERS_PER_BATCH players per batch) and removes a socket's member when it closes. A
process that dies without cleaning up (kill -9, a lost host) leaves members that stop
counting once their lease runs out: at most SOCKET_LEASE_MS after its last renewal.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import uuid
from typing import Any

from server.clock import Clock
from server.store.keys import PlayerKeys
from server.store.store import Arg, Store

log = logging.getLogger(__name__)

SOCKET_LEASE_MS = 30_000  # a socket nobody renews stops counting this long after its last renewal
SOCKET_RENEW_S = 10.0  # each process renews its sockets' leases this often (3 tries per lease)
RENEW_PLAYERS_PER_BATCH = 500  # players per pipelined renewal batch (2 commands each)


class Presence:
    """This process's sockets and their leases in the store."""

    def __init__(self, store: Store, clock: Clock, lease_ms: int = SOCKET_LEASE_MS) -> None:
        self.store = store
        self.clock = clock
        self.lease_ms = lease_ms
        self.process_id = uuid.uuid4().hex[:16]
        self._counter = itertools.count(1)
        # (the player's sockets key, its state hash) -> this process's socket ids there
        self._held: dict[tuple[str, str], set[str]] = {}
        self._renewing: asyncio.Future[Any] | None = None  # the renewal batch in flight

    def new_socket_id(self) -> str:
        return f"{self.process_id}-{next(self._counter)}"

    def held(self) -> int:
        """Sockets whose leases this process renews."""
        return sum(len(ids) for ids in self._held.values())

    async def take(self, keys: PlayerKeys, socket_id: str, limit: int) -> bool:
        """A place for `socket_id` among the player's `limit`, or False (nothing written).

        Store errors reach the caller, and the socket is not held.
        """
        now_ms = self.clock.now_ms()
        got = await self.store.script(
            "socket_lease", [keys.sockets, keys.state], [socket_id, now_ms, self.lease_ms, limit]
        )
        if not got:
            return False
        self.hold(keys, socket_id)
        return True

    def hold(self, keys: PlayerKeys, socket_id: str) -> None:
        """Renew `socket_id` from now on; the next renewal writes it if the store lacks it."""
        self._held.setdefault((keys.sockets, keys.state), set()).add(socket_id)

    async def release(self, keys: PlayerKeys, socket_id: str) -> None:
        """The socket closed: stop renewing it and free its place. Never raises."""
        held = (keys.sockets, keys.state)
        ids = self._held.get(held)
        if ids is not None:
            ids.discard(socket_id)
            if not ids:
                del self._held[held]
        # A renewal batch in flight may still write this member: remove it after that.
        renewing = self._renewing
        if renewing is not None and not renewing.done():
            with contextlib.suppress(Exception):
                await asyncio.shield(renewing)
        try:
            await self.store.call("ZREM", keys.sockets, socket_id)
        except Exception as exc:  # noqa: BLE001 - the lease expires on its own
            log.info("socket lease of %s not removed (expires in time): %r", keys.player_id, exc)

    async def renew(self) -> None:
        """Move every held socket's lease to now + lease_ms, a batch of players at a time.

        A member the store lost (its lease ran out while the store was unreachable, a
        failover) is written again: the socket is open, so it counts. A socket that opened
        meanwhile counted the player's sockets without it, so the player's `sk` is dropped
        (socket_lease.lua): its credits publish the `balance` push again until the next
        socket writes the count.
        """
        players = list(self._held)
        for start in range(0, len(players), RENEW_PLAYERS_PER_BATCH):
            expiry_ms = self.clock.now_ms() + self.lease_ms
            commands: list[tuple[Arg, ...]] = []
            states: list[str] = []  # the state hash of each ZADD, in order
            for player in players[start : start + RENEW_PLAYERS_PER_BATCH]:
                ids = self._held.get(player)  # read now: a socket closed meanwhile is left out
                if not ids:
                    continue
                sockets, state = player
                pairs: list[Arg] = []
                for socket_id in ids:
                    pairs += [expiry_ms, socket_id]
                commands += [("ZADD", sockets, *pairs), ("PEXPIRE", sockets, self.lease_ms)]
                states.append(state)
            if not commands:
                continue
            self._renewing = self.store.call_many(*commands)
            try:
                replies = await self._renewing
            finally:
                self._renewing = None
            # ZADD answers how many members it added: a lease the store had lost.
            lost = [state for state, added in zip(states, replies[::2], strict=True) if added]
            if lost:
                await self.store.call_many(*[("HDEL", state, "sk") for state in lost])

    async def run(self, every_s: float = SOCKET_RENEW_S) -> None:
        """Renew every `every_s` until cancelled; a failed round is logged and retried."""
        while True:
            await asyncio.sleep(every_s)
            try:
                await self.renew()
            except Exception as exc:  # noqa: BLE001 - the next round tries again
                log.warning("socket leases not renewed (%d sockets): %r", self.held(), exc)
