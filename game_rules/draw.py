"""The lucky draw (扭蛋机), provably fair: every result is this module's pure function of
the period's server seed, the player's id, the player's client seed and a nonce.

The algorithm (docs/points-center.md#lucky-draw states it for client authors):

1. The server seed of a period is 64 lowercase hex characters. Its commitment, published
   before the period's first draw, is `seed_hash = SHA-256(seed as ASCII)` in hex.
2. `digest(round) = HMAC-SHA256(key = seed as ASCII, message = UTF-8 of
   "<player_id>:<client_seed>:<nonce>")`; for round r >= 1 the message gets ":<r>" appended.
3. The digest is read as eight 4-byte big-endian unsigned integers, in order. With
   `total` = the sum of the pool's prize weights, `limit = 2**32 - (2**32 mod total)`; the
   first integer `v < limit` gives `number = v mod total` (no modulo bias: each number has
   the same count of v below limit). If all eight are >= limit, round r + 1 follows.
4. The drawn prize is the first prize, in the order the rules list them, whose cumulative
   weight exceeds `number`.
5. Pity: if the pool guarantees `pity_prize` after `pity_misses` misses and the player's
   misses before this draw are >= pity_misses, the drawn prize is `pity_prize` (the number
   is still computed and recorded). Misses count the draws since the last `pity_prize`.
6. A drawn prize whose stock for the period is gone is replaced by the pool's `fallback`
   prize (recorded as sold_out); the guaranteed prize and the fallback never run out.

The nonce counts the player's draws in the pool (0, 1, 2...), never reset, so no two draws
share an input. The pool's prize table is frozen with the period's seed: a rules reload
changes the next period, never the one players have a commitment for.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass, replace
from datetime import timedelta
from zoneinfo import ZoneInfo

from game_rules.calendar import business_day, day_start_ms, expiry_batch
from game_rules.draw_state import DrawRecord, DrawState, PoolState, pool_from_wire, pool_to_wire
from game_rules.errors import RuleViolation
from game_rules.ids import transfer_id
from game_rules.rules import DrawPeriod, PoolRules, PrizeCatalog, PrizeRules, Rules
from game_rules.signin import Credit

# The state and record types live in draw_state.py; importers may take them from here.
__all__ = [
    "CLIENT_SEED_RE",
    "DEFAULT_CLIENT_SEED",
    "REVEAL_DELAY_MS",
    "SEED_RE",
    "DrawOutcome",
    "DrawRecord",
    "DrawState",
    "Period",
    "PoolState",
    "Roll",
    "check_can_draw",
    "draw",
    "draw_digest",
    "forced",
    "misses_after",
    "period_of",
    "pick",
    "pool_from_wire",
    "pool_to_wire",
    "roll",
    "seed_hash",
    "set_client_seed",
]

SEED_HEX_LEN = 64
SEED_RE = re.compile(r"[0-9a-f]{64}")
CLIENT_SEED_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
CHUNK_BYTES = 4
CHUNK_RANGE = 1 << (8 * CHUNK_BYTES)
# Each integer is accepted with probability > 1/2 (total <= 2**31), so 16 rounds of 8 fail
# with probability < 2**-128: never, but the loop is still bounded.
ROUNDS_MAX = 16
# A player who never chose a client seed draws with this one. Any fixed value serves: the
# server committed to its seed first, so it cannot pick one against a seed it knows.
DEFAULT_CLIENT_SEED = "0"
REVEAL_DELAY_MS = 60_000  # a period's seed is revealed this long after the period ends


def seed_hash(server_seed: str) -> str:
    return hashlib.sha256(server_seed.encode("ascii")).hexdigest()


def draw_digest(
    server_seed: str, player_id: str, client_seed: str, nonce: int, round_: int
) -> bytes:
    message = f"{player_id}:{client_seed}:{nonce}" + (f":{round_}" if round_ else "")
    return hmac.new(server_seed.encode("ascii"), message.encode("utf-8"), hashlib.sha256).digest()


@dataclass(frozen=True, slots=True)
class Roll:
    number: int  # in [0, total)
    round: int  # the HMAC round that gave it (almost always 0)
    chunk: int  # which 4-byte integer of that round's digest
    digest_hex: str  # that round's digest


def roll(server_seed: str, player_id: str, client_seed: str, nonce: int, total: int) -> Roll:
    """An integer in [0, total), uniform, by rejection sampling over the HMAC digests."""
    if not 0 < total < CHUNK_RANGE:
        raise ValueError(f"total weight must be in 1..{CHUNK_RANGE - 1}, got {total}")
    limit = CHUNK_RANGE - CHUNK_RANGE % total
    for round_ in range(ROUNDS_MAX):
        digest = draw_digest(server_seed, player_id, client_seed, nonce, round_)
        for chunk in range(len(digest) // CHUNK_BYTES):
            value = int.from_bytes(digest[chunk * CHUNK_BYTES : (chunk + 1) * CHUNK_BYTES], "big")
            if value < limit:
                return Roll(value % total, round_, chunk, digest.hex())
    raise AssertionError("no integer below the limit in ROUNDS_MAX rounds")


def pick(prizes: PrizeCatalog, number: int) -> PrizeRules:
    """The first prize, in file order, whose cumulative weight exceeds `number`."""
    below = 0
    for prize in prizes.entries:
        below += prize.weight
        if number < below:
            return prize
    raise ValueError(f"number {number} is not below the total weight {below}")


def forced(pool: PoolRules, misses_before: int) -> bool:
    return pool.pity_misses > 0 and misses_before >= pool.pity_misses


def misses_after(pool: PoolRules, misses_before: int, awarded: str) -> int:
    if pool.pity_misses == 0 or awarded == pool.pity_prize:
        return 0
    return misses_before + 1


@dataclass(frozen=True, slots=True)
class Period:
    """A pool's period: `id` is its first local day as YYYYMMDD; [start_ms, end_ms)."""

    id: str
    start_ms: int
    end_ms: int

    def revealed(self, now_ms: int) -> bool:
        return now_ms >= self.end_ms + REVEAL_DELAY_MS


def period_of(period: DrawPeriod, tz: ZoneInfo, now_ms: int) -> Period:
    """Daily: the business day; weekly: Monday to Sunday, in the rules' time zone."""
    day = business_day(now_ms, tz)
    if period == "weekly":
        day -= timedelta(days=day.weekday())
    days = 7 if period == "weekly" else 1
    end_ms = day_start_ms(day + timedelta(days=days), tz)
    return Period(day.strftime("%Y%m%d"), day_start_ms(day, tz), end_ms)


@dataclass(frozen=True, slots=True)
class DrawOutcome:
    state: DrawState
    record: DrawRecord
    roll: Roll
    prize: PrizeRules  # awarded
    cost_id: str  # the transfer id of the cost's debit to sink:draw
    credit: Credit | None  # a coins prize, from mint:draw


def check_can_draw(
    state: DrawState, pool: PoolRules, rules: Rules, now_ms: int, balance: int
) -> None:
    """Refuse a draw past the player's daily cap or balance (before any seed is needed)."""
    day = business_day(now_ms, rules.tz)
    if state.pool(pool.name).draws_on(day) >= pool.draws_per_day_max:
        raise RuleViolation(
            "DAILY_CAP_REACHED", f"{pool.draws_per_day_max} draws a day in pool {pool.name!r}"
        )
    if balance < pool.cost_coins:
        raise RuleViolation(
            "INSUFFICIENT_FUNDS", f"a draw costs {pool.cost_coins} coins, you have {balance}"
        )


def draw(
    state: DrawState,
    pool: PoolRules,
    period: Period,
    rules: Rules,
    now_ms: int,
    player_id: str,
    balance: int,
    server_seed: str,
    sold_out: frozenset[str] = frozenset(),
) -> DrawOutcome:
    """One draw of `pool` with the period's table and seed. `sold_out` names the prizes
    whose period stock the store found gone."""
    check_can_draw(state, pool, rules, now_ms, balance)
    day = business_day(now_ms, rules.tz)
    mine = state.pool(pool.name)
    if not SEED_RE.fullmatch(server_seed):
        raise ValueError("a server seed is 64 lowercase hex characters")
    client_seed = state.client_seed or DEFAULT_CLIENT_SEED
    rolled = roll(server_seed, player_id, client_seed, mine.nonce, pool.total_weight)
    is_forced = forced(pool, mine.misses)
    drawn = pool.prizes[pool.pity_prize] if is_forced else pick(pool.prizes, rolled.number)
    gone = drawn.name in sold_out and drawn.stock > 0
    prize = pool.prizes[pool.fallback] if gone else drawn
    record = DrawRecord(
        player_id,
        mine.nonce,
        client_seed,
        now_ms,
        rolled.number,
        drawn.name,
        prize.name,
        is_forced,
        gone,
        mine.misses,
    )
    after = PoolState(
        mine.nonce + 1, misses_after(pool, mine.misses, prize.name), day, mine.draws_on(day) + 1
    )
    keep = frozenset(rules.draw.pools)
    new_state = state.with_pool(pool.name, after, keep)
    nonce = str(mine.nonce)
    credit = None
    if prize.kind == "coins":
        credit = Credit(
            transfer_id("drawprize", pool.name, player_id, nonce),
            "draw",
            prize.coins,
            expiry_batch(day, rules.expiry),
        )
    cost_id = transfer_id("draw", pool.name, player_id, nonce)
    return DrawOutcome(new_state, record, rolled, prize, cost_id, credit)


def set_client_seed(state: DrawState, client_seed: str) -> DrawState:
    """The client seed for the next draws (of every pool)."""
    if not CLIENT_SEED_RE.fullmatch(client_seed):
        raise RuleViolation("BAD_ARGS", "a client seed is 1..64 of A-Z a-z 0-9 _ -")
    return replace(state, client_seed=client_seed)
