"""`manor draw verify`: recompute every draw of a pool's periods from the period's seed,
its frozen prize table and its log (game_rules/draw_verify.py), reading the store with a
plain redis-py client (a RedisCluster on a cluster: every read names one key).
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from game_rules.draw_verify import PeriodReport, verify_period
from server.ops import draw_stock


@dataclass(frozen=True, slots=True)
class PeriodAudit:
    pool: str
    period_id: str
    revealed: bool
    pending: int  # reservations not settled yet: their draws are not in the log
    report: PeriodReport | None  # None: no record of the period (never drawn, or expired)

    @property
    def ok(self) -> bool:
        return self.report is not None and self.report.ok


async def audit_pool(
    redis: Redis, pool: str, period_ids: list[str] | None, now_ms: int, unrevealed: bool
) -> list[PeriodAudit]:
    """The given periods (default: every period in the pool's index that was revealed,
    or every one with `unrevealed`), oldest first."""
    ids = period_ids if period_ids is not None else await draw_stock.read_periods(redis, pool)
    audits = []
    for period_id in ids:
        frozen = await draw_stock.read_record(redis, pool, period_id)
        if frozen is None:
            audits.append(PeriodAudit(pool, period_id, False, 0, None))
            continue
        revealed = frozen.period.revealed(now_ms)
        if not revealed and not unrevealed and period_ids is None:
            continue  # the current period: its seed is still secret
        records = [r async for r in draw_stock.read_log(redis, pool, period_id)]
        report = verify_period(frozen.pool, frozen.period, frozen.seed, frozen.seed_hash, records)
        pending = await draw_stock.pending_count(redis, pool, period_id)
        audits.append(PeriodAudit(pool, period_id, revealed, pending, report))
    return audits


async def audit_pools(
    redis: Redis, pools: list[str], period_id: str | None, now_ms: int
) -> tuple[list[str], list[str], bool]:
    """`manor draw verify`'s report: (lines for stdout, problems for stderr, all ok)."""
    periods = None if period_id is None else [period_id]
    audits = [a for pool in pools for a in await audit_pool(redis, pool, periods, now_ms, False)]
    out: list[str] = []
    bad: list[str] = []
    for one in audits:
        where = f"draw verify {one.pool} {one.period_id}"
        if one.report is None:
            out.append(f"{where}: no such period (never drawn, or past history_days): FAILED")
            continue
        bad += [f"BAD: {one.pool} {one.period_id}: {problem}" for problem in one.report.problems]
        secret = "" if one.revealed else " (not revealed yet)"
        out.append(
            f"{where}{secret}: {one.report.draws} draws, {one.report.problem_count} problems, "
            f"{one.pending} unsettled: {'ok' if one.ok else 'FAILED'}"
        )
    ok = all(one.ok for one in audits)
    out.append(f"draw verify: {len(audits)} periods: {'ok' if ok else 'FAILED'}")
    return out, bad, ok
