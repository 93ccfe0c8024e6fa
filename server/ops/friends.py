"""Friends: requests, accepts, blocks, and the list with what each friend's farm offers.

A pair of players has an edge on each side, each in its own player's slot, so no one
script can write both (Redis Cluster). A transition is a small saga:

  1. read both edges and both players' counts, as they are stored;
  2. read the pair through game_rules.friends.repaired: a half-written pair (one side
     written, the other not) reads as strangers, except that a block on either side
     stands; decide with the rule;
  3. write my side, then theirs, each with friend_edge.lua: a compare-and-set against
     the edge read in 1, and the limit of the edge's kind (friends_max for friends and
     requests, blocks_max for blocks) checked against counts kept in the same step, so
     concurrent ops cannot pass a limit. If their side refuses, my side is put back.
     A CONFLICT (an edge moved since 1) starts again from 1.

A crash between the two writes leaves half a pair. Everything that reads a pair reads it
through `repaired` (visit, water and steal too, so coins never move on half a
friendship), and the next transition on the pair writes it whole, even one the rules
refuse. The compare-and-set means that no interleaving of two ops on one pair loses a
write: at worst it leaves half a pair, which reads as strangers, and a block stands.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import msgpack

from game_rules import Rules, RuleViolation
from game_rules import friends as rule
from game_rules.farm import Farm, visitor_view
from game_rules.friends import Edge, Edges
from server.auth import PLAYER_ID_PATTERN
from server.ledger.commit import Commit, apply
from server.ops.components import daily_of, pack
from server.pipeline import (
    COMMIT_ATTEMPTS_MAX,
    ArgSpec,
    Op,
    OpError,
    OpRun,
    Services,
    StrArg,
    snapshot_of_hash,
)
from server.protocol import Request
from server.settings import Settings
from server.store.keys import PlayerKeys
from server.store.store import Arg, Store

# At most one `friend_request` push of each status per (from, to) pair in this window: a
# request / decline loop must not push the target's other pushes out of their inbox. The
# edge is written every time; the target sees it in `friends` without a push.
FRIEND_PUSH_WINDOW_MS = 10 * 60_000
LIMIT_MESSAGES = {
    "FRIENDS_LIMIT": "you or this player have too many friends and requests",
    "BLOCKS_LIMIT": "you have blocked too many players",
}


def decode_edge(raw: bytes | None) -> Edge | None:
    return None if raw is None else Edge.from_wire(msgpack.unpackb(raw, raw=False))


def encode_edge(edge: Edge | None) -> bytes | None:
    return None if edge is None else pack(edge.to_wire())


@dataclass(frozen=True, slots=True)
class Counts:
    """One player's relations (friends and requests either way) and blocks. Before
    friend_edge.lua first counted a player's edges there are no counts: 0 here, so the
    rule lets the script, which counts them then, decide."""

    relations: int = 0
    blocks: int = 0

    @classmethod
    def from_reply(cls, reply: list[bytes | None]) -> Counts:
        relations, blocks = reply
        if relations is None or blocks is None:
            return cls()
        return cls(int(relations), int(blocks))


@dataclass(frozen=True, slots=True)
class Pair:
    """Both sides of a pair as stored (raw bytes, for the compare-and-set), and as the
    rules read them (`view`)."""

    me: PlayerKeys
    other: PlayerKeys
    raw_mine: bytes | None
    raw_theirs: bytes | None
    my_counts: Counts
    their_counts: Counts

    @property
    def stored(self) -> Edges:
        return Edges(decode_edge(self.raw_mine), decode_edge(self.raw_theirs))

    @property
    def view(self) -> Edges:
        return rule.repaired(*self.stored)


async def read_pair(store: Store, me: PlayerKeys, other: PlayerKeys) -> Pair:
    mine, theirs, my_counts, their_counts = await store.call_many(
        ("HGET", me.friends, other.player_id),
        ("HGET", other.friends, me.player_id),
        ("HMGET", me.friend_counts, "rel", "blk"),
        ("HMGET", other.friend_counts, "rel", "blk"),
    )
    return Pair(
        me, other, mine, theirs, Counts.from_reply(my_counts), Counts.from_reply(their_counts)
    )


class Limits(NamedTuple):
    friends_max: int
    blocks_max: int

    @classmethod
    def of(cls, rules: Rules) -> Limits:
        return cls(rules.farm.friends_max, rules.farm.blocks_max)


async def write_edge(
    store: Store,
    owner: PlayerKeys,
    peer_id: str,
    expected: bytes | None,
    edge: bytes | None,
    limits: Limits,
) -> str:
    """friend_edge.lua on the owner's slot: "ok", "CONFLICT", "FRIENDS_LIMIT", "BLOCKS_LIMIT"."""
    args: list[Arg] = [peer_id, expected or b"", edge or b"", *limits]
    status, _, _ = await store.script("friend_edge", [owner.friends, owner.friend_counts], args)
    return str(status.decode())


async def write_pair(store: Store, pair: Pair, new: Edges, limits: Limits) -> str:
    """Step 3 of the saga: my side, then theirs; the status of the first refusal, if any,
    after putting back what was written (best effort: if that fails too, the half pair
    left is repaired on the next read)."""
    stored = pair.stored
    sides = (
        (pair.me, pair.other.player_id, pair.raw_mine, stored.mine, new.mine),
        (pair.other, pair.me.player_id, pair.raw_theirs, stored.theirs, new.theirs),
    )
    written: list[tuple[PlayerKeys, str, bytes | None, bytes | None]] = []
    for owner, peer_id, raw, old, edge in sides:
        if edge == old:
            continue
        packed = encode_edge(edge)
        status = await write_edge(store, owner, peer_id, raw, packed, limits)
        if status != "ok":
            for back_owner, back_peer, back_raw, back_packed in written:
                await write_edge(store, back_owner, back_peer, back_packed, back_raw, limits)
            return status
        written.append((owner, peer_id, raw, packed))
    return "ok"


Step = Callable[[Pair, int, Rules], Edges]


async def push_to(
    services: Services, to: PlayerKeys, from_id: str, status: str, now_ms: int
) -> None:
    """A `friend_request` push, unless the pair pushed this status within the window."""
    store = services.store
    gate = to.friend_push(status, from_id)
    if not await store.script("push_gate", [gate], [now_ms, FRIEND_PUSH_WINDOW_MS]):
        return
    data = pack({"from": from_id, "status": status})
    await apply(store, to, Commit(pushes=[("friend_request", data)]), now_ms)


def transition(step: Step, push: bool = False) -> OpRun:
    """An op that reads the pair, applies `step` and writes the pair (the module's saga)."""

    async def run(
        services: Services, keys: PlayerKeys, request: Request, args: dict[str, Any]
    ) -> dict[str, Any]:
        other_id = args["player"]
        if other_id == keys.player_id:
            raise OpError("SELF_TARGET", "that is you")
        other = PlayerKeys(other_id)
        store = services.store
        rules = services.rulebook.rules
        limits = Limits.of(rules)
        for _ in range(COMMIT_ATTEMPTS_MAX):
            pair = await read_pair(store, keys, other)
            now_ms = services.clock.now_ms()
            view = pair.view
            try:
                new = step(pair, now_ms, rules)
            except RuleViolation as exc:
                if view != pair.stored:  # a refused op still mends a half pair
                    await write_pair(store, pair, view, limits)
                raise OpError(exc.code, exc.message) from None
            status = await write_pair(store, pair, new, limits)
            if status == "CONFLICT":
                continue
            if status != "ok":
                raise OpError(status, LIMIT_MESSAGES[status])
            if push and new.theirs is not None and new.theirs != view.theirs:
                await push_to(services, other, keys.player_id, new.theirs.status, now_ms)
            return {"player": other_id, "status": None if new.mine is None else new.mine.status}
        raise OpError("BUSY", "this friendship kept changing; try again")

    return run


def _request(pair: Pair, now_ms: int, rules: Rules) -> Edges:
    mine, theirs = pair.view
    counts = (pair.my_counts.relations, pair.their_counts.relations)
    return rule.request(mine, theirs, now_ms, *counts, rules)


def _accept(pair: Pair, now_ms: int, rules: Rules) -> Edges:
    return rule.accept(*pair.view, now_ms)


def _decline(pair: Pair, now_ms: int, rules: Rules) -> Edges:
    return rule.decline(*pair.view)


def _remove(pair: Pair, now_ms: int, rules: Rules) -> Edges:
    return rule.remove(*pair.view)


def _block(pair: Pair, now_ms: int, rules: Rules) -> Edges:
    return rule.block(*pair.view, now_ms, pair.my_counts.blocks, rules)


def _unblock(pair: Pair, now_ms: int, rules: Rules) -> Edges:
    return rule.unblock(*pair.view)


async def friends(
    services: Services, keys: PlayerKeys, request: Request, args: dict[str, Any]
) -> dict[str, Any]:
    """My edges read with theirs (so half pairs list as nothing), and per friend what
    their farm offers me now: all in two round trips."""
    store = services.store
    rules = services.rulebook.rules
    raw_edges, my_state = await store.call_many(("HGETALL", keys.friends), ("HGETALL", keys.state))
    edges = {k.decode(): decode_edge(v) for k, v in raw_edges.items()}
    peers = sorted(edges)
    commands: list[tuple[Arg, ...]] = [
        ("HGET", PlayerKeys(peer).friends, keys.player_id) for peer in peers
    ]
    mates = [p for p in peers if (e := edges[p]) is not None and e.status == "friends"]
    commands += [("HGET", PlayerKeys(mate).state, "farm") for mate in mates]
    got = await store.call_many(*commands) if commands else []
    theirs_of = dict(zip(peers, got[: len(peers)], strict=True))
    farm_of = dict(zip(mates, got[len(peers) :], strict=True))
    now_ms = services.clock.now_ms()
    daily = daily_of(snapshot_of_hash(my_state))
    listed: list[dict[str, Any]] = []
    others: dict[str, list[str]] = {"incoming": [], "outgoing": [], "blocked": []}
    for peer in peers:
        theirs_raw = theirs_of[peer]
        mine = rule.repaired(edges[peer], decode_edge(theirs_raw)).mine
        if mine is None:
            continue
        if mine.status != "friends":
            others[mine.status].append(peer)
            continue
        farm_raw = farm_of[peer]
        farm = (
            Farm.empty(rules.farm.plots)
            if farm_raw is None
            else Farm.from_wire(msgpack.unpackb(farm_raw, raw=False), plots=rules.farm.plots)
        )
        friendship = rule.friendship(decode_edge(theirs_raw))
        views = [
            visitor_view(crop, rules, now_ms, keys.player_id, daily, friendship)
            for crop in farm.plots
            if crop is not None
        ]
        growing = [int(str(v["ripe_at_ms"])) for v in views if v["stage"] == "growing"]
        listed.append(
            {
                "player": peer,
                "since_ms": mine.since_ms,
                "can_steal": any(v["can_steal"] for v in views),
                "can_water": any(v["can_water"] for v in views),
                "next_ripe_at_ms": min(growing, default=None),
            }
        )
    return {
        "friends": listed,
        **others,
        "friends_max": rules.farm.friends_max,
        "blocks_max": rules.farm.blocks_max,
    }


async def _import_pair(store: Store, a: str, b: str, since_ms: int, limits: Limits) -> str | None:
    """One pair of the platform import, through the same saga: None, or why it was skipped."""
    edge = Edge("friends", since_ms)
    for _ in range(COMMIT_ATTEMPTS_MAX):
        pair = await read_pair(store, PlayerKeys(a), PlayerKeys(b))
        view = pair.view
        if any(e is not None and e.status == "blocked" for e in view):
            if view != pair.stored:
                await write_pair(store, pair, view, limits)
            return "BLOCKED"
        status = await write_pair(store, pair, Edges(edge, edge), limits)
        if status != "CONFLICT":
            return None if status == "ok" else status
    return "BUSY"


async def import_edges(
    store: Store, pairs: list[tuple[str, str, int]], friends_max: int
) -> tuple[int, list[dict[str, str]]]:
    """Platform import: make each (a, b, since_ms) pair friends on both sides. A pair where
    either player blocked the other (the player's own choices outrank the social graph),
    or where one player's relations are at friends_max, is skipped; so is one that kept
    changing under the import (BUSY). The limit holds across the batch and against
    concurrent ops: each edge is counted as it is written. Returns (imported, skipped)."""
    limits = Limits(friends_max, blocks_max=0)  # an import writes no block, nor puts one back
    reasons = await asyncio.gather(*(_import_pair(store, a, b, t, limits) for a, b, t in pairs))
    skipped = [
        {"a": a, "b": b, "reason": reason}
        for (a, b, _), reason in zip(pairs, reasons, strict=True)
        if reason is not None
    ]
    return len(pairs) - len(skipped), skipped


def ops(settings: Settings) -> dict[str, Op]:
    player: dict[str, ArgSpec] = {"player": StrArg(PLAYER_ID_PATTERN)}
    return {
        "friends": Op({}, friends),
        "friend_request": Op(player, transition(_request, push=True)),
        "friend_accept": Op(player, transition(_accept, push=True)),
        "friend_decline": Op(player, transition(_decline)),
        "friend_remove": Op(player, transition(_remove)),
        "friend_block": Op(player, transition(_block)),
        "friend_unblock": Op(player, transition(_unblock)),
    }
