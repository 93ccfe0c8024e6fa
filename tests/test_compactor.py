"""The scheduled compaction (server/jobs/compactor.py): the ring of buckets, and the job of
a running server archiving old entries by itself once its clock has moved."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from redis.asyncio import Redis

from server.clock import FrozenClock
from server.jobs.compactor import CURSOR_KEY, compact_next
from server.ledger.commit import Commit, apply
from server.ledger.compaction import DAY_MS, JOURNAL_RETENTION_DAYS
from server.ledger.verify import verify
from server.store.cluster import EmbeddedCluster
from server.store.embedded import EmbeddedStore
from server.store.keys import BUCKETS, PlayerKeys
from server.store.store import Store
from tests.live import serve
from tests.test_compaction import NOW_MS, credit

JOB_WAIT_S_MAX = 15.0
POLL_S = 0.2


async def test_compact_next_walks_the_ring_a_few_buckets_a_run(
    store: Store, redis: Redis, tmp_path: Path
) -> None:
    old_ms = NOW_MS - (JOURNAL_RETENTION_DAYS + 10) * DAY_MS
    keys = PlayerKeys("ringo")
    for n in range(5):
        commit = Commit(transfers=[credit(f"c:{n}", 10)])
        assert (await apply(store, keys, commit, old_ms + n)).status == "ok"
    await redis.set(CURSOR_KEY, keys.bucket + 1)  # the ring is just past the player
    report = await compact_next(store, tmp_path, NOW_MS, buckets_per_run=BUCKETS - 1)
    assert report.entries == 0  # every bucket but the player's
    assert await redis.llen(keys.journal) == 5
    report = await compact_next(store, tmp_path, NOW_MS, buckets_per_run=1)
    assert (report.players, report.entries) == (1, 5)
    assert await redis.llen(keys.journal) == 0
    assert int(await redis.get(CURSOR_KEY)) == keys.bucket + 1 + BUCKETS
    assert (await verify(redis, archive_dir=tmp_path)).ok


async def test_a_running_server_compacts_by_itself_once_its_clock_moves(
    redis: Redis, redis_server: EmbeddedStore | EmbeddedCluster, tmp_path: Path
) -> None:
    clock = FrozenClock(NOW_MS)
    async with serve(
        redis_server.url,
        tmp_path,
        clock,
        jobs=True,
        compact_every_s=1,
        compact_buckets_per_run=BUCKETS,
    ) as live:
        client = await live.connect("sleepy")
        assert (await client.call("sign_in"))["coins"] > 0
        await client.close()
        keys = PlayerKeys("sleepy")
        assert await redis.llen(keys.journal) == 1
        clock.advance((JOURNAL_RETENTION_DAYS + 1) * DAY_MS)
        deadline = time.monotonic() + JOB_WAIT_S_MAX
        for _ in range(int(JOB_WAIT_S_MAX / POLL_S)):
            if not await redis.llen(keys.journal) or time.monotonic() > deadline:
                break
            await asyncio.sleep(POLL_S)
        assert await redis.llen(keys.journal) == 0
        assert list((tmp_path / "archive").rglob("*.mpk"))
        report = await verify(redis, archive_dir=tmp_path / "archive")
        assert report.ok and report.entries == 1
