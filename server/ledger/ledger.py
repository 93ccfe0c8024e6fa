"""The coin ledger, Python side: transfers, journal entries, wallets and `verify`.

The writes happen in server/store/lua/commit.lua. Each player has a wallet (balance, balance per
expiry batch, last entry seq and chain head), a journal (a list of compact msgpack entries,
oldest first) and a transfer-id index (the txids hash).

Journal format 2 (written since 2026-12-02), an entry is
`[seq, ts_s, account, amount, balance_after, batches, ref, tag]` and the txids hash maps
its transfer id to its seq: the id is stored once, in the index, not in the entry.
- `account` is the bucket-local system account on the other side, by its code in
  server/ledger/accounts.py where it has one, else by name;
- `amount` is signed from the player's view, `batches` a flat `[batch, coins, ...]` list of
  the expiry batches moved;
- `ref` is `false` when it equals the id's last `:` field (a sign-in's day, say);
- `tag` is the first 32 bits of the chain head before the entry (0 for the first);
- the chain head after an entry is sha1(head before || msgpack(transfer id) || entry
  bytes), in hex: the wallet's `head` names the whole journal, the id included, while an
  entry spends 5 bytes on the link, and a tag that does not match names the first entry
  after a change.

Format 1 (before): `[seq, ts_ms, transfer_id, account, amount, balance_after, batches, ref,
prev_hash]`, the chain head after it sha1(entry bytes), and the txids value
`<kind>|<amount>|<account>|<seq>`. Both are read, in one journal too: a wallet's first
format-2 entry follows its last format-1 one. Compaction rewrites the txids value of every
entry it archives in the format-1 form (the account by its code where it has one: account
names are never all digits), so an archived id still answers a reuse with other coins
(TRANSFER_MISMATCH) without its entry.

Old entries roll into a checkpoint in the wallet (`ck_seq`, `ck_head`, `ck_bal`,
`ck_batches`, `ck_accounts`: see server/ledger/compaction.py) and an archive file; `replay` starts
from the checkpoint, and `verify` with an archive folder proves the chain unbroken from seq 1
through the archive, the checkpoint and the live journal.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import msgpack

# The limit lives with the id builder (game_rules.ids.transfer_id, which digests what
# would not fit) and with commit.lua (ID_BYTES_MAX, for the debt repayment ids it makes).
from game_rules import ids
from server.ledger import accounts

TRANSFER_ID_BYTES_MAX = ids.TRANSFER_ID_BYTES_MAX

VERIFY_PAGE_ENTRIES = 1000
# A transfer's numbers in commit.lua's TRANSFER struct: kind, amount, batch, ref stored, code.
TRANSFER_NUMBERS = struct.Struct("<cqq?q")
# The length before each string of commit.lua's structs (`i4c0`).
LUA_LENGTH = struct.Struct("<I")


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
            raise ValueError(f"transfer id must be 1..{TRANSFER_ID_BYTES_MAX} bytes")

    def packed(self) -> bytes:
        """commit.lua's argument for this transfer (its TRANSFER struct, see its header)."""
        code = accounts.code_of(self.account)
        ref = stored_ref(self.transfer_id, self.ref)
        numbers = TRANSFER_NUMBERS.pack(
            self.kind.encode(),
            self.amount,
            batch_int(self.batch) if self.batch else 0,
            ref is not False,
            -1 if code is None else code,
        )
        stored = b"" if ref is False else str(ref).encode()
        return numbers + lua_strings(self.transfer_id.encode(), self.account.encode(), stored)


def lua_strings(*texts: bytes) -> bytes:
    """Strings as commit.lua's structs read them (`i4c0`): each after its length. (Spelt
    out at each caller it was 0.1-0.4 us a call faster, ~0.5 % of a credit's server CPU:
    not worth two copies of the same join.)"""
    length = LUA_LENGTH.pack
    return b"".join([length(len(text)) + text for text in texts])


def head_tag(head: str) -> int:
    """The 32 bits of a chain head a format-2 entry keeps of the head before it."""
    return int(head[:8], 16) if head else 0


def chain_head(head: str, transfer_id: str, raw: bytes) -> str:
    """The chain head after a format-2 entry (commit.lua computes the same)."""
    return hashlib.sha1(head.encode() + msgpack.packb(transfer_id) + raw).hexdigest()


def txid_seq(value: bytes | str) -> int | None:
    """The entry seq a txids value names: `<seq>` (format 2) or `...|<seq>` (format 1)."""
    text = value.decode() if isinstance(value, bytes) else value
    last = text.rsplit("|", 1)[-1]
    return int(last) if last.isdigit() else None


def ids_by_seq(pairs: Iterable[tuple[bytes | str, bytes | str]]) -> dict[int, str]:
    """seq -> transfer id from a txids hash's (field, value) pairs: what names the
    format-2 entries of a journal."""
    out: dict[int, str] = {}
    for txid, value in pairs:
        seq = txid_seq(value)
        if seq is not None:
            out[seq] = txid.decode() if isinstance(txid, bytes) else txid
    return out


def stored_ref(transfer_id: str, ref: str) -> str | bool:
    """How a format-2 entry stores `ref`: False when it repeats the id's last `:` field
    (read back by id_ref), so a sign-in's entry does not hold its day twice."""
    head, sep, last = transfer_id.rpartition(":")
    return False if sep and head and ref == last else ref


def id_ref(transfer_id: str) -> str:
    """The ref a format-2 entry stores as `false`: the id's last `:` field."""
    head, sep, last = transfer_id.rpartition(":")
    return last if sep and head else ""


@dataclass(frozen=True, slots=True)
class Entry:
    """One journal entry, either format (the module's doc). A format-2 entry does not hold
    its transfer id: decode it with the id from the txids hash (server/ledger/journal.py
    reads both), or `transfer_id` is "" and the entry does not chain."""

    seq: int
    ts_ms: int
    transfer_id: str
    account: str
    amount: int
    balance_after: int
    batches: tuple[int, ...]
    ref: str
    prev_hash: str  # format 1: the head before, in full; format 2: ""
    raw: bytes = field(repr=False)
    tag: int | None = None  # format 2: head_tag() of the head before; format 1: None

    @classmethod
    def decode(cls, raw: bytes, transfer_id: str | Mapping[int, str] = "") -> Entry:
        """`transfer_id`: a format-2 entry's id, or seq -> id (ids_by_seq of its txids)."""
        fields = msgpack.unpackb(raw, raw=False)
        if len(fields) == 9:
            seq, ts_ms, txid, account, amount, after, batches, ref, prev = fields
            return cls(seq, ts_ms, txid, account, amount, after, tuple(batches), ref, prev, raw)
        seq, ts_s, account, amount, balance_after, batches, ref, tag = fields
        if not isinstance(transfer_id, str):
            transfer_id = transfer_id.get(seq, "")
        if ref is False:
            ref = id_ref(transfer_id)
        return cls(
            seq,
            ts_s * 1000,
            transfer_id,
            accounts.name_of(account),
            amount,
            balance_after,
            tuple(batches),
            ref,
            "",
            raw,
            tag,
        )

    @property
    def digest(self) -> str:
        """sha1 of the entry's bytes: which entry this is (compact.lua checks it)."""
        return hashlib.sha1(self.raw).hexdigest()

    def follows(self, head: str) -> bool:
        """Whether the entry links to the chain head before it."""
        if self.tag is None:
            return self.prev_hash == head
        return self.tag == head_tag(head)

    def chained(self, head: str) -> str:
        """The chain head after this entry, `head` the one before it."""
        if self.tag is None:
            return self.digest
        return chain_head(head, self.transfer_id, self.raw)

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
    holds: dict[str, tuple[int, int]] = field(default_factory=dict)  # order -> (coins, expires)

    @classmethod
    def from_hash(cls, raw: dict[bytes, bytes]) -> Wallet:
        """The wallet's fields of a player's one hash (layout 3: commit.lua's header)."""
        batches = {}
        for pair in raw.get(b"bt", b"").split(b","):
            if pair:
                day, coins = pair.split(b"=")
                batches[batch_date(int(day))] = int(coins)
        holds = {}
        if b"hx" in raw:
            index = msgpack.unpackb(raw[b"hx"], raw=False)
            holds = {str(order): (int(p[0]), int(p[1])) for order, p in index.items()}
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
            holds=holds,
        )

    def held_at(self, now_ms: int) -> int:
        """Coins held at now_ms: a pending hold past its expires_ms is void whether or not a
        commit has written that yet (commit.lua voids it on the player's next commit). The
        wallet's index `hx` lists the pending holds; a wallet whose index does not add
        up to `held` (holds reserved before the index) counts `held` as it stands."""
        if sum(coins for coins, _ in self.holds.values()) != self.held:
            return self.held
        return sum(coins for coins, expires_ms in self.holds.values() if expires_ms > now_ms)

    def by_batch(self) -> list[dict[str, Any]]:
        return [{"expires": d.isoformat(), "coins": c} for d, c in self.batches.items()]


class LedgerCorrupt(Exception):
    """`verify` found a mismatch; the message names the first bad entry."""


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
        if entry.tag is not None and not entry.transfer_id:
            raise LedgerCorrupt(f"{where}: no transfer id names this entry in the txids hash")
        if not entry.follows(head):
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
        head = entry.chained(head)
    return Checkpoint(seq, head, balance, {b: c for b, c in batches.items() if c}, accounts)
