"""The scheduled compaction: a few buckets a run, round the ring of buckets, so that every
player's hot journal stays bounded without an operator remembering `manor ledger compact`.

The cursor is a Redis counter taken with INCRBY, so two runs (a lease handed over mid-run,
or the CLI beside the job) take different buckets; compaction itself is safe to race
(compact.lua checks the journal head it trims). Time is the services' clock, so on the dev
clock old entries leave as soon as the clock has moved past the retention.

The archive folder is the process's `data_dir/archive`: with server processes on several
machines, point MANOR_DATA_DIR's archive at a shared volume or let one process run the jobs
(MANOR_JOBS=0 on the others) — `manor ledger verify` needs every archive file.
"""

from __future__ import annotations

import logging
from pathlib import Path

from server.ledger.compaction import JOURNAL_RETENTION_DAYS, CompactReport, compact
from server.store.keys import BUCKETS
from server.store.store import Store

log = logging.getLogger(__name__)

CURSOR_KEY = "m:{jobs}:compact_cursor"


async def compact_next(
    store: Store,
    archive_dir: Path,
    now_ms: int,
    buckets_per_run: int,
    retention_days: int = JOURNAL_RETENTION_DAYS,
) -> CompactReport:
    """Compact the next `buckets_per_run` buckets of the ring."""
    if not 1 <= buckets_per_run <= BUCKETS:
        raise ValueError(f"buckets_per_run must be 1..{BUCKETS}")
    end = int(await store.call("INCRBY", CURSOR_KEY, buckets_per_run))
    buckets = [(end - buckets_per_run + n) % BUCKETS for n in range(buckets_per_run)]
    report = await compact(store, archive_dir, now_ms, retention_days, buckets)
    if report.entries or report.txids or report.tombstones:
        log.info(
            "compaction of buckets %d..%d: %d players, %d entries archived, "
            "%d transfer ids and %d tombstones pruned",
            buckets[0],
            buckets[-1],
            report.players,
            report.entries,
            report.txids,
            report.tombstones,
        )
    for problem in report.problems:
        log.error("compaction: %s", problem)
    return report
