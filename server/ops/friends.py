"""Friends: requests, accepts, blocks, and the list with what each friend's farm offers.

A pair of players has an edge on each side (each in its own player's slot); every
transition rewrites both in one batch. The two writes are not one atomic step: a crash
between them leaves half a pair, which the next transition reads as strangers (a block
on either side stands; see game_rules.friends.repaired) and rewrites whole. Two players
changing the same pair at the same instant can interleave the same way: last writer wins.
The owner's side is the authority for watering and stealing on the owner's farm.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgpack

from game_rules import Rules, RuleViolation
from game_rules import friends as rule
from game_rules.farm import Farm, visitor_view
from game_rules.friends import Edge, Edges
from server.auth import PLAYER_ID_PATTERN
from server.ledger.commit import Commit, apply
from server.ops.components import daily_of, pack, snapshot_of
from server.pipeline import ArgSpec, Op, OpError, OpRun, Services, StrArg
from server.protocol import Request
from server.settings import Settings
from server.store.keys import PlayerKeys
from server.store.store import Arg, Store

Transition = Callable[[Edge | None, Edge | None, int, int, int, Rules], Edges]


def decode_edge(raw: bytes | None) -> Edge | None:
    return None if raw is None else Edge.from_wire(msgpack.unpackb(raw, raw=False))


def edge_commands(me: PlayerKeys, other: PlayerKeys, pair: Edges) -> list[tuple[Arg, ...]]:
    commands: list[tuple[Arg, ...]] = []
    for keys, peer, edge in ((me, other, pair.mine), (other, me, pair.theirs)):
        if edge is None:
            commands.append(("HDEL", keys.friends, peer.player_id))
        else:
            commands.append(("HSET", keys.friends, peer.player_id, pack(edge.to_wire())))
    return commands


async def write_pair(store: Store, me: PlayerKeys, other: PlayerKeys, pair: Edges) -> None:
    await store.call_many(*edge_commands(me, other, pair))


def transition(step: Transition, push: str | None = None) -> OpRun:
    """An op that loads both edges and both counts, applies `step`, writes both edges."""

    async def run(
        services: Services, keys: PlayerKeys, request: Request, args: dict[str, Any]
    ) -> dict[str, Any]:
        other_id = args["player"]
        if other_id == keys.player_id:
            raise OpError("SELF_TARGET", "that is you")
        other = PlayerKeys(other_id)
        store = services.store
        mine_raw, theirs_raw, my_count, their_count = await store.call_many(
            ("HGET", keys.friends, other_id),
            ("HGET", other.friends, keys.player_id),
            ("HLEN", keys.friends),
            ("HLEN", other.friends),
        )
        mine, theirs = rule.repaired(decode_edge(mine_raw), decode_edge(theirs_raw))
        now_ms = services.clock.now_ms()
        try:
            pair = step(mine, theirs, now_ms, my_count, their_count, services.rulebook.rules)
        except RuleViolation as exc:
            raise OpError(exc.code, exc.message) from None
        if pair != (mine, theirs):
            await write_pair(store, keys, other, pair)
            if push and pair.theirs is not None and pair.theirs != theirs:
                data = pack({"from": keys.player_id, "status": pair.theirs.status})
                await apply(store, other, Commit(pushes=[(push, data)]), now_ms)
        status = None if pair.mine is None else pair.mine.status
        return {"player": other_id, "status": status}

    return run


def _decline(mine: Edge | None, theirs: Edge | None, now_ms: int, *_: object) -> Edges:
    return rule.decline(mine, theirs)


def _remove(mine: Edge | None, theirs: Edge | None, now_ms: int, *_: object) -> Edges:
    return rule.remove(mine, theirs)


def _block(mine: Edge | None, theirs: Edge | None, now_ms: int, *_: object) -> Edges:
    return rule.block(mine, theirs, now_ms)


def _unblock(mine: Edge | None, theirs: Edge | None, now_ms: int, *_: object) -> Edges:
    return rule.unblock(mine, theirs)


async def friends(
    services: Services, keys: PlayerKeys, request: Request, args: dict[str, Any]
) -> dict[str, Any]:
    """My edges, and per friend what their farm offers me now: all in two round trips."""
    store = services.store
    rules = services.rulebook.rules
    raw_edges, my_state = await store.call_many(("HGETALL", keys.friends), ("HGETALL", keys.state))
    edges = {k.decode(): decode_edge(v) for k, v in raw_edges.items()}
    mates = sorted(p for p, e in edges.items() if e is not None and e.status == "friends")
    commands: list[tuple[Arg, ...]] = []
    for mate in mates:
        mate_keys = PlayerKeys(mate)
        commands += [("HGET", mate_keys.state, "farm"), ("HGET", mate_keys.friends, keys.player_id)]
    got = await store.call_many(*commands) if commands else []
    now_ms = services.clock.now_ms()
    daily = daily_of(snapshot_of(my_state))
    listed: list[dict[str, Any]] = []
    for n, mate in enumerate(mates):
        farm_raw, edge_raw = got[2 * n], got[2 * n + 1]
        farm = (
            Farm.empty(rules.farm.plots)
            if farm_raw is None
            else Farm.from_wire(msgpack.unpackb(farm_raw, raw=False), plots=rules.farm.plots)
        )
        friendship = rule.friendship(decode_edge(edge_raw))
        views = [
            visitor_view(crop, rules, now_ms, keys.player_id, daily, friendship)
            for crop in farm.plots
            if crop is not None
        ]
        growing = [int(str(v["ripe_at_ms"])) for v in views if v["stage"] == "growing"]
        edge = edges[mate]
        assert edge is not None
        listed.append(
            {
                "player": mate,
                "since_ms": edge.since_ms,
                "can_steal": any(v["can_steal"] for v in views),
                "can_water": any(v["can_water"] for v in views),
                "next_ripe_at_ms": min(growing, default=None),
            }
        )
    others = {
        status: sorted(p for p, e in edges.items() if e is not None and e.status == status)
        for status in ("incoming", "outgoing", "blocked")
    }
    return {"friends": listed, **others, "friends_max": rules.farm.friends_max}


async def import_edges(
    store: Store, pairs: list[tuple[str, str, int]], friends_max: int
) -> tuple[int, list[dict[str, str]]]:
    """Platform import: make each (a, b, since_ms) pair friends on both sides. A pair where
    either player blocked the other, or one already has friends_max relations, is skipped
    (the player's own choices outrank the social graph). Returns (imported, skipped)."""
    if not pairs:
        return 0, []
    reads: list[tuple[Arg, ...]] = []
    for a, b, _ in pairs:
        ka, kb = PlayerKeys(a), PlayerKeys(b)
        reads += [
            ("HGET", ka.friends, b),
            ("HGET", kb.friends, a),
            ("HLEN", ka.friends),
            ("HLEN", kb.friends),
        ]
    got = await store.call_many(*reads)
    commands: list[tuple[Arg, ...]] = []
    skipped: list[dict[str, str]] = []
    for n, (a, b, since_ms) in enumerate(pairs):
        mine, theirs = rule.repaired(decode_edge(got[4 * n]), decode_edge(got[4 * n + 1]))
        statuses = {e.status for e in (mine, theirs) if e is not None}
        if "blocked" in statuses:
            skipped.append({"a": a, "b": b, "reason": "BLOCKED"})
            continue
        if statuses != {"friends"} and max(got[4 * n + 2], got[4 * n + 3]) >= friends_max:
            skipped.append({"a": a, "b": b, "reason": "FRIENDS_LIMIT"})
            continue
        edge = Edge("friends", since_ms)
        commands += edge_commands(PlayerKeys(a), PlayerKeys(b), Edges(edge, edge))
    if commands:
        await store.call_many(*commands)
    return len(pairs) - len(skipped), skipped


def ops(settings: Settings) -> dict[str, Op]:
    player: dict[str, ArgSpec] = {"player": StrArg(PLAYER_ID_PATTERN)}
    return {
        "friends": Op({}, friends),
        "friend_request": Op(player, transition(rule.request, push="friend_request")),
        "friend_accept": Op(player, transition(rule.accept, push="friend_request")),
        "friend_decline": Op(player, transition(_decline)),
        "friend_remove": Op(player, transition(_remove)),
        "friend_block": Op(player, transition(_block)),
        "friend_unblock": Op(player, transition(_unblock)),
    }
