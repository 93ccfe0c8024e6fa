"""End to end: the farm, friends, watering and stealing over real sockets and a real store."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from server.client import ManorClient, ManorError
from server.clock import FrozenClock
from server.ledger.outbox import audit
from server.ledger.verify import verify
from server.store.keys import PlayerKeys
from tests.conftest import calls
from tests.live import Live
from tests.trigger_streams import read_triggers

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
PLATFORM_KEY = "platform-key-0123456789-abcdefghijklmnop"


async def befriend(live: Live, clock: FrozenClock, *pairs: tuple[str, str]) -> None:
    """Friends for two days already, through the players' own requests."""
    for a, b in pairs:
        first, second = await live.connect(a), await live.connect(b)
        await first.call("friend_request", player=b)
        await second.call("friend_accept", player=a)
        await first.close()
        await second.close()
    clock.advance(2 * DAY_MS)


async def error_code(client: ManorClient, op: str, **args: Any) -> str:
    with pytest.raises(ManorError) as err:
        await client.call(op, **args)
    return err.value.code


async def triggers(redis: Redis) -> list[dict[str, str]]:
    entries = await read_triggers(redis)
    return [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in entries]


async def test_plant_grow_and_harvest_once(live: Live, redis: Redis, clock: FrozenClock) -> None:
    ann = await live.connect("ann")
    planted = await ann.call("plant", plot=0, seed="turnip")
    assert planted["crop"]["stage"] == "growing"
    assert planted["crop"]["ripe_at_ms"] == clock.now_ms() + 4 * HOUR_MS
    assert await error_code(ann, "plant", plot=0, seed="turnip") == "PLOT_BUSY"
    assert await error_code(ann, "plant", plot=1, seed="mango") == "UNKNOWN_SEED"
    assert await error_code(ann, "plant", plot=99, seed="turnip") == "BAD_ARGS"
    assert await error_code(ann, "plant", plot=6, seed="turnip") == "BAD_PLOT"
    assert await error_code(ann, "harvest", plot=0) == "NOT_RIPE"
    clock.advance(4 * HOUR_MS)
    farm = await ann.call("farm")
    assert farm["plots"][0]["stage"] == "ripe" and farm["plots"][1] == {"plot": 1, "empty": True}
    harvested = await ann.call("harvest", plot=0)
    assert (harvested["coins"], harvested["balance"]) == (20, 20)
    assert await error_code(ann, "harvest", plot=0) == "PLOT_EMPTY"
    entries = (await ann.call("ledger"))["entries"]
    assert entries[0]["transfer_id"].startswith("harvest:ann:0:")
    await ann.close()
    assert (await verify(redis)).ok


async def test_friend_requests_push_and_list(live: Live) -> None:
    ann, bob = await live.connect("ann"), await live.connect("bob")
    assert (await ann.call("friend_request", player="bob"))["status"] == "outgoing"
    push = await bob.next_push()
    assert push["push"] == "friend_request" and push["data"]["from"] == "ann"
    listed = await bob.call("friends")
    assert listed["incoming"] == ["ann"] and listed["friends"] == []
    assert (await bob.call("friend_accept", player="ann"))["status"] == "friends"
    assert [f["player"] for f in (await ann.call("friends"))["friends"]] == ["bob"]
    assert await error_code(ann, "friend_request", player="bob") == "ALREADY_FRIENDS"
    assert await error_code(ann, "friend_request", player="ann") == "SELF_TARGET"
    assert await error_code(ann, "friend_accept", player="cat") == "NO_REQUEST"
    assert (await ann.call("friend_remove", player="bob"))["status"] is None
    assert (await bob.call("friends"))["friends"] == []
    await bob.call("friend_block", player="ann")
    assert await error_code(ann, "friend_request", player="bob") == "BLOCKED"
    await ann.close()
    await bob.close()


async def test_steal_moves_coins_once_and_tells_the_owner(
    live: Live, redis: Redis, clock: FrozenClock
) -> None:
    await befriend(live, clock, ("ann", "bob"))
    ann, bob = await live.connect("ann"), await live.connect("bob")
    await ann.call("plant", plot=2, seed="golden_pear")  # 24 h, 150 coins
    assert await error_code(bob, "steal", player="ann", plot=2) == "NOT_RIPE"
    clock.advance(DAY_MS)
    seen = await bob.call("visit", player="ann")
    assert seen["plots"][2]["can_steal"] is True
    listed = await bob.call("friends")
    assert listed["friends"][0]["can_steal"] is True
    stolen = await bob.call("steal", player="ann", plot=2, request_id="steal-1")
    assert (stolen["coins"], stolen["balance"]) == (15, 15)
    push = await ann.next_push()
    assert push["push"] == "stolen" and push["data"] == {"by": "bob", "plot": 2, "coins": 15}
    again = await bob.request("steal", {"player": "ann", "plot": 2}, request_id="steal-1")
    assert again["result"] == stolen  # a retried id replays, moving nothing
    assert await error_code(bob, "steal", player="ann", plot=2) == "ALREADY_STOLEN"
    assert (await ann.call("harvest", plot=2))["coins"] == 135
    assert await error_code(bob, "steal", player="ann", plot=2) == "PLOT_EMPTY"
    flights = await audit(redis)
    assert flights.problems == [] and flights.credited["steal"] == 15
    assert flights.in_flight["steal"] == 0
    report = await verify(redis)
    assert report.ok, report.problems
    await ann.close()
    await bob.close()


async def test_steal_refusals(live: Live, clock: FrozenClock) -> None:
    ann, bob = await live.connect("ann"), await live.connect("bob")
    await ann.call("plant", plot=0, seed="turnip")
    clock.advance(4 * HOUR_MS)
    assert await error_code(bob, "steal", player="ann", plot=0) == "NOT_FRIENDS"
    assert await error_code(ann, "steal", player="ann", plot=0) == "SELF_TARGET"
    await ann.call("friend_request", player="bob")
    await bob.call("friend_accept", player="ann")
    assert await error_code(bob, "steal", player="ann", plot=0) == "FRIENDSHIP_TOO_NEW"
    assert await error_code(bob, "visit", player="cat") == "NOT_FRIENDS"
    await ann.close()
    await bob.close()


async def test_thieves_stop_at_the_crop_cap(live: Live, redis: Redis, clock: FrozenClock) -> None:
    thieves = ["t1", "t2", "t3", "t4"]
    await befriend(live, clock, *[("ann", t) for t in thieves])
    ann = await live.connect("ann")
    await ann.call("plant", plot=0, seed="turnip")  # 20 coins: 2 each, at most 6 in all
    clock.advance(4 * HOUR_MS)
    taken = []
    for thief in thieves:
        client = await live.connect(thief)
        try:
            taken.append((await client.call("steal", player="ann", plot=0))["coins"])
        except ManorError as exc:
            taken.append(exc.code)
        await client.close()
    assert taken == [2, 2, 2, "STEAL_CAP_REACHED"]
    assert (await ann.call("harvest", plot=0))["coins"] == 14
    assert (await verify(redis)).ok
    await ann.close()


async def test_water_speeds_the_crop_and_pays_the_waterer(
    live: Live, redis: Redis, clock: FrozenClock
) -> None:
    await befriend(live, clock, ("ann", "bob"))
    ann, bob = await live.connect("ann"), await live.connect("bob")
    planted = await ann.call("plant", plot=1, seed="turnip")
    ripe_at_ms = planted["crop"]["ripe_at_ms"]
    watered = await bob.call("water", player="ann", plot=1)
    assert watered["advanced_ms"] == 4 * HOUR_MS * 10 // 100
    assert watered["ripe_at_ms"] == ripe_at_ms - watered["advanced_ms"]
    assert (watered["coins"], watered["balance"]) == (2, 2)
    push = await ann.next_push()
    assert push["push"] == "watered" and push["data"]["by"] == "bob"
    assert await error_code(bob, "water", player="ann", plot=1) == "ALREADY_WATERED"
    timers = await redis.zrange(PlayerKeys("ann").timers, 0, -1, withscores=True)
    assert timers == [(b"ripe|ann|1|1", float(watered["ripe_at_ms"]))]
    await ann.close()
    await bob.close()


async def publishes(redis: Redis) -> int:
    return await calls(redis, "publish") + await calls(redis, "spublish")


async def test_a_raid_from_the_players_only_socket_publishes_only_the_owners_push(
    live: Live, redis: Redis, clock: FrozenClock
) -> None:
    """Water and steal answer the raider with the balance; with no other socket of the raider
    open, their credit publishes no `balance` push (commit.lua, asked_by_socket), only the
    owner's `watered` or `stolen`. A second socket of the raider is still told."""
    await befriend(live, clock, ("ann", "bob"))
    ann, bob = await live.connect("ann"), await live.connect("bob")
    await ann.call("plant", plot=1, seed="turnip")
    await ann.call("plant", plot=2, seed="golden_pear")
    await ann.call("plant", plot=3, seed="golden_pear")
    before = await publishes(redis)
    assert (await bob.call("water", player="ann", plot=1))["coins"] == 2
    assert await publishes(redis) == before + 1
    clock.advance(DAY_MS)
    before = await publishes(redis)
    assert (await bob.call("steal", player="ann", plot=2))["balance"] == 17
    assert await publishes(redis) == before + 1
    phone = await live.connect("bob")
    await phone.call("state")
    stolen = await bob.call("steal", player="ann", plot=3)
    push = await phone.next_push()
    assert push["push"] == "balance" and push["data"]["balance"] == stolen["balance"] == 32
    await ann.close()
    await bob.close()
    await phone.close()


async def test_ripe_timer_pushes_once(live: Live, clock: FrozenClock) -> None:
    ann = await live.connect("ann")
    await ann.call("plant", plot=0, seed="turnip")
    timers = live.manor.timers
    assert (await timers.tick(clock.now_ms())).fired == 0
    clock.advance(4 * HOUR_MS)
    report = await timers.tick(clock.now_ms())
    assert report.fired == 1
    push = await ann.next_push()
    assert push["push"] == "crop_ripe" and push["data"] == {"plot": 0, "cycle": 1, "seed": "turnip"}
    assert (await timers.tick(clock.now_ms())).fired == 0
    await ann.close()


async def test_offline_owner_gets_one_trigger_per_ripe_crop(
    live: Live, redis: Redis, clock: FrozenClock
) -> None:
    ann = await live.connect("ann")
    await ann.call("plant", plot=3, seed="turnip")
    await ann.close()
    await asyncio.sleep(0.05)  # the socket's channel is unsubscribed
    clock.advance(4 * HOUR_MS)  # 13:00 in Shanghai: not quiet hours
    await live.manor.timers.tick(clock.now_ms())
    await live.manor.timers.tick(clock.now_ms())
    sent = await triggers(redis)
    assert [(t["player"], t["kind"], t["collapse_key"]) for t in sent] == [
        ("ann", "crop_ripe", "ripe:ann:3:1")
    ]
    assert json.loads(sent[0]["data"]) == {"plot": 3, "cycle": 1, "seed": "turnip"}


async def test_offline_victim_gets_one_batched_trigger_for_many_thefts(
    live: Live, redis: Redis, clock: FrozenClock
) -> None:
    await befriend(live, clock, ("ann", "bob"), ("ann", "cat"))
    ann = await live.connect("ann")
    await ann.call("plant", plot=0, seed="golden_pear")
    await ann.close()
    await asyncio.sleep(0.05)
    clock.advance(DAY_MS)  # ripe; 09:00 in Shanghai, outside the quiet hours
    for thief in ("bob", "cat"):
        client = await live.connect(thief)
        await client.call("steal", player="ann", plot=0)
        await client.close()
    timers = live.manor.timers
    await timers.tick(clock.now_ms())
    assert [t for t in await triggers(redis) if t["kind"] == "stolen"] == []
    clock.advance(live.manor.rulebook.rules.notify.theft_batch_ms)
    await timers.tick(clock.now_ms())
    await timers.tick(clock.now_ms())
    stolen = [t for t in await triggers(redis) if t["kind"] == "stolen"]
    assert len(stolen) == 1
    assert json.loads(stolen[0]["data"]) == {"thefts": 2, "coins": 30, "thieves": ["bob", "cat"]}


async def test_platform_imports_friend_edges(live: Live, redis: Redis) -> None:
    async with httpx.AsyncClient() as http:
        url = f"{live.http}/v1/platform/friends"
        off = await http.post(url, json={"edges": []})
        assert off.status_code == 403 and off.json()["error"]["code"] == "PLATFORM_DISABLED"


async def test_platform_import_checks_key_and_body(
    redis: Redis, redis_server: Any, tmp_path: Any, clock: FrozenClock
) -> None:
    from tests.live import serve

    async with serve(redis_server.url, tmp_path, clock, platform_key=PLATFORM_KEY) as live:
        url = f"{live.http}/v1/platform/friends"
        auth = {"Authorization": f"Bearer {PLATFORM_KEY}"}
        async with httpx.AsyncClient() as http:
            assert (await http.post(url, json={"edges": []})).status_code == 401
            bad = await http.post(url, json={"edges": [{"a": "x", "b": "x"}]}, headers=auth)
            assert bad.status_code == 400 and bad.json()["error"]["code"] == "BAD_ARGS"
            since_ms = clock.now_ms() - 3 * DAY_MS
            edges = {"edges": [{"a": "ann", "b": "bob", "since_ms": since_ms}]}
            done = await http.post(url, json=edges, headers=auth)
            assert done.json() == {"imported": 1, "skipped": []}
        ann = await live.connect("ann")
        await ann.call("plant", plot=0, seed="turnip")
        clock.advance(4 * HOUR_MS)
        bob = await live.connect("bob")
        assert (await bob.call("steal", player="ann", plot=0))["coins"] == 2
        await ann.close()
        await bob.close()


async def test_steal_killed_between_take_and_credit_is_completed_by_the_relay(
    live: Live, redis: Redis, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The thief's process dies after the crop gave the coins (B), before the credit (C)."""
    from server.ledger import outbox

    await befriend(live, clock, ("ann", "bob"))
    ann, bob = await live.connect("ann"), await live.connect("bob")
    await ann.call("plant", plot=0, seed="pumpkin")  # 45 coins, 4 per thief
    clock.advance(8 * HOUR_MS)

    async def dies(*args: Any, **kwargs: Any) -> Any:
        raise ConnectionError("the process died here")

    with monkeypatch.context() as patch:
        patch.setattr(outbox, "complete", dies)
        assert await error_code(bob, "steal", player="ann", plot=0) == "INTERNAL"
    flights = await audit(redis)
    assert flights.problems == [] and flights.in_flight["steal"] == 4
    assert (await bob.call("state"))["balance"] == 0
    assert await error_code(bob, "steal", player="ann", plot=0) == "ALREADY_STOLEN"
    clock.advance(10_000)
    assert await outbox.relay(live.manor.store, clock.now_ms()) == 1
    assert (await bob.call("state"))["balance"] == 4
    flights = await audit(redis)
    assert flights.problems == [] and flights.in_flight["steal"] == 0
    assert flights.credited["steal"] == 4
    assert (await ann.call("harvest", plot=0))["coins"] == 41
    assert (await verify(redis)).ok
    await ann.close()
    await bob.close()


async def test_half_a_friend_pair_left_by_a_crash_reads_as_strangers(
    live: Live, redis: Redis
) -> None:
    """The two edges are written one after the other; a crash between them is repaired."""
    from game_rules.friends import Edge
    from server.ops.components import pack

    await redis.hset(PlayerKeys("ann").friends, "bob", pack(Edge("friends", 1).to_wire()))
    ann = await live.connect("ann")
    assert (await ann.call("friend_request", player="bob"))["status"] == "outgoing"
    assert await error_code(ann, "visit", player="ann") == "SELF_TARGET"
    await ann.close()


async def test_platform_import_keeps_a_block(
    redis: Redis, redis_server: Any, tmp_path: Any, clock: FrozenClock
) -> None:
    from tests.live import serve

    async with serve(redis_server.url, tmp_path, clock, platform_key=PLATFORM_KEY) as live:
        cat = await live.connect("cat")
        await cat.call("friend_block", player="dan")
        auth = {"Authorization": f"Bearer {PLATFORM_KEY}"}
        edges = {"edges": [{"a": "dan", "b": "cat"}, {"a": "dan", "b": "eve"}]}
        async with httpx.AsyncClient() as http:
            done = await http.post(f"{live.http}/v1/platform/friends", json=edges, headers=auth)
        assert done.json() == {
            "imported": 1,
            "skipped": [{"a": "dan", "b": "cat", "reason": "BLOCKED"}],
        }
        assert (await cat.call("friends"))["blocked"] == ["dan"]
        await cat.close()
