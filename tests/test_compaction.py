"""Compaction against a real server: archive + checkpoint, bounded journals, crashes,
races, tampering, and the pruning of old transfer ids and hold tombstones."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import msgpack
from redis.asyncio import Redis

from server.ledger.commit import Commit, HoldOp, apply
from server.ledger.compaction import (
    DAY_MS,
    JOURNAL_RETENTION_DAYS,
    TXID_RETENTION_DAYS,
    append_records,
    archive_path,
    compact,
    month_of,
    plan_player,
    read_archive_file,
    trim,
    write_archive,
)
from server.ledger.ledger import Entry, Transfer
from server.ledger.verify import live_entries, verify
from server.store.embedded import EmbeddedStore
from server.store.keys import PlayerKeys
from server.store.store import Store, connect
from tests.conftest import client_for

NOW_MS = 1_795_000_000_000  # 2026-11-18
OLD_MS = NOW_MS - 200 * DAY_MS
BATCH = date(2027, 12, 31)


def credit(tid: str, amount: int, account: str = "mint:signin") -> Transfer:
    return Transfer(tid, "c", amount, account, BATCH)


def debit(tid: str, amount: int, account: str = "sink:redeem") -> Transfer:
    return Transfer(tid, "d", amount, account)


async def post(store: Store, player: str, transfer: Transfer, ts_ms: int) -> str:
    return (await apply(store, PlayerKeys(player), Commit(transfers=[transfer]), ts_ms)).status


async def seed(store: Store, player: str, old: int, new: int) -> None:
    """`old` entries 200 days ago (every fourth a spend), `new` ones a day ago."""
    for n in range(old):
        transfer = debit(f"s:{n}", 3) if n % 4 == 3 else credit(f"c:{n}", 10)
        assert await post(store, player, transfer, OLD_MS + n * 1000) == "ok"
    for n in range(new):
        assert await post(store, player, credit(f"n:{n}", 7), NOW_MS - DAY_MS + n) == "ok"


async def checked(redis: Redis, archives: Path | None = None) -> None:
    report = await verify(redis, archive_dir=archives)
    assert report.ok, report.problems


async def test_compact_moves_old_entries_to_the_archive_and_a_checkpoint(
    store: Store, redis: Redis, tmp_path: Path
) -> None:
    await seed(store, "ada", 40, 3)
    await seed(store, "ben", 0, 2)
    keys = PlayerKeys("ada")
    before_bytes = await redis.memory_usage(keys.journal)
    report = await compact(store, tmp_path, NOW_MS)
    assert (report.players, report.compacted, report.entries, report.problems) == (2, 1, 40, [])
    assert await redis.llen(keys.journal) == 3
    assert await redis.memory_usage(keys.journal) < before_bytes
    wallet = await redis.hgetall(keys.state)
    assert (int(wallet[b"ck_seq"]), int(wallet[b"ck_bal"])) == (40, 300 - 30)
    assert msgpack.unpackb(wallet[b"ck_batches"], strict_map_key=False) == {20271231: 270}
    assert msgpack.unpackb(wallet[b"ck_accounts"]) == {"mint:signin": -300, "sink:redeem": 30}
    first_live = (await live_entries(redis, keys))[0]
    assert first_live.seq == 41 and first_live.follows(wallet[b"ck_head"].decode())
    records = list(read_archive_file(archive_path(tmp_path, month_of(OLD_MS), keys.bucket)))
    assert [entry.seq for _, entry in records] == list(range(1, 41))
    assert records[0][1].transfer_id == "c:0"  # the archive keeps the id the entry lacks
    # An archived id keeps its posting in the format-1 form; a live one names its entry.
    assert await redis.hmget(keys.txids, "c:0", "n:0") == [b"c|10|1|1", b"41"]
    await checked(redis)
    await checked(redis, tmp_path)
    assert (await verify(redis, archive_dir=tmp_path)).entries == 45
    again = await compact(store, tmp_path, NOW_MS)  # nothing left to do
    assert (again.compacted, again.entries, again.problems) == (0, 0, [])


async def test_compact_keeps_the_journal_bounded_over_a_long_play(
    store: Store, redis: Redis, tmp_path: Path
) -> None:
    keys = PlayerKeys("long")
    start_ms = NOW_MS - 3 * 365 * DAY_MS
    lengths = []
    for week in range(0, 3 * 52, 4):  # three years, 20 entries every four weeks
        at_ms = start_ms + week * 7 * DAY_MS
        for n in range(20):
            assert await post(store, "long", credit(f"w{week}:{n}", 1), at_ms + n) == "ok"
        report = await compact(store, tmp_path, at_ms + 1000, buckets=[keys.bucket])
        assert not report.problems
        lengths.append(await redis.llen(keys.journal))
    assert max(lengths) <= 20 * (JOURNAL_RETENTION_DAYS // 28 + 1)
    txids = await redis.hlen(keys.txids)
    assert txids <= 20 * (TXID_RETENTION_DAYS // 28 + 2)  # not the 780 ever posted
    await checked(redis, tmp_path)
    assert (await verify(redis, archive_dir=tmp_path)).entries == 780


async def test_verify_names_a_tampered_archived_entry(
    store: Store, redis: Redis, tmp_path: Path
) -> None:
    await seed(store, "ada", 12, 2)
    await compact(store, tmp_path, NOW_MS)
    path = archive_path(tmp_path, month_of(OLD_MS), PlayerKeys("ada").bucket)
    records = list(read_archive_file(path))
    player, entry = records[4]
    fields = msgpack.unpackb(entry.raw)
    fields[4] += 1  # balance_after of seq 5
    records[4] = (player, Entry.decode(msgpack.packb(fields), entry.transfer_id))
    path.unlink()
    append_records(path, records)
    await checked(redis)  # the live part alone cannot see it
    report = await verify(redis, archive_dir=tmp_path)
    assert not report.ok and "player ada entry seq 5" in report.problems[0]


async def test_verify_names_a_tampered_checkpoint(
    store: Store, redis: Redis, tmp_path: Path
) -> None:
    await seed(store, "ada", 12, 2)
    await compact(store, tmp_path, NOW_MS)
    keys = PlayerKeys("ada")
    await redis.hincrby(keys.state, "ck_bal", 5)
    problems = (await verify(redis)).problems
    assert problems and "player ada entry seq 13" in problems[0]
    problems = (await verify(redis, archive_dir=tmp_path)).problems
    assert problems and "player ada checkpoint at seq 12: ck_bal" in problems[0]
    await redis.hincrby(keys.state, "ck_bal", -5)
    await redis.hset(keys.state, "ck_accounts", msgpack.packb({"mint:signin": -1}))
    problems = (await verify(redis)).problems
    assert any("account mint:signin" in p for p in problems)
    assert any("ck_accounts" in p for p in (await verify(redis, archive_dir=tmp_path)).problems)


async def test_a_crash_between_archive_and_trim_leaves_harmless_duplicates(
    store: Store, redis: Redis, tmp_path: Path
) -> None:
    await seed(store, "cy", 10, 1)
    plan = await plan_player(store, "cy", NOW_MS, JOURNAL_RETENTION_DAYS)
    write_archive(tmp_path, plan)  # ... and the process dies before the trim
    path = archive_path(tmp_path, month_of(OLD_MS), PlayerKeys("cy").bucket)
    with path.open("ab") as handle:
        handle.write(b"\x00\x00\x00\x40torn")  # and a second run died mid-append
    await checked(redis, tmp_path)  # archived copies of live entries must match them
    report = await compact(store, tmp_path, NOW_MS)
    assert (report.entries, report.problems) == (10, [])
    seqs = [entry.seq for _, entry in read_archive_file(path)]
    assert sorted(seqs) == sorted(list(range(1, 11)) * 2)  # the torn tail was cut off
    assert await redis.llen(PlayerKeys("cy").journal) == 1
    await checked(redis, tmp_path)


async def test_compact_while_the_journal_grows_and_while_another_run_trims(
    store: Store, redis: Redis, tmp_path: Path
) -> None:
    await seed(store, "ria", 8, 0)
    plan = await plan_player(store, "ria", NOW_MS, JOURNAL_RETENTION_DAYS)
    twin = await plan_player(store, "ria", NOW_MS, JOURNAL_RETENTION_DAYS)
    assert await post(store, "ria", credit("late", 4), NOW_MS) == "ok"  # meanwhile
    write_archive(tmp_path, plan)
    assert (await trim(store, plan)).status == "ok"
    write_archive(tmp_path, twin)
    before = await redis.dump(PlayerKeys("ria").state)
    assert (await trim(store, twin)).status == "MOVED"  # nothing written
    assert await redis.dump(PlayerKeys("ria").state) == before
    journal = await live_entries(redis, PlayerKeys("ria"))
    assert [e.transfer_id for e in journal] == ["late"]
    await checked(redis)
    await checked(redis, tmp_path)


async def test_pruning_keeps_recent_transfer_ids_and_tombstones(
    store: Store, redis: Redis, tmp_path: Path
) -> None:
    keys = PlayerKeys("pru")
    ancient_ms = NOW_MS - 500 * DAY_MS
    mid_ms = NOW_MS - 200 * DAY_MS
    assert await post(store, "pru", credit("ancient", 50), ancient_ms) == "ok"
    for order, at_ms in (("o-old", ancient_ms), ("o-mid", mid_ms)):
        hold = Commit(holds=[HoldOp("reserve", order, 5, at_ms + DAY_MS)])
        assert (await apply(store, keys, hold, at_ms)).status == "ok"
        done = Commit(transfers=[debit(f"pay:{order}", 5)], holds=[HoldOp("post", order, 5)])
        assert (await apply(store, keys, done, at_ms)).status == "ok"
    assert await post(store, "pru", credit("mid", 20), mid_ms) == "ok"
    assert await post(store, "pru", credit("new", 1), NOW_MS) == "ok"
    # Daily runs: the ancient entries are archived long before the mid ones.
    first = await compact(store, tmp_path, ancient_ms + 100 * DAY_MS)
    assert first.entries == 2 and first.txids == 0
    last = await compact(store, tmp_path, NOW_MS)
    assert (last.entries, last.txids, last.tombstones, last.problems) == (2, 2, 1, [])
    assert sorted(await redis.hkeys(keys.txids)) == [b"mid", b"new", b"pay:o-mid"]
    assert await redis.hkeys(keys.holds) == [b"o-mid"]
    assert await post(store, "pru", credit("mid", 20), NOW_MS) == "exists"  # archived, kept
    assert await post(store, "pru", credit("new", 1), NOW_MS) == "exists"
    repost = Commit(transfers=[debit("pay:o-mid", 5)], holds=[HoldOp("post", "o-mid", 5)])
    assert (await apply(store, keys, repost, NOW_MS)).status == "exists"
    await checked(redis, tmp_path)


def test_cli_compacts_then_verifies_with_archives(
    redis_server: EmbeddedStore, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MANOR_")}
    env |= {"MANOR_REDIS_URL": redis_server.url, "MANOR_DATA_DIR": str(tmp_path)}

    def manor(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "server.cli", *args]
        return subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=60, check=False
        )

    async def build() -> None:
        client = client_for(redis_server.url)
        await client.flushall()
        store = Store(connect(redis_server.url))
        await store.load_scripts()
        stamp_ms = int(time.time() * 1000) - 120 * DAY_MS
        for n in range(5):
            await apply(store, PlayerKeys("cli"), Commit(transfers=[credit(f"x{n}", 2)]), stamp_ms)
        await store.close()
        await client.aclose()

    asyncio.run(build())
    done = manor("ledger", "compact")
    assert done.returncode == 0, done.stderr
    assert "5 entries archived" in done.stdout
    assert (tmp_path / "archive").is_dir()
    done = manor("ledger", "verify", "--archives", str(tmp_path / "archive"))
    assert done.returncode == 0, done.stderr
    assert "1 players, 5 entries" in done.stdout
