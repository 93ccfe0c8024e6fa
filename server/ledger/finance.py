"""The finance report: coins issued per source, spent, expired and clawed back in a date
range, and what players hold now.

`flows()` is pure: it sums an iterator of (player id, entry) pairs. `ledger_entries()` reads
them from the live journals and, given an archive folder, the archives (one copy per
(player, seq), as verify keeps). Dates are local days of the rules' time zone; the range
is inclusive of both days: [from 00:00, day after `to` 00:00).
"""

from __future__ import annotations

import csv
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import TextIO, cast
from zoneinfo import ZoneInfo

from redis.asyncio import Redis

from server.ledger.compaction import read_archives
from server.ledger.ledger import VERIFY_PAGE_ENTRIES, Entry, Wallet
from server.store.keys import BUCKETS, PlayerKeys, players_index

HEADER = ("section", "account", "kind", "entries", "coins")
TOTAL_KINDS = ("issued", "spent", "expired", "clawed_back")


def kind_of(account: str, amount: int) -> str:
    """What a posting is, from the system account and the sign of the player's side."""
    if amount > 0:
        return "issued" if account.startswith("mint:") else "credited"
    if account == "sink:expire":
        return "expired"
    if account.startswith("sink:"):
        return "spent"  # sink:redeem (checkout), sink:mall (the coin mall), sink:draw ...
    if account == "clawback":
        return "clawed_back"
    return "reversed" if account.startswith("mint:") else "debited"


def day_range_ms(first: date, last: date, tz: ZoneInfo) -> tuple[int, int]:
    """[start, end) epoch ms of the local days first..last (DST-safe through zoneinfo)."""
    if last < first:
        raise ValueError(f"--to {last} is before --from {first}")
    start = datetime.combine(first, time(), tz)
    end = datetime.combine(last + timedelta(days=1), time(), tz)
    return int(start.timestamp() * 1000), int(end.timestamp() * 1000)


@dataclass(frozen=True, slots=True)
class Flow:
    account: str
    kind: str
    entries: int
    coins: int  # > 0: coins moved in the `kind` direction


class FlowSums:
    """Running sums per (account, kind) of the entries whose ts is in [start_ms, end_ms)."""

    def __init__(self, start_ms: int, end_ms: int) -> None:
        self.start_ms, self.end_ms = start_ms, end_ms
        self._sums: dict[tuple[str, str], list[int]] = {}

    def add(self, entry: Entry) -> None:
        if self.start_ms <= entry.ts_ms < self.end_ms:
            key = (entry.account, kind_of(entry.account, entry.amount))
            row = self._sums.setdefault(key, [0, 0])
            row[0] += 1
            row[1] += abs(entry.amount)

    def rows(self) -> list[Flow]:
        return [Flow(a, k, n, c) for (a, k), (n, c) in sorted(self._sums.items())]


def flows(entries: Iterable[tuple[str, Entry]], start_ms: int, end_ms: int) -> list[Flow]:
    """Sum the entries whose ts falls in [start_ms, end_ms) per (account, kind)."""
    sums = FlowSums(start_ms, end_ms)
    for _, entry in entries:
        sums.add(entry)
    return sums.rows()


@dataclass(frozen=True, slots=True)
class Holdings:
    players: int = 0
    outstanding: int = 0  # sum of player balances now
    held: int = 0  # of which locked by checkout holds
    debt: int = 0  # refund clawbacks not yet recovered


def write_report(out: TextIO, rows: list[Flow], now: Holdings) -> None:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    for row in rows:
        writer.writerow(("flow", row.account, row.kind, row.entries, row.coins))
    for kind in TOTAL_KINDS:
        picked = [r for r in rows if r.kind == kind]
        writer.writerow(
            ("total", "", kind, sum(r.entries for r in picked), sum(r.coins for r in picked))
        )
    writer.writerow(("now", "", "outstanding", now.players, now.outstanding))
    writer.writerow(("now", "", "held", now.players, now.held))
    writer.writerow(("now", "", "debt", now.players, now.debt))


async def _live(redis: Redis, keys: PlayerKeys) -> AsyncIterator[Entry]:
    # The flows need no transfer id: a format-2 entry is read without it.
    start = 0
    while True:
        page = cast(
            list[bytes], await redis.lrange(keys.journal, start, start + VERIFY_PAGE_ENTRIES - 1)
        )
        for raw in page:
            yield Entry.decode(raw)
        if len(page) < VERIFY_PAGE_ENTRIES:
            return
        start += VERIFY_PAGE_ENTRIES


@dataclass
class Source:
    """What ledger_entries read: the holdings now, and whether archived entries were missed."""

    now: Holdings = field(default_factory=Holdings)
    checkpoints_unread: int = 0  # players with archived entries not read (no archive folder)


async def ledger_entries(
    redis: Redis,
    archive_dir: Path | None,
    source: Source,
    buckets: list[int] | None = None,
    now_ms: int | None = None,
) -> AsyncIterator[tuple[str, Entry]]:
    """Every entry of every player: archived ones (if archive_dir) then live ones, each
    (player, seq) once; fills `source` on the way, with the coins held at `now_ms` (a hold
    past its expiry is void before a commit writes it; None: as stored)."""
    players = outstanding = held = debt = 0
    for bucket in range(BUCKETS) if buckets is None else buckets:
        members = cast(set[bytes], await redis.smembers(players_index(bucket)))
        archived = read_archives(archive_dir, bucket)[0] if archive_dir is not None else {}
        for player_id in sorted(m.decode() for m in members):
            keys = PlayerKeys(player_id)
            wallet = Wallet.from_hash(cast(dict[bytes, bytes], await redis.hgetall(keys.state)))
            players += 1
            outstanding += wallet.balance
            held += wallet.held if now_ms is None else wallet.held_at(now_ms)
            debt += wallet.debt
            ck_seq = wallet.checkpoint.seq
            if archive_dir is None and ck_seq:
                source.checkpoints_unread += 1
            for seq, entry in sorted(archived.get(player_id, {}).items()):
                if seq <= ck_seq:  # later seqs are still live: read there
                    yield player_id, entry
            async for entry in _live(redis, keys):
                yield player_id, entry
    source.now = Holdings(players, outstanding, held, debt)
