"""The coin ledger, Python side: transfers, journal entries, wallets and `verify`.

The writes happen in server/lua/commit.lua. Each player has a wallet (balance, balance per
expiry batch, last entry seq and hash) and a journal: a list of compact msgpack entries
`[seq, ts_ms, transfer_id, account, amount, balance_after, batches, ref, prev_hash]`,
where `account` is the bucket-local system account on the other side, `amount` is signed
from the player's view, `batches` is a flat `[batch, coins, ...]` list of the expiry batches
moved, and `prev_hash` is the sha1 of the previous entry's bytes ("" for the first).
Tampering with any entry breaks the chain at the next entry or at the wallet's head.

Old entries roll into a checkpoint in the wallet (`ck_seq`, `ck_head`, `ck_bal`,
`ck_batches`, `ck_accounts`: see server/compaction.py) and an archive file; `replay` starts
from the checkpoint, and `verify` with an archive folder proves the chain unbroken from seq 1
through the archive, the checkpoint and the live journal.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, cast

import msgpack
from redis.asyncio import Redis

from server.store.keys import BUCKETS, PlayerKeys, players_index, sys_accounts

TRANSFER_ID_BYTES_MAX = 200
VERIFY_PAGE_ENTRIES = 1000


def batch_int(day: date) -> int:
    return day.year * 10_000 + day.month * 100 + day.day


def batch_date(value: int) -> date:
    return date(value // 10_000, value // 100 % 100, value % 100)


@dataclass(frozen=True, slots=True)
class Transfer:
    """One posting between the player and a system account of the player's bucket.

    kind "c" credits the player from `account` (a mint), "d" debits the player to it (a sink).
    """

    transfer_id: str
    kind: str
    amount: int
    account: str
    batch: date | None = None
    ref: str = ""

    def __post_init__(self) -> None:
        if self.kind not in ("c", "d"):
            raise ValueError(f"transfer kind must be 'c' or 'd', got {self.kind!r}")
        if self.amount <= 0:
            raise ValueError(f"transfer amount must be positive, got {self.amount}")
        if self.kind == "c" and self.batch is None:
            raise ValueError("a credit needs an expiry batch")
        if not 0 < len(self.transfer_id.encode()) <= TRANSFER_ID_BYTES_MAX:
            raise ValueError("transfer id must be 1..200 bytes")

    def argv(self) -> tuple[str, str, int, str, str, str]:
        batch = str(batch_int(self.batch)) if self.batch else ""
        return (self.transfer_id, self.kind, self.amount, self.account, batch, self.ref)


@dataclass(frozen=True, slots=True)
class Entry:
    seq: int
    ts_ms: int
    transfer_id: str
    account: str
    amount: int
    balance_after: int
    batches: tuple[int, ...]
    ref: str
    prev_hash: str
    raw: bytes = field(repr=False)

    @classmethod
    def decode(cls, raw: bytes) -> Entry:
        fields = msgpack.unpackb(raw, raw=False)
        seq, ts_ms, transfer_id, account, amount, balance_after, batches, ref, prev = fields
        return cls(
            seq, ts_ms, transfer_id, account, amount, balance_after, tuple(batches), ref, prev, raw
        )

    @property
    def hash(self) -> str:
        return hashlib.sha1(self.raw).hexdigest()

    def public(self) -> dict[str, Any]:
        pairs = zip(self.batches[::2], self.batches[1::2], strict=True)
        return {
            "seq": self.seq,
            "ts_ms": self.ts_ms,
            "transfer_id": self.transfer_id,
            "account": self.account,
            "amount": self.amount,
            "balance_after": self.balance_after,
            "batches": [{"expires": batch_date(b).isoformat(), "coins": c} for b, c in pairs],
            "ref": self.ref,
        }


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The replayed state after entry `seq`: where a journal trimmed by compaction starts.

    `batches` maps batch (YYYYMMDD) -> coins (no empty batch); `accounts` maps each system
    account to the signed sum this player's entries up to `seq` put on it (the system's view:
    minus the player's amounts), so a bucket's system balances still check without archives.
    """

    seq: int = 0
    head: str = ""
    balance: int = 0
    batches: dict[int, int] = field(default_factory=dict)
    accounts: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Wallet:
    balance: int = 0
    batches: dict[date, int] = field(default_factory=dict)
    seq: int = 0
    head: str = ""
    checkpoint: Checkpoint = field(default_factory=Checkpoint)
    held: int = 0
    debt: int = 0

    @classmethod
    def from_hash(cls, raw: dict[bytes, bytes]) -> Wallet:
        batches = {batch_date(int(k[2:])): int(v) for k, v in raw.items() if k.startswith(b"b:")}
        checkpoint = Checkpoint()
        if b"ck_seq" in raw:
            ck_batches = msgpack.unpackb(raw.get(b"ck_batches", b"\x80"), strict_map_key=False)
            ck_accounts = msgpack.unpackb(raw.get(b"ck_accounts", b"\x80"), raw=False)
            checkpoint = Checkpoint(
                seq=int(raw[b"ck_seq"]),
                head=raw.get(b"ck_head", b"").decode(),
                balance=int(raw.get(b"ck_bal", 0)),
                batches={int(k): int(v) for k, v in ck_batches.items()},
                accounts={str(k): int(v) for k, v in ck_accounts.items()},
            )
        return cls(
            balance=int(raw.get(b"bal", 0)),
            batches=dict(sorted(batches.items())),
            seq=int(raw.get(b"seq", 0)),
            head=raw.get(b"head", b"").decode(),
            checkpoint=checkpoint,
            held=int(raw.get(b"held", 0)),
            debt=int(raw.get(b"debt", 0)),
        )

    def by_batch(self) -> list[dict[str, Any]]:
        return [{"expires": d.isoformat(), "coins": c} for d, c in self.batches.items()]


class LedgerCorrupt(Exception):
    """`verify` found a mismatch; the message names the first bad entry."""


@dataclass
class VerifyReport:
    players: int = 0
    entries: int = 0
    player_sum: int = 0
    system_sum: int = 0
    whole: bool = True  # every bucket was walked, so all accounts must sum to zero
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and (not self.whole or self.player_sum + self.system_sum == 0)


def advance(player_id: str, entries: Iterable[Entry], start: Checkpoint) -> Checkpoint:
    """Replay the entries that follow `start`; the state after the last, or LedgerCorrupt
    naming the first bad entry."""
    balance, head, seq = start.balance, start.head, start.seq
    batches = dict(start.batches)
    accounts = dict(start.accounts)
    for entry in entries:
        seq += 1
        where = f"player {player_id} entry seq {entry.seq} ({entry.transfer_id})"
        if entry.seq != seq:
            raise LedgerCorrupt(f"{where}: expected seq {seq}")
        if entry.prev_hash != head:
            raise LedgerCorrupt(f"{where}: chain broken (prev hash does not match entry before)")
        moved = 0
        for batch, coins in zip(entry.batches[::2], entry.batches[1::2], strict=True):
            batches[batch] = batches.get(batch, 0) + coins
            moved += coins
            if batches[batch] < 0:
                raise LedgerCorrupt(f"{where}: batch {batch} went negative")
        balance += entry.amount
        if moved != entry.amount:
            raise LedgerCorrupt(f"{where}: batches move {moved}, amount is {entry.amount}")
        if entry.balance_after != balance or balance < 0:
            raise LedgerCorrupt(f"{where}: balance_after {entry.balance_after}, replay {balance}")
        accounts[entry.account] = accounts.get(entry.account, 0) - entry.amount
        head = entry.hash
    return Checkpoint(seq, head, balance, {b: c for b, c in batches.items() if c}, accounts)


def replay(
    player_id: str,
    entries: Iterator[Entry],
    wallet: Wallet,
    counterparts: dict[str, int],
    start: Checkpoint | None = None,
) -> int:
    """Replay one journal against its wallet, from the wallet's checkpoint unless `start`
    is given (from an archive); add what the player's entries put on each system account
    (checkpoint included) to `counterparts`. The count of entries replayed, or LedgerCorrupt."""
    start = wallet.checkpoint if start is None else start
    end = advance(player_id, entries, start)
    for account, coins in end.accounts.items():
        counterparts[account] = counterparts.get(account, 0) + coins
    if wallet.seq != end.seq or wallet.head != end.head:
        raise LedgerCorrupt(f"player {player_id}: wallet head/seq do not match the journal end")
    live = {batch_int(d): c for d, c in wallet.batches.items()}
    if wallet.balance != end.balance or live != end.batches:
        raise LedgerCorrupt(
            f"player {player_id}: wallet balance {wallet.balance}, replay {end.balance}"
        )
    return end.seq - start.seq


def _archived_start(
    player_id: str, archived: dict[int, bytes], live: list[Entry], wallet: Wallet
) -> Checkpoint:
    """Replay a player's archived entries from seq 1 and prove they end at the wallet's
    checkpoint; archived copies of entries still live (a crash before the trim) must be
    byte for byte the live ones. The checkpoint to replay the live journal from."""
    ck = wallet.checkpoint
    live_by_seq = {e.seq: e.raw for e in live}
    for seq in sorted(s for s in archived if s > ck.seq):
        if live_by_seq.get(seq) != archived[seq]:
            raise LedgerCorrupt(
                f"player {player_id} entry seq {seq}: archived copy differs from the journal "
                f"(or the journal lacks it)"
            )
    end = advance(
        player_id,
        (Entry.decode(archived[s]) for s in sorted(s for s in archived if s <= ck.seq)),
        Checkpoint(),
    )
    where = f"player {player_id} checkpoint at seq {ck.seq}"
    if end.seq != ck.seq:
        raise LedgerCorrupt(f"{where}: archives end at seq {end.seq}")
    if end.head != ck.head:
        raise LedgerCorrupt(f"{where}: ck_head does not match the last archived entry")
    if end.balance != ck.balance or end.batches != ck.batches:
        raise LedgerCorrupt(
            f"{where}: ck_bal {ck.balance} / ck_batches {ck.batches}, archives say "
            f"{end.balance} / {end.batches}"
        )
    if {a: c for a, c in end.accounts.items() if c} != {a: c for a, c in ck.accounts.items() if c}:
        raise LedgerCorrupt(f"{where}: ck_accounts {ck.accounts}, archives say {end.accounts}")
    return end


async def _entries(redis: Redis, keys: PlayerKeys) -> list[Entry]:
    out: list[Entry] = []
    start = 0
    while True:
        page = cast(
            list[bytes], await redis.lrange(keys.journal, start, start + VERIFY_PAGE_ENTRIES - 1)
        )
        out.extend(Entry.decode(raw) for raw in page)
        if len(page) < VERIFY_PAGE_ENTRIES:
            return out
        start += VERIFY_PAGE_ENTRIES


async def verify(
    redis: Redis, player_id: str | None = None, archive_dir: Path | None = None
) -> VerifyReport:
    """Replay journals; with no player, every player of every bucket plus the system sums.

    With `archive_dir`, each player's archived entries are replayed from seq 1 too and must
    end exactly at the wallet's checkpoint (see server/compaction.py)."""
    from server.ledger.compaction import read_archives  # compaction imports this module

    report = VerifyReport(whole=player_id is None)
    buckets = [PlayerKeys(player_id).bucket] if player_id else list(range(BUCKETS))
    for bucket in buckets:
        if player_id:
            players = [player_id]
        else:
            members = cast(set[bytes], await redis.smembers(players_index(bucket)))
            players = sorted(m.decode() for m in members)
        archived: dict[str, dict[int, bytes]] = {}
        if archive_dir is not None:
            archived, clashes = read_archives(archive_dir, bucket)
            report.problems += clashes
            for stray in sorted(set(archived) - set(players)):
                if player_id is None:
                    report.problems.append(
                        f"player {stray}: archived entries but no wallet in bucket {bucket}"
                    )
        counterparts: dict[str, int] = {}
        for pid in players:
            keys = PlayerKeys(pid)
            wallet = Wallet.from_hash(cast(dict[bytes, bytes], await redis.hgetall(keys.wallet)))
            try:
                live = await _entries(redis, keys)
                start = None
                if archive_dir is not None:
                    start = _archived_start(pid, archived.get(pid, {}), live, wallet)
                    report.entries += start.seq
                report.entries += replay(pid, iter(live), wallet, counterparts, start)
            except LedgerCorrupt as exc:
                report.problems.append(str(exc))
            report.players += 1
            report.player_sum += wallet.balance
        if player_id:
            continue
        raw = cast(dict[bytes, bytes], await redis.hgetall(sys_accounts(bucket)))
        system = {k.decode(): int(v) for k, v in raw.items()}
        report.system_sum += sum(system.values())
        for account in sorted(set(system) | set(counterparts)):
            if system.get(account, 0) != counterparts.get(account, 0):
                report.problems.append(
                    f"bucket {bucket} account {account}: balance {system.get(account, 0)}, "
                    f"journals say {counterparts.get(account, 0)}"
                )
    if report.whole and report.player_sum + report.system_sum != 0:
        report.problems.append(
            f"all accounts sum to {report.player_sum + report.system_sum}, not 0 "
            f"(players {report.player_sum}, system {report.system_sum})"
        )
    return report
