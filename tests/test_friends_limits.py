"""Friends against a real store: the limits under concurrency, the push throttle, and a
pair whose two edges (two slots) were not both written."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import httpx
import msgpack
import pytest
from redis.asyncio import Redis

from game_rules.friends import Edge
from server.clock import FrozenClock
from server.ops.components import pack
from server.store.keys import PlayerKeys
from tests.dispatch import op
from tests.live import Live, serve

PLATFORM_KEY = "platform-key-0123456789-abcdefghijklmnop"
DAY_MS = 86_400_000


async def relations(live: Live, player: str) -> int:
    listed = await op(live, player, "friends")
    assert isinstance(listed, dict)
    return len(listed["friends"]) + len(listed["incoming"]) + len(listed["outgoing"])


async def import_edges(live: Live, edges: list[dict[str, Any]]) -> dict[str, Any]:
    auth = {"Authorization": f"Bearer {PLATFORM_KEY}"}
    async with httpx.AsyncClient(timeout=30) as http:
        done = await http.post(
            f"{live.http}/v1/platform/friends", json={"edges": edges}, headers=auth
        )
    assert done.status_code == 200, done.text
    answer: dict[str, Any] = done.json()
    return answer


# --- 8: every path that adds an edge counts it, atomically ---------------------------------


async def test_friend_block_stops_at_blocks_max(live: Live) -> None:
    blocks_max = live.manor.rulebook.rules.farm.blocks_max
    answers = await asyncio.gather(
        *(op(live, "ann", "friend_block", player=f"x{n}") for n in range(blocks_max + 60))
    )
    refused = [a for a in answers if not isinstance(a, dict)]
    assert len(answers) - len(refused) == blocks_max
    assert set(refused) == {"BLOCKS_LIMIT"}
    listed = await op(live, "ann", "friends")
    assert isinstance(listed, dict)
    assert len(listed["blocked"]) == blocks_max and listed["blocks_max"] == blocks_max
    # Blocking again an id already blocked changes nothing, so it is not refused; a block
    # does not take a friend's place.
    assert (await op(live, "ann", "friend_block", player="x0"))["status"] == "blocked"
    assert (await op(live, "ann", "friend_request", player="bob"))["status"] == "outgoing"
    assert (await op(live, "ann", "friend_unblock", player="x1"))["status"] is None
    assert (await op(live, "ann", "friend_block", player="y"))["status"] == "blocked"


async def test_platform_import_to_one_hub_stops_at_friends_max(
    redis: Redis, redis_server: Any, tmp_path: Any, clock: FrozenClock
) -> None:
    async with serve(redis_server.url, tmp_path, clock, platform_key=PLATFORM_KEY) as live:
        friends_max = live.manor.rulebook.rules.farm.friends_max
        edges = [{"a": "hub", "b": f"p{n}"} for n in range(2 * friends_max)]
        answer = await import_edges(live, edges)
        assert answer["imported"] == friends_max
        assert [s["reason"] for s in answer["skipped"]] == ["FRIENDS_LIMIT"] * friends_max
        assert await relations(live, "hub") == friends_max
        assert await op(live, "hub", "friend_request", player="late") == "FRIENDS_LIMIT"
        assert await op(live, "late", "friend_request", player="hub") == "FRIENDS_LIMIT"
        # The players the hub could not take got no half of a pair.
        skipped = answer["skipped"][0]["b"]
        assert await relations(live, skipped) == 0


async def test_concurrent_requests_and_accepts_hold_friends_max(
    redis: Redis, redis_server: Any, tmp_path: Any, clock: FrozenClock
) -> None:
    async with serve(redis_server.url, tmp_path, clock, platform_key=PLATFORM_KEY) as live:
        friends_max = live.manor.rulebook.rules.farm.friends_max
        room = 5
        edges = [{"a": "hub", "b": f"p{n}"} for n in range(friends_max - room)]
        assert (await import_edges(live, edges))["imported"] == friends_max - room
        asked = await asyncio.gather(
            *(op(live, "hub", "friend_request", player=f"q{n}") for n in range(20)),
            *(op(live, f"r{n}", "friend_request", player="hub") for n in range(20)),
        )
        assert sum(isinstance(a, dict) for a in asked) == room
        assert {a for a in asked if not isinstance(a, dict)} == {"FRIENDS_LIMIT"}
        assert await relations(live, "hub") == friends_max
        listed = await op(live, "hub", "friends")
        assert isinstance(listed, dict)
        accepted = await asyncio.gather(
            *(op(live, "hub", "friend_accept", player=p) for p in listed["incoming"]),
            *(op(live, p, "friend_accept", player="hub") for p in listed["outgoing"]),
        )
        assert all(isinstance(a, dict) and a["status"] == "friends" for a in accepted)
        assert await relations(live, "hub") == friends_max


# --- 9: a request / decline loop does not flood the target's inbox ---------------------------


async def inbox_pushes(redis: Redis, player: str) -> list[dict[str, Any]]:
    frames = await redis.lrange(PlayerKeys(player).inbox, 0, -1)
    return [msgpack.unpackb(f, raw=False) for f in frames]


async def test_friend_request_push_is_throttled_per_pair(
    live: Live, redis: Redis, clock: FrozenClock
) -> None:
    from server.ops.friends import FRIEND_PUSH_WINDOW_MS

    assert (await op(live, "bob", "sign_in"))["balance"] > 0
    for _ in range(120):
        assert (await op(live, "ann", "friend_request", player="bob"))["status"] == "outgoing"
        assert (await op(live, "ann", "friend_decline", player="bob"))["status"] is None
    pushes = await inbox_pushes(redis, "bob")
    assert [p["push"] for p in pushes] == ["friend_request"]  # `balance` is never kept
    # Another player's request is another pair.
    await op(live, "cat", "friend_request", player="bob")
    assert [p["push"] for p in await inbox_pushes(redis, "bob")][-1] == "friend_request"
    assert len(await inbox_pushes(redis, "bob")) == 2
    # The edge is written every time: bob sees the request in `friends` without its push.
    await op(live, "ann", "friend_request", player="bob")
    listed = await op(live, "bob", "friends")
    assert isinstance(listed, dict) and listed["incoming"] == ["ann", "cat"]
    assert len(await inbox_pushes(redis, "bob")) == 2
    # Once the window is over, the pair may push again; an accept back is its own pair.
    await op(live, "ann", "friend_decline", player="bob")
    clock.advance(FRIEND_PUSH_WINDOW_MS)
    await op(live, "ann", "friend_request", player="bob")
    assert len(await inbox_pushes(redis, "bob")) == 3
    await op(live, "bob", "friend_accept", player="ann")
    last = (await inbox_pushes(redis, "ann"))[-1]
    assert last["push"] == "friend_request" and last["data"] == {"from": "bob", "status": "friends"}


# --- 10: the two edges of a pair live in two slots -----------------------------------------


@pytest.mark.parametrize("block_first", [False, True])
async def test_a_request_racing_a_block_never_undoes_the_block(
    live: Live, block_first: bool
) -> None:
    for n in range(10):
        ann, bob = f"ann{n}", f"bob{n}"
        calls = [
            op(live, ann, "friend_request", player=bob),
            op(live, bob, "friend_block", player=ann),
        ]
        if block_first:
            calls.reverse()
        await asyncio.gather(*calls)
        listed = await op(live, bob, "friends")
        assert isinstance(listed, dict)
        assert listed["blocked"] == [ann] and listed["incoming"] == []
        assert await op(live, ann, "friend_request", player=bob) == "BLOCKED"
        mine = await op(live, ann, "friends")
        assert isinstance(mine, dict) and mine["outgoing"] == [] and mine["friends"] == []


async def test_half_a_pair_lets_nobody_visit_or_steal(live: Live, redis: Redis) -> None:
    """Only ann's side says friends (bob's side was never written): that is no friendship."""
    await redis.hset(PlayerKeys("ann").friends, "bob", pack(Edge("friends", 1).to_wire()))
    assert await op(live, "bob", "visit", player="ann") == "NOT_FRIENDS"
    assert await op(live, "bob", "steal", player="ann", plot=0) == "NOT_FRIENDS"
    assert await op(live, "bob", "water", player="ann", plot=0) == "NOT_FRIENDS"
    listed = await op(live, "ann", "friends")
    assert isinstance(listed, dict) and listed["friends"] == []


TRANSITIONS = (
    "friend_request",
    "friend_accept",
    "friend_decline",
    "friend_remove",
    "friend_block",
    "friend_unblock",
)


async def test_a_crash_between_the_two_edge_writes_is_repaired(
    live: Live, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The process dies after writing one side of the pair, for every kind of transition
    that writes; then no transition answers INTERNAL and the next one makes the pair whole."""
    from server.ops import friends

    real = friends.write_edge
    befriend = [("friend_request", "ann", "bob"), ("friend_accept", "bob", "ann")]
    scenarios = [  # (the ops before, the op whose second write dies)
        ([], ("friend_request", "ann", "bob")),
        (befriend[:1], ("friend_accept", "bob", "ann")),
        (befriend, ("friend_remove", "ann", "bob")),
        (befriend, ("friend_block", "bob", "ann")),
    ]
    for step, (before, (name, actor, other)) in enumerate(scenarios):
        ann, bob = f"ann{step}", f"bob{step}"
        names = {"ann": ann, "bob": bob}
        for b_name, b_actor, b_other in before:
            assert isinstance(await op(live, names[b_actor], b_name, player=names[b_other]), dict)
        writes = 0

        async def dies_on_the_second_write(*args: Any, **kwargs: Any) -> str:
            nonlocal writes
            writes += 1
            if writes == 2:
                raise ConnectionError("the process died here")
            return await real(*args, **kwargs)

        with monkeypatch.context() as patch:
            patch.setattr(friends, "write_edge", dies_on_the_second_write)
            with pytest.raises(ConnectionError):
                await op(live, names[actor], name, player=names[other])
        assert writes == 2
        for transition, (who, whom) in itertools.product(TRANSITIONS, [(ann, bob), (bob, ann)]):
            for view in (await op(live, who, "friends"), await op(live, who, "visit", player=whom)):
                assert view != "INTERNAL"
            answer = await op(live, who, transition, player=whom)
            assert answer != "INTERNAL", (step, transition, who)
        # Whatever the crash left, the players can still become friends.
        await op(live, ann, "friend_unblock", player=bob)
        await op(live, bob, "friend_unblock", player=ann)
        await op(live, ann, "friend_request", player=bob)
        assert (await op(live, bob, "friend_accept", player=ann))["status"] == "friends"
        for who, whom in ((ann, bob), (bob, ann)):
            listed = await op(live, who, "friends")
            assert isinstance(listed, dict) and [f["player"] for f in listed["friends"]] == [whom]
        clock.advance(DAY_MS)
