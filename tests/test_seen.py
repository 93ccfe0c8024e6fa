"""A socket's rule ops decide on the state its last rule op left (server/pipeline.py, Seen):
a credit is then one commit with no load before it, and whatever moved the state since
(another socket, another process, a write the store lost) sends it back to a load."""

from __future__ import annotations

from datetime import date

from redis.asyncio import Redis

from game_rules import SignInState, reward_coins
from server.clock import FrozenClock
from server.ledger.verify import verify
from server.ops.components import pack
from server.store.keys import PlayerKeys
from tests.conftest import calls
from tests.live import Live

DAY_MS = 86_400_000


async def books_ok(redis: Redis, entries: int) -> None:
    report = await verify(redis)
    assert report.ok, report.problems
    assert report.entries == entries


async def test_a_credit_on_a_remembered_state_reads_nothing_first(
    live: Live, redis: Redis, clock: FrozenClock
) -> None:
    client = await live.connect("ann")
    first = await client.call("sign_in")  # the socket's first rule op loads, then commits
    clock.advance(DAY_MS)
    loads, checks = await calls(redis, "get"), await calls(redis, "exists")
    stores = await calls(redis, "set")
    second = await client.call("sign_in")
    assert second == {
        **first,
        "coins": 15,
        "streak": 2,
        "day": "2026-11-24",
        "balance": 25,
        "entry_seq": 2,
    }
    assert await calls(redis, "get") == loads  # no load: the reply cache was not read...
    # ...and the commit checked it with the one SET that stores the reply (NX), no EXISTS
    assert (await calls(redis, "exists"), await calls(redis, "set")) == (checks, stores + 1)
    await client.close()
    await books_ok(redis, entries=2)


async def test_a_state_moved_by_another_socket_is_loaded_again(
    live: Live, redis: Redis, clock: FrozenClock
) -> None:
    phone = await live.connect("bea")
    tablet = await live.connect("bea")
    await phone.call("sign_in")
    clock.advance(DAY_MS)
    credited = await tablet.call("sign_in")  # the phone's memory is a day old now
    loads = await calls(redis, "get")
    again = await phone.call("sign_in")  # decided as a credit, refused by the version
    del credited["entry_seq"]  # an answer that commits nothing carries none
    assert again == {**credited, "already": True}
    assert await calls(redis, "get") == loads + 1
    for socket in (phone, tablet):
        await socket.close()
    await books_ok(redis, entries=2)


async def test_a_request_id_reused_the_next_day_replays_its_answer(
    live: Live, redis: Redis, clock: FrozenClock
) -> None:
    client = await live.connect("cid")
    first = await client.call("sign_in", request_id="daily")
    clock.advance(DAY_MS)
    # The state is the one the socket remembers, so only the stored reply can refuse the
    # credit: an id answers once, whatever its op would decide today.
    assert await client.call("sign_in", request_id="daily") == first
    assert (await client.call("sign_in"))["balance"] == 25  # a new id credits the day
    await client.close()
    await books_ok(redis, entries=2)


async def test_an_id_another_op_stored_is_refused_on_a_remembered_state(
    live: Live, redis: Redis, clock: FrozenClock
) -> None:
    client = await live.connect("dee")
    await client.call("plant", request_id="p-1", plot=0, seed="turnip")
    clock.advance(DAY_MS)
    reply = await client.request("sign_in", {}, "p-1")
    assert reply["error"]["code"] == "ID_REUSED"
    await client.close()
    await books_ok(redis, entries=0)


async def test_a_version_written_by_another_writer_is_not_the_remembered_one(
    live: Live, redis: Redis, clock: FrozenClock
) -> None:
    """A failover can lose the write a socket remembers, and a later write take its version
    number: the stamp tells them apart. Here the store's state at the socket's version says
    a streak of 5 (not the socket's 1): the next day's sign-in pays day 6."""
    client = await live.connect("eve")
    await client.call("sign_in")
    state = PlayerKeys("eve").state
    ver = int(await redis.hget(state, "ver") or 0)
    streak_5 = pack(SignInState(date(2026, 11, 23), 5).to_wire())
    await redis.hset(state, mapping={"ver": ver, "vs": "another-writer", "signin": streak_5})
    clock.advance(DAY_MS)
    result = await client.call("sign_in")
    rules = live.manor.rulebook.rules
    assert (result["streak"], result["coins"]) == (6, reward_coins(rules.signin, 6))
    await client.close()


async def test_a_refusal_on_a_remembered_state_is_checked_against_the_store(
    live: Live, redis: Redis, clock: FrozenClock
) -> None:
    """The socket remembers plot 0 planted; another socket harvested and replanted it
    since. A plant there is refused by the store's state (PLOT_BUSY or not), never by the
    memory alone: here the store's plot is empty, so the plant succeeds."""
    phone = await live.connect("fay")
    tablet = await live.connect("fay")
    planted = await phone.call("plant", plot=0, seed="turnip")
    clock.advance(planted["crop"]["ripe_at_ms"] - clock.now_ms())
    await tablet.call("harvest", plot=0)
    again = await phone.call("plant", plot=0, seed="turnip")
    assert again["plot"] == 0 and again["crop"]["seed"] == "turnip"
    for socket in (phone, tablet):
        await socket.close()
