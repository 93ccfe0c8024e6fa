"""Apply a rule's outcome for one player in one script call (server/store/lua/commit.lua)."""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, NamedTuple

import msgpack

from server.ledger.ledger import Transfer, lua_strings
from server.store.keys import PlayerKeys
from server.store.store import Arg, Store

# A player's inbox (the pushes a resume replays) keeps at least the newest INBOX_KEEP and
# at most INBOX_MAX: one LTRIM every INBOX_MAX - INBOX_KEEP pushes, not one per push.
INBOX_MAX = 120
INBOX_KEEP = 100
NO_FIELDS: Mapping[str, bytes] = MappingProxyType({})  # a default no commit can change
# Pending checkout holds of one player, the shop's and the mall's together: the hold index
# (the hash's `hx`) is one field, rewritten whole when a hold moves. A reserve past it is
# HOLDS_FULL (commit.lua's HOLDS_PENDING_MAX).
HOLDS_PENDING_MAX = 64
# The header's seventeen integers in commit.lua's HEADER struct (its five strings follow).
HEADER_NUMBERS = struct.Struct("<17q")
# commit.lua's answer up to its status (ANSWER): six integers and the status's length.
ANSWER_NUMBERS = struct.Struct("<6qI")


@dataclass(frozen=True, slots=True)
class HoldOp:
    """A checkout hold step: `reserve` locks coins until `expires_ms`; `post` (with the
    debit transfer in the same commit) or `void` releases them, each at most once."""

    op: str
    order_id: str
    coins: int = 0
    expires_ms: int = 0

    def argv(self) -> tuple[str, str, int, int]:
        return (self.op, self.order_id, self.coins, self.expires_ms)


class Commit(NamedTuple):
    """What one commit.lua call writes. Immutable; a NamedTuple, as Request and Snapshot:
    two are built on every rule op, and a frozen dataclass's __init__ (object.__setattr__
    per field) cost 7 % of a credited sign-in's server instructions with CommitResult's
    (bench.instructions, docs/benchmark.md)."""

    expected_ver: int = -1  # -1: no version check (platform and operator credits)
    fields: Mapping[str, bytes] = NO_FIELDS
    transfers: Sequence[Transfer] = ()
    pushes: Sequence[tuple[str, bytes]] = ()  # (type, msgpack map)
    orders: Sequence[tuple[str, int, bytes]] = ()  # outbox (source, coins, msgpack order)
    timers: Sequence[tuple[str, int]] = ()  # (member, due_ms) armed in the bucket's timers
    holds: Sequence[HoldOp] = ()  # checkout holds: reserve, post, void
    debt_add: int = 0  # coins a refund could not take back (paid first from later credits)
    records: Sequence[tuple[str, bytes, bytes]] = ()  # (field, expected or b"", new): CAS;
    # new == expected only checks the record (a decision that depends on it, written by others)
    counts: Sequence[tuple[str, int]] = ()  # (stats field, coins to add): invariant counters
    reply_body: bytes = b""  # with a request id: the reply to replay on a retry
    reply_ttl_s: int = 86_400
    # Decided on a remembered snapshot (server/pipeline.py, Seen): the state's stamp it
    # showed, checked with expected_ver; the request id's reply is checked absent too, by
    # the SET NX that stores it (the commit's first write).
    seen_stamp: str | None = None
    stamp: str = ""  # written with the fields: who wrote the new version ("" = no stamp)
    # A request of one of the player's own sockets, which reads the balance in its reply:
    # when the player has no other socket (the `sk` count socket_lease.lua keeps), the
    # `balance` push is not published, since nobody would read it.
    asked_by_socket: bool = False

    def guarded(
        self,
        expected_ver: int,
        reply_body: bytes,
        reply_ttl_s: int,
        seen_stamp: str | None,
        stamp: str,
        asked_by_socket: bool,
    ) -> Commit:
        """This commit with the guards a rule op adds (_replace, spelt out: it runs on every
        rule op, and a generic replace walks every field)."""
        return Commit(
            expected_ver,
            self.fields,
            self.transfers,
            self.pushes,
            self.orders,
            self.timers,
            self.holds,
            self.debt_add,
            self.records,
            self.counts,
            reply_body,
            reply_ttl_s,
            seen_stamp,
            stamp,
            asked_by_socket,
        )


class CommitResult(NamedTuple):
    status: str
    balance: int
    ver: int
    pseq: int
    receivers: tuple[int, ...] = ()  # per extra push: subscribers that got it
    held: int = 0  # coins locked by checkout holds after the commit
    debt: int = 0  # coins owed after the commit
    entry_seq: int = 0  # the wallet's journal seq the balance is as of

    @property
    def written(self) -> bool:
        return self.status == "ok"

    def answer(self, result: dict[str, Any]) -> dict[str, Any]:
        """A rule op's reply: its result with the balance and the entry it is as of. The
        socket that asked gets no `balance` push for this commit
        (server/transport/balance_gate.py), so a client orders this balance against pushes
        by entry_seq."""
        return {**result, "balance": self.balance, "entry_seq": self.entry_seq}


def reply_body(op: str, result: dict[str, Any]) -> bytes:
    """The stored reply of a request id as a commit takes it: a msgpack map of 3 with op
    and result; commit.lua appends the third pair, entry_seq, and prefixes the balance."""
    packed: bytes = msgpack.packb({"op": op, "result": result})
    return b"\x83" + packed[1:]  # fixmap of 2 -> of 3


def commit_header(
    store: Store, keys: PlayerKeys, commit: Commit, now_ms: int, reply_key: str | None
) -> bytes:
    """commit.lua's first argument (its HEADER struct, see its header)."""
    numbers = HEADER_NUMBERS.pack(
        commit.expected_ver,
        len(commit.fields),
        len(commit.transfers),
        len(commit.pushes),
        len(commit.orders),
        commit.reply_ttl_s,
        INBOX_MAX,
        len(commit.timers),
        len(commit.holds),
        store.today_of(now_ms),
        commit.debt_add,
        len(commit.records),
        len(commit.counts),
        INBOX_KEEP,
        commit.seen_stamp is not None,
        commit.asked_by_socket,
        now_ms,
    )
    return numbers + lua_strings(
        commit.reply_body if reply_key else b"",
        keys.player_id.encode(),
        store.publish_command.encode(),
        (commit.seen_stamp or "").encode(),
        commit.stamp.encode(),
    )


async def apply(
    store: Store, keys: PlayerKeys, commit: Commit, now_ms: int, reply_key: str | None = None
) -> CommitResult:
    args: list[Arg] = [commit_header(store, keys, commit, now_ms, reply_key)]
    for name, value in commit.fields.items():
        args += (name, value)
    for transfer in commit.transfers:
        args.append(transfer.packed())
    for kind, data in commit.pushes:
        args += (kind, data)
    for source, amount, order in commit.orders:
        args += (source, amount, order)
    for member, due_ms in commit.timers:
        args += (member, due_ms)
    for hold in commit.holds:
        args += hold.argv()
    for name, expected, value in commit.records:
        args += (name, expected, value)
    for name, by in commit.counts:
        args += (name, by)
    script_keys: tuple[str, ...] = (
        keys.state,
        keys.journal,
        keys.txids,
        keys.sys,
        keys.inbox,
        keys.players,
        reply_key or keys.reply("-"),
        keys.push_channel,
        keys.holds,
    )
    # The rest only up to the last one this commit uses (commit.lua's KEYS 10-13).
    if commit.records:
        script_keys += (keys.outbox, keys.stats, keys.timers, keys.records)
    elif commit.timers:
        script_keys += (keys.outbox, keys.stats, keys.timers)
    elif commit.orders or commit.counts:
        script_keys += (keys.outbox, keys.stats)
    # Durable as MANOR_STORE_ACK asks: with `replica`, only once a replica has it too.
    return commit_answer(await store.durable_script("commit", script_keys, args))


def commit_answer(raw: bytes) -> CommitResult:
    """commit.lua's answer (its ANSWER struct, see its header) as a CommitResult."""
    balance, ver, pseq, held, debt, entry_seq, status_bytes = ANSWER_NUMBERS.unpack_from(raw)
    at = ANSWER_NUMBERS.size + status_bytes
    receivers = struct.unpack_from(f"<{(len(raw) - at) // 8}q", raw, at) if len(raw) > at else ()
    status = raw[ANSWER_NUMBERS.size : at].decode()
    return CommitResult(status, balance, ver, pseq, receivers, held, debt, entry_seq)
