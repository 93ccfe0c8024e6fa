"""Checking a period of the lucky draw after its seed is revealed: the seed matches the
published hash, and every recorded draw is what game_rules/draw.py computes from its
inputs. `manor draw verify` runs this over the period's log; any client can do the same
from the revealed seed and its own draws.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from game_rules.draw import (
    SEED_RE,
    DrawRecord,
    Period,
    forced,
    misses_after,
    pick,
    roll,
    seed_hash,
)
from game_rules.rules import PoolRules

PROBLEMS_MAX = 100  # problems listed per period; the count covers all


@dataclass(frozen=True, slots=True)
class PeriodReport:
    draws: int
    problems: list[str]
    problem_count: int
    awarded: dict[str, int]  # prize -> draws that awarded it

    @property
    def ok(self) -> bool:
        return self.problem_count == 0


def check_draw(pool: PoolRules, server_seed: str, record: DrawRecord) -> list[str]:
    """What is wrong with one recorded draw, recomputed from its inputs."""
    problems: list[str] = []
    rolled = roll(server_seed, record.player, record.client_seed, record.nonce, pool.total_weight)
    if rolled.number != record.number:
        problems.append(f"number {record.number} recorded, {rolled.number} computed")
    is_forced = forced(pool, record.misses_before)
    if is_forced != record.forced:
        problems.append(f"forced {record.forced} recorded, {is_forced} computed")
    drawn = pool.prizes[pool.pity_prize] if is_forced else pick(pool.prizes, rolled.number)
    if drawn.name != record.drawn:
        problems.append(f"prize {record.drawn!r} recorded, {drawn.name!r} computed")
    if record.sold_out:
        if drawn.stock == 0:
            problems.append(f"sold out recorded for {drawn.name!r}, which has no stock limit")
        if record.awarded != pool.fallback:
            problems.append(f"sold out, awarded {record.awarded!r} instead of the fallback")
    elif record.awarded != drawn.name:
        problems.append(f"awarded {record.awarded!r}, drawn {drawn.name!r}")
    return problems


def verify_period(
    pool: PoolRules,
    period: Period,
    server_seed: str,
    published_hash: str,
    records: Iterable[DrawRecord],
) -> PeriodReport:
    """Every draw of a period against the revealed seed and the period's frozen table."""
    problems: list[str] = []
    count = 0

    def problem(text: str) -> None:
        nonlocal count
        count += 1
        if len(problems) < PROBLEMS_MAX:
            problems.append(text)

    if not SEED_RE.fullmatch(server_seed):
        problem("the revealed seed is not 64 lowercase hex characters")
        return PeriodReport(0, problems, count, {})
    if seed_hash(server_seed) != published_hash:
        problem(f"the revealed seed does not hash to the published {published_hash}")
    awarded: dict[str, int] = {}
    last: dict[str, DrawRecord] = {}  # player -> their previous draw in this period
    draws = 0
    for record in sorted(records, key=lambda r: (r.player, r.nonce)):
        draws += 1
        where = f"player {record.player} nonce {record.nonce}"
        if not period.start_ms <= record.ts_ms < period.end_ms:
            problem(f"{where}: drawn at {record.ts_ms}, outside the period")
        for text in check_draw(pool, server_seed, record):
            problem(f"{where}: {text}")
        before = last.get(record.player)
        if before is not None:
            if record.nonce != before.nonce + 1:
                problem(f"{where}: follows nonce {before.nonce} (a draw is missing or repeated)")
            expected = misses_after(pool, before.misses_before, before.awarded)
            if record.misses_before != expected:
                problem(f"{where}: {record.misses_before} misses recorded, {expected} computed")
        last[record.player] = record
        awarded[record.awarded] = awarded.get(record.awarded, 0) + 1
    for prize in pool.prizes.entries:
        won = awarded.get(prize.name, 0)
        if prize.stock and won > prize.stock:
            problem(f"prize {prize.name!r}: {won} awarded, stock {prize.stock}")
    return PeriodReport(draws, problems, count, awarded)
