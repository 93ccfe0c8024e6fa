"""Journal compaction: old entries go to archive files, the wallet keeps a checkpoint.

Per player, one run takes the journal's head entries older than the retention cutoff
(at most COMPACT_ENTRIES_PER_PLAYER_MAX), replays them from the wallet's checkpoint,
appends them unchanged to the archive (fsynced), then one call of server/store/lua/compact.lua
checks the journal still starts with exactly those entries, trims them and writes the new
checkpoint. It also prunes transfer ids and hold tombstones older than the idempotency
window. A crash between the archive write and the trim leaves duplicates in the archive;
readers keep one copy per (player, seq) and verify it (server/ledger/verify.py).

Archive layout: DIR/<YYYY-MM>/b<bucket>.mpk, YYYY-MM the UTC month of the entries' ts.
Each record is framed: u32 length, payload, u32 crc32(payload), u32 length (big endian);
the payload is msgpack `[player_id, entry bytes]` for a format-1 entry and
`[player_id, entry bytes, transfer id]` for a format-2 one (server/ledger/ledger.py), whose
id lives in the txids hash while the entry is hot. compact.lua rewrites each archived
format-2 id's txids value in the format-1 form, so the id keeps its posting without its
entry. The trailing length lets a writer check the last record without reading the file: a
torn tail (a crash mid-append) is cut off before the next append, so records never follow
garbage.
"""

from __future__ import annotations

import fcntl
import os
import struct
import zlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, cast

import msgpack

from server.ledger.ledger import (
    Checkpoint,
    Entry,
    LedgerCorrupt,
    Wallet,
    advance,
    ids_by_seq,
    txid_seq,
)
from server.ledger.posting import Posting
from server.store.keys import BUCKETS, PlayerKeys, players_index
from server.store.store import Arg, Store

JOURNAL_RETENTION_DAYS = 90  # entries older than this leave Redis for the archive
# Transfer ids (and hold tombstones) are kept this long after their entry: the idempotency
# window. An id older than it can be posted again, so it must exceed every caller's retry
# window (platform order rewards and refunds, checkout post/void: days, not a year).
TXID_RETENTION_DAYS = 400
COMPACT_ENTRIES_PER_PLAYER_MAX = 10_000
JOURNAL_PAGE_ENTRIES = 1000
SCAN_COUNT = 500  # SSCAN / HSCAN COUNT hint
SCAN_PAGES_MAX = 10_000  # per bucket's players set, per player's txids or holds hash
CHECKPOINT_MARKS_MAX = 32  # [seq, max ts] per archived run, merged past this
ARCHIVE_RECORD_BYTES_MAX = 64 * 1024
DAY_MS = 86_400_000

_HEAD = struct.Struct(">I")
_TAIL = struct.Struct(">II")  # crc32, length


# -- archive files ---------------------------------------------------------------------


def archive_path(archive_dir: Path, month: str, bucket: int) -> Path:
    return archive_dir / month / f"b{bucket}.mpk"


def month_of(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, UTC).strftime("%Y-%m")


def frame(payload: bytes) -> bytes:
    return _HEAD.pack(len(payload)) + payload + _TAIL.pack(zlib.crc32(payload), len(payload))


def _payloads(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(end offset, payload) of each whole record, up to the first torn or bad one."""
    at = 0
    while at + _HEAD.size <= len(data):
        (size,) = _HEAD.unpack_from(data, at)
        end = at + _HEAD.size + size + _TAIL.size
        if size > ARCHIVE_RECORD_BYTES_MAX or end > len(data):
            return
        payload = data[at + _HEAD.size : at + _HEAD.size + size]
        crc, size_again = _TAIL.unpack_from(data, end - _TAIL.size)
        if size_again != size or crc != zlib.crc32(payload):
            return
        yield end, payload
        at = end


def _tail_is_whole(handle: BinaryIO, size: int) -> bool:
    if size < _HEAD.size + _TAIL.size:
        return False
    handle.seek(size - _TAIL.size)
    crc, length = cast(tuple[int, int], _TAIL.unpack(handle.read(_TAIL.size)))
    start = size - _TAIL.size - length - _HEAD.size
    if length > ARCHIVE_RECORD_BYTES_MAX or start < 0:
        return False
    handle.seek(start)
    head_length = cast(int, _HEAD.unpack(handle.read(_HEAD.size))[0])
    return head_length == length and zlib.crc32(handle.read(length)) == crc


def record(player_id: str, entry: Entry) -> bytes:
    fields: list[str | bytes] = [player_id, entry.raw]
    if entry.tag is not None:  # format 2: the id is not in the entry's bytes
        fields.append(entry.transfer_id)
    return cast(bytes, msgpack.packb(fields))


def append_records(path: Path, records: list[tuple[str, Entry]]) -> None:
    """Append (player id, entry) records and fsync; cut a torn tail off first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    created = not path.exists()
    with path.open("a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)  # two compaction runs: one at a time
        size = handle.seek(0, os.SEEK_END)
        if size and not _tail_is_whole(handle, size):
            handle.seek(0)
            good = 0
            for end, _ in _payloads(handle.read()):
                good = end
            handle.truncate(good)
        handle.write(b"".join(frame(record(p, entry)) for p, entry in records))
        handle.flush()
        os.fsync(handle.fileno())
    if created:
        for folder in (path.parent, path.parent.parent):
            fd = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def _decode_record(payload: bytes) -> tuple[str, Entry]:
    player_id, raw, *transfer_id = msgpack.unpackb(payload, raw=False)
    return str(player_id), Entry.decode(bytes(raw), *transfer_id)


def read_archive_file(path: Path) -> Iterator[tuple[str, Entry]]:
    """(player id, entry) of every whole record, in file order."""
    for _, payload in _payloads(path.read_bytes()):
        yield _decode_record(payload)


def read_archives(archive_dir: Path, bucket: int) -> tuple[dict[str, dict[int, Entry]], list[str]]:
    """One bucket's archived entries, player -> seq -> entry, one copy per (player, seq);
    and the problems met (two different copies of one seq, a record that does not decode)."""
    out: dict[str, dict[int, Entry]] = {}
    problems: list[str] = []
    for path in sorted(archive_dir.glob(f"*/b{bucket}.mpk")):
        for _, payload in _payloads(path.read_bytes()):
            try:
                player_id, entry = _decode_record(payload)
            except (ValueError, TypeError) as exc:
                problems.append(f"{path}: a record does not decode ({exc})")
                continue
            seen = out.setdefault(player_id, {})
            if entry.seq in seen and seen[entry.seq] != entry:
                problems.append(
                    f"player {player_id} entry seq {entry.seq}: two different archived "
                    f"copies ({path})"
                )
            seen.setdefault(entry.seq, entry)
    return out, problems


# -- planning and trimming -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Plan:
    """What one compact.lua call will do for one player, as read from Redis."""

    player_id: str
    entries: list[Entry]  # the journal head to archive and trim (oldest first)
    before: Checkpoint
    after: Checkpoint
    marks_before: bytes
    marks: list[list[int]]  # [seq, max ts_ms] of archived runs whose ids are still kept
    txid_seq_max: int
    txids: list[str]
    tomb_before_ms: int
    orders: list[str]
    # (transfer id, format-1 value) of each format-2 entry archived: its id keeps its posting
    rewrites: list[tuple[str, str]] = field(default_factory=list)

    @property
    def idle(self) -> bool:
        return not (self.entries or self.txids or self.orders) and (
            msgpack.packb(self.marks) == (self.marks_before or msgpack.packb([]))
        )


async def _hscan(store: Store, key: str) -> tuple[list[tuple[str, str]], bool]:
    """(field, value) pairs of a hash, at most SCAN_PAGES_MAX pages; whether it finished."""
    out: list[tuple[str, str]] = []
    cursor: Any = 0
    for _ in range(SCAN_PAGES_MAX):
        cursor, page = await store.call("HSCAN", key, cursor, "COUNT", SCAN_COUNT)
        if isinstance(page, list):  # a reply without redis-py's pairs-to-dict callback
            page = dict(zip(page[::2], page[1::2], strict=True))
        out += [(k.decode(), v.decode()) for k, v in cast(dict[bytes, bytes], page).items()]
        if int(cursor) == 0:
            return out, True
    return out, False


async def _journal_head(store: Store, keys: PlayerKeys, cutoff_ms: int) -> list[Entry]:
    """The longest run of head entries older than cutoff_ms, at most the per-run max,
    decoded without their transfer ids (plan_player adds a format-2 entry's)."""
    out: list[Entry] = []
    while len(out) < COMPACT_ENTRIES_PER_PLAYER_MAX:
        start = len(out)
        end = min(start + JOURNAL_PAGE_ENTRIES, COMPACT_ENTRIES_PER_PLAYER_MAX) - 1
        page = cast(list[bytes], await store.call("LRANGE", keys.journal, start, end))
        for raw in page:
            entry = Entry.decode(raw)
            if entry.ts_ms >= cutoff_ms:
                return out
            out.append(entry)
        if len(page) < end - start + 1:
            break
    return out


async def plan_player(store: Store, player_id: str, now_ms: int, retention_days: int) -> Plan:
    """Read what to archive and prune; LedgerCorrupt if the head does not replay."""
    keys = PlayerKeys(player_id)
    raw = cast(dict[bytes, bytes], await store.call("HGETALL", keys.state))
    before = Wallet.from_hash(raw).checkpoint
    entries = await _journal_head(store, keys, now_ms - retention_days * DAY_MS)
    pairs: list[tuple[str, str]] | None = None
    finished = False
    if any(e.tag is not None for e in entries):
        pairs, finished = await _hscan(store, keys.txids)
        ids = ids_by_seq(pairs)
        entries = [Entry.decode(e.raw, ids) for e in entries]
    after = advance(player_id, entries, before)
    marks_before = raw.get(b"ck_marks", b"")
    marks: list[list[int]] = [list(m) for m in msgpack.unpackb(marks_before or b"\x90")]
    if entries:
        marks.append([after.seq, max(e.ts_ms for e in entries)])
    while len(marks) > CHECKPOINT_MARKS_MAX:  # later pruning of the oldest, never earlier
        first, second = marks.pop(0), marks[0]
        second[1] = max(first[1], second[1])
    tomb_before_ms = now_ms - TXID_RETENTION_DAYS * DAY_MS
    due = 0
    while due < len(marks) and marks[due][1] < tomb_before_ms:
        due += 1
    txid_seq_max = marks[due - 1][0] if due else 0
    txids: list[str] = []
    if txid_seq_max:
        if pairs is None:
            pairs, finished = await _hscan(store, keys.txids)
        for txid, value in pairs:
            seq = txid_seq(value)
            if seq is not None and seq <= txid_seq_max:
                txids.append(txid)
        if finished:
            marks = marks[due:]
    holds, _ = await _hscan(store, keys.holds)
    orders = []
    for order, value in holds:
        word, _, ms = value.partition("|")
        if word in ("posted", "voided") and ms.isdigit() and int(ms) < tomb_before_ms:
            orders.append(order)
    return Plan(
        player_id,
        entries,
        before,
        after,
        marks_before,
        marks,
        txid_seq_max,
        txids,
        tomb_before_ms,
        orders,
        [(e.transfer_id, Posting.of(e).archived_value()) for e in entries if e.tag is not None],
    )


def write_archive(archive_dir: Path, plan: Plan) -> None:
    """Append the plan's entries to their month's archive file of the bucket (fsynced)."""
    bucket = PlayerKeys(plan.player_id).bucket
    by_month: dict[str, list[tuple[str, Entry]]] = {}
    for entry in plan.entries:
        by_month.setdefault(month_of(entry.ts_ms), []).append((plan.player_id, entry))
    for month, records in sorted(by_month.items()):
        append_records(archive_path(archive_dir, month, bucket), records)


@dataclass(frozen=True, slots=True)
class Trimmed:
    status: str  # "ok", "MOVED" (plan again) or "BAD_PLAN"
    entries: int
    txids: int
    tombstones: int


async def trim(store: Store, plan: Plan) -> Trimmed:
    """The compact.lua call: only after write_archive has returned."""
    keys = PlayerKeys(plan.player_id)
    first = plan.entries[0].digest if plan.entries else ""
    last = plan.entries[-1].digest if plan.entries else ""
    args: list[Arg] = [
        len(plan.entries),
        plan.before.seq,
        plan.before.head,
        plan.marks_before,
        first,
        last,
        plan.after.seq,
        plan.after.balance,
        msgpack.packb(dict(sorted(plan.after.batches.items()))),
        msgpack.packb({a: c for a, c in sorted(plan.after.accounts.items()) if c}),
        msgpack.packb(plan.marks),
        plan.txid_seq_max,
        plan.tomb_before_ms,
        len(plan.txids),
        len(plan.orders),
        plan.after.head,
        len(plan.rewrites),
        *plan.txids,
        *plan.orders,
        *(part for pair in plan.rewrites for part in pair),
    ]
    script_keys = (keys.state, keys.journal, keys.txids, keys.holds)
    status, entries, txids, tombstones = await store.script("compact", script_keys, args)
    return Trimmed(status.decode(), int(entries), int(txids), int(tombstones))


# -- the run ----------------------------------------------------------------------------


@dataclass
class CompactReport:
    players: int = 0
    compacted: int = 0  # players whose journal was trimmed
    entries: int = 0
    txids: int = 0
    tombstones: int = 0
    moved: int = 0  # players whose journal or checkpoint moved meanwhile: next run
    problems: list[str] = field(default_factory=list)


async def bucket_players(store: Store, bucket: int) -> AsyncIterator[str]:
    """The bucket's players by SSCAN pages (at most SCAN_PAGES_MAX), each once."""
    seen: set[str] = set()
    cursor: Any = 0
    for _ in range(SCAN_PAGES_MAX):
        cursor, page = await store.call("SSCAN", players_index(bucket), cursor, "COUNT", SCAN_COUNT)
        for member in cast(list[bytes], page):
            player_id = member.decode()
            if player_id not in seen:
                seen.add(player_id)
                yield player_id
        if int(cursor) == 0:
            return


async def compact_player(
    store: Store, archive_dir: Path, player_id: str, now_ms: int, retention_days: int
) -> Trimmed | None:
    """Plan, archive, trim one player; None when there is nothing to do."""
    plan = await plan_player(store, player_id, now_ms, retention_days)
    if plan.idle:
        return None
    if plan.entries:
        write_archive(archive_dir, plan)
    return await trim(store, plan)


async def compact(
    store: Store,
    archive_dir: Path,
    now_ms: int,
    retention_days: int = JOURNAL_RETENTION_DAYS,
    buckets: list[int] | None = None,
) -> CompactReport:
    if retention_days < 1:
        raise ValueError("retention must be at least one day")
    report = CompactReport()
    for bucket in range(BUCKETS) if buckets is None else buckets:
        async for player_id in bucket_players(store, bucket):
            report.players += 1
            done: Trimmed | None = None
            for attempt in range(2):  # a run trimming meanwhile makes a read inconsistent
                try:
                    done = await compact_player(
                        store, archive_dir, player_id, now_ms, retention_days
                    )
                    break
                except LedgerCorrupt as exc:
                    if attempt:
                        report.problems.append(f"not compacted: {exc}")
            if done is None:
                continue
            if done.status == "MOVED":
                report.moved += 1
            elif done.status != "ok":
                report.problems.append(f"player {player_id}: compact.lua says {done.status}")
            else:
                report.compacted += done.entries > 0
                report.entries += done.entries
                report.txids += done.txids
                report.tombstones += done.tombstones
    return report
