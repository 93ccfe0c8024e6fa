"""`verify`: replay every journal against its wallet and prove the books sum to zero.

With an archive folder it also replays the archived entries from seq 1 and proves they
end exactly at each wallet's checkpoint (see compaction.py), so the chain is unbroken
from the first entry to the wallet's head.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from redis.asyncio import Redis

from server.ledger.compaction import read_archives
from server.ledger.ledger import (
    VERIFY_PAGE_ENTRIES,
    Checkpoint,
    Entry,
    LedgerCorrupt,
    Wallet,
    advance,
    batch_int,
    ids_by_seq,
)
from server.store.keys import BUCKETS, PlayerKeys, players_index, sys_accounts


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
    player_id: str, archived: dict[int, Entry], live: list[Entry], wallet: Wallet
) -> Checkpoint:
    """Replay a player's archived entries from seq 1 and prove they end at the wallet's
    checkpoint; archived copies of entries still live (a crash before the trim) must be
    byte for byte the live ones. The checkpoint to replay the live journal from."""
    ck = wallet.checkpoint
    live_by_seq = {e.seq: e for e in live}
    for seq in sorted(s for s in archived if s > ck.seq):
        if live_by_seq.get(seq) != archived[seq]:
            raise LedgerCorrupt(
                f"player {player_id} entry seq {seq}: archived copy differs from the journal "
                f"(or the journal lacks it)"
            )
    end = advance(
        player_id,
        (archived[s] for s in sorted(s for s in archived if s <= ck.seq)),
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


async def live_entries(redis: Redis, keys: PlayerKeys) -> list[Entry]:
    """The live journal, each format-2 entry named by its id from the txids hash."""
    out: list[Entry] = []
    ids = ids_by_seq(cast(dict[bytes, bytes], await redis.hgetall(keys.txids)).items())
    start = 0
    while True:
        page = cast(
            list[bytes], await redis.lrange(keys.journal, start, start + VERIFY_PAGE_ENTRIES - 1)
        )
        out.extend(Entry.decode(raw, ids) for raw in page)
        if len(page) < VERIFY_PAGE_ENTRIES:
            return out
        start += VERIFY_PAGE_ENTRIES


async def verify(
    redis: Redis, player_id: str | None = None, archive_dir: Path | None = None
) -> VerifyReport:
    """Replay journals; with no player, every player of every bucket plus the system sums.

    With `archive_dir`, each player's archived entries are replayed from seq 1 too and must
    end exactly at the wallet's checkpoint (see server/ledger/compaction.py)."""
    report = VerifyReport(whole=player_id is None)
    buckets = [PlayerKeys(player_id).bucket] if player_id else list(range(BUCKETS))
    for bucket in buckets:
        if player_id:
            players = [player_id]
        else:
            members = cast(set[bytes], await redis.smembers(players_index(bucket)))
            players = sorted(m.decode() for m in members)
        archived: dict[str, dict[int, Entry]] = {}
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
            wallet = Wallet.from_hash(cast(dict[bytes, bytes], await redis.hgetall(keys.state)))
            try:
                live = await live_entries(redis, keys)
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
