"""On a friend's farm: look (visit), water, steal.

Water and steal cross two players, so two hash slots. In order:
  A. on my slot, reserve my daily allowance (version-checked, so my caps are exact even
     with several sockets);
  B. on the owner's slot, change the crop and append a credit order to the owner's
     bucket outbox (version-checked; pushes `watered`/`stolen` to the owner);
  C. on my slot, credit me by the order's transfer id (idempotent) and drop the order.
If B is refused, A is given back. If the process dies after B, the outbox relay does C.
Invariant: coins ordered from crops = coins credited + coins in flight (outbox.audit).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

from game_rules import Credit, Rules, RuleViolation
from game_rules.farm import Daily, Farm, Friendship, steal, visitor_view, water
from game_rules.friends import friendship, repaired
from server.auth import PLAYER_ID_PATTERN
from server.ledger import outbox
from server.ledger.commit import Commit, apply, reply_body
from server.ops.components import daily_of, farm_of, pack
from server.ops.farm import PLOT_INDEX_MAX, note_theft
from server.ops.friends import decode_edge
from server.pipeline import (
    COMMIT_ATTEMPTS_MAX,
    ArgSpec,
    IntArg,
    Op,
    OpError,
    OpRun,
    Services,
    StrArg,
    replay,
    reply_key,
    snapshot_of_hash,
)
from server.protocol import Request
from server.settings import Settings
from server.store.keys import PlayerKeys
from server.store.timers import member

log = logging.getLogger(__name__)


def bond_of(owner_edge: bytes | None, my_edge: bytes | None) -> Friendship | None:
    """The friendship the owner's side records, if the pair reads as friends: half a pair
    (one side written, see server/ops/friends.py) is no friendship."""
    return friendship(repaired(decode_edge(owner_edge), decode_edge(my_edge)).mine)


async def visit(
    services: Services, keys: PlayerKeys, request: Request, args: dict[str, Any]
) -> dict[str, Any]:
    owner = PlayerKeys(args["player"])
    if owner.player_id == keys.player_id:
        raise OpError("SELF_TARGET", "that is your own farm: use the farm op")
    rules = services.rulebook.rules
    owner_state, edge_raw, my_edge_raw, my_state = await services.store.call_many(
        ("HGETALL", owner.state),
        ("HGET", owner.friends, keys.player_id),
        ("HGET", keys.friends, owner.player_id),
        ("HGETALL", keys.state),
    )
    bond = bond_of(edge_raw, my_edge_raw)
    if bond is None:
        raise OpError("NOT_FRIENDS", "only friends can visit")
    now_ms = services.clock.now_ms()
    farm = farm_of(snapshot_of_hash(owner_state), rules)
    daily = daily_of(snapshot_of_hash(my_state))
    plots = [
        {"plot": i, "empty": True}
        if crop is None
        else {"plot": i, **visitor_view(crop, rules, now_ms, keys.player_id, daily, bond)}
        for i, crop in enumerate(farm.plots)
    ]
    return {"player": owner.player_id, "now_ms": now_ms, "plots": plots}


def _unreserve(now: Daily, before: Daily, after: Daily) -> Daily:
    """My allowance with one reservation (after - before, on after's day) given back."""
    if now.day != after.day:
        return now  # the day turned: the reservation lapsed with it
    # The first action of a day reserves from fresh counts, not from yesterday's: measured
    # against `before` as stored, the reservation would be negative and give back too much.
    start = before if after.day is None else before.on(after.day)
    return replace(
        now,
        water_paid=max(0, now.water_paid - (after.water_paid - start.water_paid)),
        steal_count=max(0, now.steal_count - (after.steal_count - start.steal_count)),
        steal_coins=max(0, now.steal_coins - (after.steal_coins - start.steal_coins)),
    )


async def _give_back(
    services: Services, keys: PlayerKeys, before: Daily, after: Daily, now_ms: int
) -> None:
    for _ in range(COMMIT_ATTEMPTS_MAX):
        state = await services.store.call("HGETALL", keys.state)
        snapshot = snapshot_of_hash(state)
        daily = _unreserve(daily_of(snapshot), before, after)
        commit = Commit(expected_ver=snapshot.ver, fields={"daily": pack(daily.to_wire())})
        if (await apply(services.store, keys, commit, now_ms)).status != "CONFLICT":
            return
    log.warning("player %s: a daily reservation could not be given back", keys.player_id)


@dataclass(frozen=True, slots=True)
class Plan:
    """What a watering or a theft decided, before any write."""

    farm: Farm
    daily: Daily
    coins: int
    credit: Credit | None
    push: dict[str, Any]
    result: dict[str, Any]
    timers: list[tuple[str, int]]


def _decide(
    kind: str,
    farm: Farm,
    rules: Rules,
    now_ms: int,
    plot: int,
    owner: str,
    me: str,
    daily: Daily,
    bond: Friendship | None,
) -> Plan:
    if kind == "steal":
        out = steal(farm, rules, now_ms, plot, owner, me, daily, bond)
        push = {"by": me, "plot": plot, "coins": out.coins}
        result = {"player": owner, "plot": plot, "coins": out.coins}
        return Plan(out.farm, out.daily, out.coins, out.credit, push, result, [])
    wet = water(farm, rules, now_ms, plot, owner, me, daily, bond)
    ripe_at_ms = wet.crop.ripe_at_ms
    push = {"by": me, "plot": plot, "advanced_ms": wet.advanced_ms, "ripe_at_ms": ripe_at_ms}
    result = {
        "player": owner,
        "plot": plot,
        "coins": wet.reward_coins,
        "advanced_ms": wet.advanced_ms,
        "ripe_at_ms": ripe_at_ms,
    }
    ripe = member("ripe", owner, plot, wet.crop.cycle)
    return Plan(
        wet.farm, wet.daily, wet.reward_coins, wet.credit, push, result, [(ripe, ripe_at_ms)]
    )


def raid(kind: str) -> OpRun:
    """The op for `water` or `steal` (see the module docstring for the three steps)."""

    async def run(
        services: Services, keys: PlayerKeys, request: Request, args: dict[str, Any]
    ) -> dict[str, Any]:
        owner = PlayerKeys(args["player"])
        plot: int = args["plot"]
        me = keys.player_id
        store = services.store
        rules = services.rulebook.rules
        reply = reply_key(keys, request)
        for _ in range(COMMIT_ATTEMPTS_MAX):
            my_state, owner_state, edge_raw, my_edge_raw, cached = await store.call_many(
                ("HGETALL", keys.state),
                ("HGETALL", owner.state),
                ("HGET", owner.friends, me),
                ("HGET", keys.friends, owner.player_id),
                ("GET", reply),
            )
            if cached:
                return replay(request, cached)
            mine, theirs = snapshot_of_hash(my_state), snapshot_of_hash(owner_state)
            before = daily_of(mine)
            farm: Farm = farm_of(theirs, rules)
            bond = bond_of(edge_raw, my_edge_raw)
            now_ms = services.clock.now_ms()
            try:
                plan = _decide(kind, farm, rules, now_ms, plot, owner.player_id, me, before, bond)
            except RuleViolation as exc:
                raise OpError(exc.code, exc.message) from None
            after, credit = plan.daily, plan.credit
            # A: reserve my allowance.
            if after != before:
                reserve = Commit(expected_ver=mine.ver, fields={"daily": pack(after.to_wire())})
                if (await apply(store, keys, reserve, now_ms)).status == "CONFLICT":
                    continue
            # B: the owner's crop, the credit order, the push.
            order = (
                None
                if credit is None
                else outbox.Order(
                    credit.transfer_id,
                    me,
                    credit.amount,
                    credit.source,
                    credit.batch,
                    now_ms,
                    ref=f"{kind} {owner.player_id} plot {plot}",
                )
            )
            pushed = "stolen" if kind == "steal" else "watered"
            take = Commit(
                expected_ver=theirs.ver,
                fields={"farm": pack(plan.farm.to_wire())},
                pushes=[(pushed, pack(plan.push))],
                orders=[] if order is None else [order.commit_entry()],
                timers=plan.timers,
            )
            taken = await apply(store, owner, take, now_ms)
            if taken.status != "ok":
                if after != before:
                    await _give_back(services, keys, before, after, now_ms)
                if taken.status == "CONFLICT":
                    continue
                raise OpError(taken.status, f"the owner's farm refused: {taken.status}")
            if kind == "steal" and taken.receivers and taken.receivers[0] == 0:
                await note_theft(services, owner.player_id, me, plan.coins, now_ms)
            # C: credit me (idempotent) and remember the reply for a retried request id.
            result = plan.result
            body = reply_body(request.op, result)
            if order is None:
                done = await apply(
                    store,
                    keys,
                    Commit(reply_body=body, reply_ttl_s=services.settings.reply_retention_s),
                    now_ms,
                    reply_key=reply,
                )
            else:
                done = await outbox.complete(
                    store,
                    owner.bucket,
                    order.encode(),
                    now_ms,
                    reply_key=reply,
                    reply_body=body,
                    asked_by_socket=True,  # the reply carries the balance (done.answer)
                )
            return done.answer(result)
        raise OpError("BUSY", "the farm kept changing; try again")

    return run


def ops(settings: Settings) -> dict[str, Op]:
    target: dict[str, ArgSpec] = {
        "player": StrArg(PLAYER_ID_PATTERN),
        "plot": IntArg(0, PLOT_INDEX_MAX, required=True),
    }
    return {
        "visit": Op({"player": StrArg(PLAYER_ID_PATTERN)}, visit),
        "water": Op(target, raid("water")),
        "steal": Op(target, raid("steal")),
    }
