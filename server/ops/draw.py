"""The lucky draw's ops: `draw_pool` (the pool, the period's seed hash, the player's
standing), `draw_seed` (the player's client seed), `draw` (one draw) and `draw_seeds`
(the revealed seeds of past periods). The result of a draw is game_rules/draw.py's pure
function of the period's seed, the player, the client seed and the nonce; the pool's
shared side (seed, stock, log) lives in server/ops/draw_stock.py.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import msgpack

from game_rules import RuleViolation, business_day
from game_rules.draw import (
    CLIENT_SEED_RE,
    DEFAULT_CLIENT_SEED,
    DrawOutcome,
    DrawRecord,
    DrawState,
    Period,
    check_can_draw,
    draw,
    period_of,
    set_client_seed,
)
from game_rules.rulefile.catalog import NAME_RE
from game_rules.rules import PoolRules, Rules
from server.ledger.commit import Commit, apply, reply_body
from server.ledger.ledger import Transfer
from server.ops import draw_stock
from server.ops.components import pack
from server.pipeline import (
    COMMIT_ATTEMPTS_MAX,
    Change,
    IntArg,
    Op,
    OpError,
    Services,
    Snapshot,
    StrArg,
    load,
    replay,
    reply_key,
    rule_op,
)
from server.protocol import Request
from server.settings import Settings
from server.store.draw_keys import DrawKeys, draw_id
from server.store.keys import PlayerKeys

SEEDS_PAGE_MAX = 30  # past periods a `draw_seeds` call lists
SEEDS_PAGE_DEFAULT = 7
RESERVED_WAIT_S = 0.05  # before reloading when another op holds the same draw


def _pool(services: Services, name: str | None) -> PoolRules:
    pools = services.rulebook.rules.draw.pools
    if name is None and pools:
        return pools.entries[0]
    if name is None or name not in pools:
        raise OpError("UNKNOWN_POOL", f"no draw pool {name!r}; pools: {', '.join(pools)}")
    return pools[name]


async def draw_pool(
    services: Services, keys: PlayerKeys, request: Request, args: dict[str, Any]
) -> dict[str, Any]:
    rules = services.rulebook.rules
    now_ms = services.clock.now_ms()
    current = _pool(services, args["pool"])
    period = period_of(current.period, rules.tz, now_ms)
    frozen = await draw_stock.period_record(services.store, rules, current, period, now_ms)
    state_raw, taken = await services.store.call_many(
        ("HGETALL", keys.state), ("HGETALL", DrawKeys(current.name).stock(period.id))
    )
    pool = frozen.pool
    state = draw_stock.draw_of(state_raw)
    mine = state.pool(pool.name)
    taken = {k.decode(): int(v) for k, v in taken.items()}
    return {
        "pool": pool.name,
        "pools": list(rules.draw.pools),
        "cost_coins": pool.cost_coins,
        "period": _period_view(period),
        "seed_hash": frozen.seed_hash,
        "total_weight": pool.total_weight,
        "prizes": [
            {
                "name": p.name,
                "kind": p.kind,
                "weight": p.weight,
                "coins": p.coins,
                "stock": p.stock,
                "stock_left": max(0, p.stock - taken.get(p.name, 0)) if p.stock else None,
            }
            for p in pool.prizes.entries
        ],
        "pity_misses": pool.pity_misses,
        "pity_prize": pool.pity_prize or None,
        "fallback": pool.fallback,
        "draws_per_day_max": pool.draws_per_day_max,
        "draws_today": mine.draws_on(business_day(now_ms, rules.tz)),
        "nonce": mine.nonce,
        "client_seed": state.client_seed or None,
        "client_seed_used": state.client_seed or DEFAULT_CLIENT_SEED,
        "misses": mine.misses,
    }


def draw_panel(snapshot: Snapshot, rules: Rules, now_ms: int) -> dict[str, Any]:
    """The player's draw standing for the operators' lookup (their draws themselves are
    in the journal, transfer ids `draw:<pool>:<player>:<nonce>`, and the pool's log)."""
    state = draw_stock.draw_of(snapshot.fields)
    today = business_day(now_ms, rules.tz)
    return {
        "client_seed": state.client_seed or None,
        "pools": {
            name: {"nonce": s.nonce, "misses": s.misses, "draws_today": s.draws_on(today)}
            for name, s in state.pools
        },
    }


def _period_view(period: Period) -> dict[str, Any]:
    return {"id": period.id, "start_ms": period.start_ms, "end_ms": period.end_ms}


def decide_draw_seed(
    services: Services, keys: PlayerKeys, snapshot: Snapshot, args: dict[str, Any], now_ms: int
) -> Change:
    state = set_client_seed(draw_stock.draw_of(snapshot.fields), args["client_seed"])
    commit = Commit(fields={"draw": pack(state.to_wire())})
    return Change({"client_seed": state.client_seed}, commit)


def _result(frozen: draw_stock.PeriodRecord, outcome: DrawOutcome) -> dict[str, Any]:
    record, prize = outcome.record, outcome.prize
    return {
        "pool": frozen.pool.name,
        "period": _period_view(frozen.period),
        "seed_hash": frozen.seed_hash,
        "player": record.player,
        "client_seed": record.client_seed,
        "nonce": record.nonce,
        "digest": outcome.roll.digest_hex,
        "round": outcome.roll.round,
        "chunk": outcome.roll.chunk,
        "number": record.number,
        "total_weight": frozen.pool.total_weight,
        "drawn": record.drawn,
        "forced": record.forced,
        "sold_out": record.sold_out,
        "prize": {"name": prize.name, "kind": prize.kind, "coins": prize.coins},
        "misses_before": record.misses_before,
        "misses": outcome.state.pool(frozen.pool.name).misses,
        "cost_coins": frozen.pool.cost_coins,
        "drawn_at_ms": record.ts_ms,
    }


async def draw_op(
    services: Services, keys: PlayerKeys, request: Request, args: dict[str, Any]
) -> dict[str, Any]:
    """Reserve in the pool's slot, commit in the player's, confirm (draw_stock's steps)."""
    store, rules = services.store, services.rulebook.rules
    current = _pool(services, args["pool"])
    reply = reply_key(keys, request)
    owner = secrets.token_hex(8)
    for _ in range(COMMIT_ATTEMPTS_MAX):
        snapshot, cached = await load(store, keys, reply)
        if cached:
            return replay(request, cached)
        now_ms = services.clock.now_ms()
        period = period_of(current.period, rules.tz, now_ms)
        state = draw_stock.draw_of(snapshot.fields)
        frozen = await draw_stock.read_period(store, current.name, period)
        if frozen is None:
            try:  # a refused draw writes nothing, not even the period's record
                check_can_draw(state, current, rules, now_ms, snapshot.balance)
            except RuleViolation as exc:
                raise OpError(exc.code, exc.message) from None
            frozen = await draw_stock.period_record(store, rules, current, period, now_ms)
        nonce = state.pool(frozen.pool.name).nonce
        sold_out: frozenset[str] = frozenset()
        for _ in range(2):  # a sold-out prize once: then the fallback, which never runs out
            try:
                outcome = draw(
                    state,
                    frozen.pool,
                    period,
                    rules,
                    now_ms,
                    keys.player_id,
                    snapshot.balance,
                    frozen.seed,
                    sold_out,
                )
            except RuleViolation as exc:
                raise OpError(exc.code, exc.message) from None
            stock_prize = outcome.prize.name if outcome.prize.stock else ""
            held = await draw_stock.reserve(
                store,
                rules,
                frozen,
                outcome.record,
                owner,
                stock_prize,
                now_ms,
                nonce - 1 if nonce else None,
            )
            if held.status != "SOLD_OUT":
                break
            sold_out = frozenset({outcome.record.drawn})
        if held.status == "PERIOD_FULL":
            raise OpError("DRAW_PERIOD_FULL", "this pool took all the draws of its period")
        if held.status == "RESERVED" or held.record is None:
            await asyncio.sleep(RESERVED_WAIT_S)  # another op holds this draw: reload
            continue
        if held.record != outcome.record:
            # The reservation made earlier (a retry, another socket): that record is the draw.
            outcome = _as_recorded(held.record, state, frozen, rules, snapshot)
        change = _commit(frozen, outcome)
        body = reply_body(request.op, change.result)
        assert change.commit is not None
        commit = change.commit._replace(
            expected_ver=snapshot.ver,
            reply_body=body,
            reply_ttl_s=services.settings.reply_retention_s,
            asked_by_socket=True,  # the reply carries the balance (done.answer)
        )
        done = await apply(store, keys, commit, now_ms, reply_key=reply)
        record_id = draw_id(keys.player_id, outcome.record.nonce)
        if done.status in ("ok", "exists"):
            committed_prize = outcome.prize.name if outcome.prize.stock else ""
            await draw_stock.settle(
                store,
                frozen.pool.name,
                period.id,
                record_id,
                "confirm",
                committed=outcome.record,
                stock_prize=committed_prize,
            )
            return done.answer(change.result)
        if done.status != "CONFLICT":
            await draw_stock.settle(store, frozen.pool.name, period.id, record_id, "release", owner)
            raise OpError(done.status, f"the ledger refused the draw: {done.status}")
    raise OpError("BUSY", "the player's state kept changing; try again")


def _as_recorded(
    recorded: DrawRecord,
    state: DrawState,
    frozen: draw_stock.PeriodRecord,
    rules: Rules,
    snapshot: Snapshot,
) -> DrawOutcome:
    """The outcome of the draw as the reservation recorded it (same inputs, so the same
    prize unless the stock ran out then; its time is the reservation's)."""
    sold_out = frozenset({recorded.drawn}) if recorded.sold_out else frozenset()
    again = draw(
        state,
        frozen.pool,
        frozen.period,
        rules,
        recorded.ts_ms,
        recorded.player,
        snapshot.balance,
        frozen.seed,
        sold_out,
    )
    if again.record != recorded:
        raise OpError("BUSY", "the draw's reservation does not match; try again")
    return again


def _commit(frozen: draw_stock.PeriodRecord, outcome: DrawOutcome) -> Change:
    pool = frozen.pool
    ref = f"draw {pool.name} {frozen.period.id} nonce {outcome.record.nonce}"
    transfers = [Transfer(outcome.cost_id, "d", pool.cost_coins, "sink:draw", ref=ref)]
    credit = outcome.credit
    if credit is not None:
        transfers.append(
            Transfer(
                credit.transfer_id,
                "c",
                credit.amount,
                f"mint:{credit.source}",
                credit.batch,
                ref=f"{ref}: {outcome.prize.name}",
            )
        )
    fields = {"draw": pack(outcome.state.to_wire())}
    return Change(_result(frozen, outcome), Commit(fields=fields, transfers=transfers))


async def draw_seeds(
    services: Services, keys: PlayerKeys, request: Request, args: dict[str, Any]
) -> dict[str, Any]:
    """The pool's recent periods, newest first: the seed of each one that ended (and was
    revealed), the hash only of the current one."""
    store, now_ms = services.store, services.clock.now_ms()
    pool = _pool(services, args["pool"])
    periods = []
    ids = await draw_stock.period_list(store, pool.name, args["limit"])
    for period_id, fields in zip(
        ids, await draw_stock.period_fields(store, pool.name, ids), strict=True
    ):
        if not fields:
            continue  # expired after history_days
        period = Period(period_id, int(fields["start_ms"]), int(fields["end_ms"]))
        revealed = period.revealed(now_ms)
        periods.append(
            {
                **_period_view(period),
                "seed_hash": fields["hash"].decode(),
                "seed": fields["seed"].decode() if revealed else None,
                "revealed": revealed,
                "table": msgpack.unpackb(fields["table"], raw=False),
            }
        )
    return {"pool": pool.name, "periods": periods}


def ops(settings: Settings) -> dict[str, Op]:
    pool = StrArg(NAME_RE, required=False)
    return {
        "draw_pool": Op({"pool": pool}, draw_pool),
        "draw_seed": Op({"client_seed": StrArg(CLIENT_SEED_RE)}, rule_op(decide_draw_seed)),
        "draw": Op({"pool": pool}, draw_op),
        "draw_seeds": Op(
            {"pool": pool, "limit": IntArg(1, SEEDS_PAGE_MAX, SEEDS_PAGE_DEFAULT)}, draw_seeds
        ),
    }
