"""A draw pool's shared side, in the pool's own slot `{draw:<pool>}`: the period record
(the secret seed, its published hash and the frozen prize table), the stock reservations
and the period's draw log. server/ops/draw.py joins them to the player's commit:

  1. reserve the draw in the pool's slot (draw_reserve.lua: a stock unit if the prize has
     a limit, and a place in the log), keyed by "<nonce>:<player>";
  2. commit the player's side (coins, nonce, misses) in the player's slot;
  3. confirm the reservation: its record joins the period's log.

A crash between 1 and 3 strands nothing: the player's next draw confirms the previous
one (its nonce shows it committed), and the sweep settles every reservation past its
time: confirmed if the player's nonce moved past it, else released once the player's
state is fenced (a version bump, so a slow op's commit of it can no longer succeed).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, cast

import msgpack
from redis.asyncio import Redis

from game_rules import Rules
from game_rules.draw import (
    DrawRecord,
    DrawState,
    Period,
    pool_from_wire,
    pool_to_wire,
    seed_hash,
)
from game_rules.rules import PoolRules
from server.ledger.commit import Commit, apply
from server.ops.components import pack
from server.pipeline import COMMIT_ATTEMPTS_MAX, Services, snapshot_of_hash
from server.store.draw_keys import DrawKeys, draw_id, split_draw_id
from server.store.keys import PlayerKeys
from server.store.store import Store

log = logging.getLogger(__name__)

PERIODS_KEPT_MAX = 400  # period records listed per pool (they also expire by history_days)
SWEEP_BATCH_MAX = 200  # overdue reservations settled per pool and sweep run
LOG_PAGE_MAX = 1000  # log entries read per LRANGE
DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class PeriodRecord:
    period: Period
    seed: str  # secret until period.revealed(now_ms)
    seed_hash: str
    pool: PoolRules  # the table frozen for the period


def draw_of(fields: dict[bytes, bytes]) -> DrawState:
    raw = fields.get(b"draw")
    return DrawState() if raw is None else DrawState.from_wire(msgpack.unpackb(raw, raw=False))


def fingerprint(period_id: str, record: DrawRecord) -> str:
    """The inputs that fix a draw: a reservation with the same ones is the same draw."""
    text = f"{period_id}|{record.client_seed}|{record.nonce}|{record.misses_before}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


async def read_period(store: Store, pool: str, period: Period) -> PeriodRecord | None:
    got = await store.call("HMGET", DrawKeys(pool).period(period.id), "seed", "hash", "table")
    return None if got[0] is None else _record(period, got)


async def period_record(
    store: Store, rules: Rules, pool: PoolRules, period: Period, now_ms: int
) -> PeriodRecord:
    """The period's record, created with a fresh secret seed by the first caller (its
    hash is the commitment `draw_pool` publishes before the period's first draw)."""
    found = await read_period(store, pool.name, period)
    if found is not None:
        return found
    keys = DrawKeys(pool.name)
    seed = secrets.token_hex(32)
    keep_ms = period.end_ms + rules.draw.history_days * DAY_MS - now_ms
    table = msgpack.packb(pool_to_wire(pool))
    got = await store.script(
        "draw_period",
        [keys.period(period.id), keys.periods],
        [
            *(period.id, seed, seed_hash(seed), table),
            *(period.start_ms, period.end_ms, keep_ms, PERIODS_KEPT_MAX, now_ms),
        ],
    )
    return _record(period, got)


def _record(period: Period, got: list[bytes]) -> PeriodRecord:
    table_wire = msgpack.unpackb(got[2], raw=False)
    return PeriodRecord(period, got[0].decode(), got[1].decode(), pool_from_wire(table_wire))


@dataclass(frozen=True, slots=True)
class Reservation:
    status: str  # ok, exists, SOLD_OUT, PERIOD_FULL, RESERVED
    record: DrawRecord | None = None


async def reserve(
    store: Store,
    rules: Rules,
    frozen: PeriodRecord,
    record: DrawRecord,
    owner: str,
    stock_prize: str,
    now_ms: int,
    confirm_nonce: int | None,
) -> Reservation:
    period, pool = frozen.period, frozen.pool
    keys = DrawKeys(pool.name)
    stock = pool.prizes[stock_prize].stock if stock_prize else 0
    confirm = "" if confirm_nonce is None else draw_id(record.player, confirm_nonce)
    got = await store.script(
        "draw_reserve",
        keys.settle_keys(period.id),
        [
            period.id,
            draw_id(record.player, record.nonce),
            fingerprint(period.id, record),
            owner,
            stock_prize,
            stock,
            msgpack.packb(record.to_wire()),
            now_ms + rules.draw.reservation_timeout_ms,
            pool.draws_per_period_max,
            period.end_ms + rules.draw.history_days * DAY_MS - now_ms,
            now_ms,
            confirm,
        ],
    )
    status = got[0].decode()
    if len(got) < 2:
        return Reservation(status)
    return Reservation(status, DrawRecord.from_wire(msgpack.unpackb(got[1], raw=False)))


async def settle(
    store: Store,
    pool: str,
    period_id: str,
    record_id: str,
    action: str,
    owner: str = "",
    committed: DrawRecord | None = None,
    stock_prize: str = "",
    keep_ms: int = DAY_MS,
) -> str:
    """Confirm or release a reservation (draw_settle.lua). `keep_ms` bounds the `done`
    hash's life when this confirm creates it (the reserve sets the period's TTL after)."""
    keys = DrawKeys(pool)
    mark = "" if committed is None else fingerprint(period_id, committed)
    body = b"" if committed is None else msgpack.packb(committed.to_wire())
    got = await store.script(
        "draw_settle",
        keys.settle_keys(period_id),
        [period_id, record_id, action, owner, mark, body, stock_prize, keep_ms],
    )
    return cast(bytes, got).decode()


async def settle_overdue(services: Services, pool: str, period_id: str, record_id: str) -> str:
    """Settle a reservation whose op did not: confirm it if the player's nonce moved past
    it, else fence the player's state (a version bump) and release it."""
    player, nonce = split_draw_id(record_id)
    keys = PlayerKeys(player)
    store = services.store
    for _ in range(COMMIT_ATTEMPTS_MAX):
        snapshot = snapshot_of_hash(await store.call("HGETALL", keys.state))
        state = draw_of(snapshot.fields)
        if state.pool(pool).nonce > nonce:
            return await settle(store, pool, period_id, record_id, "confirm")
        fence = Commit(expected_ver=snapshot.ver, fields={"draw": pack(state.to_wire())})
        done = await apply(store, keys, fence, services.clock.now_ms())
        if done.status == "ok":
            return await settle(store, pool, period_id, record_id, "release")
    log.warning("draw %s %s: the player's state kept changing; next sweep", pool, record_id)
    return "busy"


async def sweep(services: Services) -> int:
    """Settle every pool's reservations past their time (SWEEP_BATCH_MAX per pool a run)."""
    now_ms = services.clock.now_ms()
    settled = 0
    for pool in services.rulebook.rules.draw.pools:
        keys = DrawKeys(pool)
        due = await services.store.call(
            "ZRANGEBYSCORE", keys.due, "-inf", now_ms, "LIMIT", 0, SWEEP_BATCH_MAX
        )
        for member in due:
            period_id, record_id = member.decode().split("|", 1)
            if await settle_overdue(services, pool, period_id, record_id) != "busy":
                settled += 1
    return settled


async def stock_taken(store: Store, pool: str, period_id: str) -> dict[str, int]:
    raw = await store.call("HGETALL", DrawKeys(pool).stock(period_id))
    return {k.decode(): int(v) for k, v in raw.items()}


async def period_list(store: Store, pool: str, limit: int) -> list[str]:
    """The newest `limit` period ids of the pool, newest first."""
    got = await store.call("ZREVRANGE", DrawKeys(pool).periods, 0, limit - 1)
    return [m.decode() for m in got]


async def period_fields(store: Store, pool: str, period_ids: list[str]) -> list[dict[str, Any]]:
    """The period records' fields, one round trip ({} for a record past history_days)."""
    if not period_ids:
        return []
    keys = DrawKeys(pool)
    got = await store.call_many(*[("HGETALL", keys.period(p)) for p in period_ids])
    return [{k.decode(): v for k, v in raw.items()} for raw in got]


# The CLI reads with a plain redis-py client (RedisCluster on a cluster), one key a command.


async def read_periods(redis: Redis, pool: str) -> list[str]:
    got = cast(list[bytes], await redis.zrange(DrawKeys(pool).periods, 0, -1))
    return [m.decode() for m in got]


async def read_record(redis: Redis, pool: str, period_id: str) -> PeriodRecord | None:
    raw = cast(dict[bytes, bytes], await redis.hgetall(DrawKeys(pool).period(period_id)))
    if not raw:
        return None
    table = pool_from_wire(msgpack.unpackb(raw[b"table"], raw=False))
    period = Period(period_id, int(raw[b"start_ms"]), int(raw[b"end_ms"]))
    return PeriodRecord(period, raw[b"seed"].decode(), raw[b"hash"].decode(), table)


async def read_log(redis: Redis, pool: str, period_id: str) -> AsyncIterator[DrawRecord]:
    key = DrawKeys(pool).log(period_id)
    start = 0
    while True:
        page = cast(list[bytes], await redis.lrange(key, start, start + LOG_PAGE_MAX - 1))
        for raw in page:
            yield DrawRecord.from_wire(msgpack.unpackb(raw, raw=False))
        if len(page) < LOG_PAGE_MAX:
            return
        start += LOG_PAGE_MAX


async def pending_count(redis: Redis, pool: str, period_id: str) -> int:
    return int(await redis.hlen(DrawKeys(pool).pending(period_id)))
