"""End to end: real uvicorn, real websockets clients, a controllable clock, a real store."""

from __future__ import annotations

import asyncio
from datetime import date
from pathlib import Path
from typing import Any

import msgpack
import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from server import pipeline as pipeline_module
from server.clock import FrozenClock
from server.ledger.verify import verify
from server.protocol import SUBPROTOCOL_MSGPACK
from server.store.embedded import EmbeddedStore
from server.transport import fanout as fanout_module
from server.transport import sharded as sharded_module
from tests.conftest import calls, client_for, keys_matching, shanghai_ms
from tests.live import Live, serve

DAY_MS = 86_400_000


async def test_sign_in_day_by_day(
    redis: Redis, redis_server: EmbeddedStore, tmp_path: Path
) -> None:
    clock = FrozenClock(shanghai_ms("2026-11-23T23:59:59.999"))
    async with serve(redis_server.url, tmp_path, clock) as live:
        client = await live.connect("ann")
        first = await client.call("sign_in")
        assert first == {
            "coins": 10,
            "streak": 1,
            "day": "2026-11-23",
            "already": False,
            "balance": 10,
            "entry_seq": 1,  # the journal entry the balance is as of: this credit's
        }
        again = await client.call("sign_in")
        del first["entry_seq"]  # an answer that commits nothing carries none
        assert again == {**first, "already": True}
        clock.advance(1)  # 00:00:00.000 in Shanghai: a new business day
        second = await client.call("sign_in")
        assert (second["streak"], second["coins"], second["day"], second["balance"]) == (
            2,
            15,
            "2026-11-24",
            25,
        )
        clock.advance(2 * DAY_MS)  # 26th: the 25th was missed
        reset = await client.call("sign_in")
        assert (reset["streak"], reset["coins"], reset["balance"]) == (1, 10, 35)
        state = await client.call("state")
        assert state["balance"] == 35 and state["signed_in_today"] and state["streak"] == 1
        assert state["batches"] == [{"expires": "2027-12-31", "coins": 35}]
        page = await client.call("ledger", limit=2)
        assert [e["amount"] for e in page["entries"]] == [10, 15]
        older = await client.call("ledger", limit=2, before_seq=page["next_before_seq"])
        assert [e["amount"] for e in older["entries"]] == [10]
        assert older["next_before_seq"] is None
        await client.close()
        redis = client_for(redis_server.url)
        report = await verify(redis)
        await redis.aclose()
        assert report.ok, report.problems


async def test_a_credit_answers_its_socket_in_the_reply_and_pushes_balance_to_the_others(
    live: Live,
) -> None:
    """The socket whose request moved coins reads the balance, and the journal entry it is
    as of, in its reply: the `balance` push goes to the player's other sockets only."""
    phone = await live.connect("bea")
    tablet = await live.connect("bea", json_mode=True)
    other = await live.connect("cid")
    await phone.call("state")  # both sockets are attached before the credit
    await tablet.call("state")
    result = await phone.call("sign_in")
    assert (result["balance"], result["entry_seq"]) == (10, 1)
    assert await tablet.next_push() == {
        "push": "balance",
        "seq": 0,
        "data": {"balance": 10, "delta": 10, "entry_seq": 1},
    }
    # The fan-out offered the push to both of bea's sockets at once; a round trip later
    # anything it sent the phone has arrived.
    assert (await phone.call("state"))["entry_seq"] == 1
    assert phone.pushes.empty() and other.pushes.empty()
    for socket in (phone, tablet, other):
        await socket.close()


async def published(redis: Redis) -> int:
    return await calls(redis, "publish") + await calls(redis, "spublish")


async def test_a_credit_asked_by_the_players_only_socket_publishes_no_balance_push(
    live: Live, redis: Redis, clock: FrozenClock
) -> None:
    """Nobody but the asking socket would read the `balance` push of its own credit, and it
    reads the balance in its reply: with no other socket of the player anywhere, the commit
    publishes none. A second socket makes the next credit publish again. (A credit no
    socket of the player asked for, a shop's reward, reaches a lone socket: test_platform.)"""
    phone = await live.connect("sol")
    await phone.call("state")
    before = await published(redis)
    assert (await phone.call("sign_in"))["balance"] == 10
    assert await published(redis) == before
    tablet = await live.connect("sol")
    await tablet.call("state")
    clock.advance(DAY_MS)
    assert (await phone.call("sign_in"))["balance"] == 25
    assert (await tablet.next_push())["data"]["balance"] == 25
    await tablet.close()
    await phone.close()


async def test_the_own_balance_push_that_overtakes_the_reply_is_dropped_a_newer_one_sent(
    live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The commit's push comes back through the fan-out while its request is still being
    answered (here the reply waits until the push reached the player's other socket): it
    is held, and dropped once the reply carries its entry_seq. A newer balance that lands
    meanwhile (a grant: entry 2) goes out after the reply."""
    from server.ledger.commit import Commit, CommitResult, apply
    from server.ledger.ledger import Transfer
    from server.store.keys import PlayerKeys

    phone = await live.connect("eli")
    tablet = await live.connect("eli")
    await phone.call("state")  # both attached
    await tablet.call("state")
    grant = Transfer("grant:race", "c", 5, "mint:grant", date(2027, 6, 30))

    async def late_reply(*args: Any, **kwargs: Any) -> CommitResult:
        done = await apply(*args, **kwargs)
        # The fan-out offers a push to all of eli's sockets on this process at once.
        assert (await tablet.next_push())["data"]["entry_seq"] == 1
        await apply(live.manor.store, PlayerKeys("eli"), Commit(transfers=[grant]), 1)
        assert (await tablet.next_push())["data"]["entry_seq"] == 2
        return done

    monkeypatch.setattr(pipeline_module, "apply", late_reply)
    signed = await phone.call("sign_in")
    monkeypatch.undo()
    assert (signed["balance"], signed["entry_seq"]) == (10, 1)
    push = await phone.next_push()
    assert push["data"] == {"balance": 15, "delta": 5, "entry_seq": 2}
    assert (await phone.call("state"))["entry_seq"] == 2
    assert phone.pushes.empty()  # the commit's own push (entry 1) never came
    await phone.close()
    await tablet.close()


async def test_a_v1_client_from_before_state_pushes_drops_the_balance_push_as_seen(
    live: Live,
) -> None:
    """Apps in the field keep the push order of before: a push whose seq is at or below the
    last they processed is a duplicate, and since_seq must be digits. The `balance` state
    push carries seq 0, so such a client drops it (it reads balances from replies and
    `state`) and its cursor stays a number it can resume from."""
    phone = await live.connect("old")
    tablet = await live.connect("old")
    cursor = (await phone.call("state"))["push_seq"]
    await tablet.call("sign_in")
    push = await phone.next_push()
    assert push["seq"] == 0 and push["seq"] <= cursor  # the old rule: already seen, dropped
    await phone.close()
    resumed = await live.connect("old", since_seq=cursor)
    assert (await resumed.next_push())["data"]["balance"] == 10
    await resumed.close()
    await tablet.close()


async def frames_until_reply(live: Live, player: str, query: str) -> list[dict[str, Any]]:
    """What a socket opened with `query` is sent up to the reply to its first request
    (`state`), read off the wire: the resume's frames all come before that reply."""
    url = f"{live.url}/v1/ws?{query}"
    headers = {"Authorization": f"Bearer {live.token(player)}"}
    async with connect(url, subprotocols=[SUBPROTOCOL_MSGPACK], additional_headers=headers) as ws:  # type: ignore[list-item]
        await ws.send(msgpack.packb({"id": 1, "op": "state"}))
        frames = []
        while not frames or frames[-1].get("id") != 1:
            frames.append(msgpack.unpackb(await ws.recv()))
        return frames


async def test_a_resume_naming_the_balance_it_holds_is_sent_the_balance_only_when_newer(
    live: Live,
) -> None:
    """`entry_seq` on the socket's URL is the balance the app holds: the resume sends no
    `balance` frame at or below it (nothing moved while it was away), and the balance as it
    is when it is newer."""
    phone = await live.connect("rae")
    signed = await phone.call("sign_in")
    cursor = (await phone.call("state"))["push_seq"]
    await phone.close()
    held = signed["entry_seq"]
    same = await frames_until_reply(live, "rae", f"since_seq={cursor}&entry_seq={held}")
    assert [frame.get("push") for frame in same] == [None]  # the reply alone
    older = await frames_until_reply(live, "rae", f"since_seq={cursor}&entry_seq={held - 1}")
    assert [frame.get("push") for frame in older] == ["balance", None]
    assert older[0]["data"] == {"balance": signed["balance"], "delta": 0, "entry_seq": held}
    bare = await frames_until_reply(live, "rae", f"since_seq={cursor}")
    assert [frame.get("push") for frame in bare] == ["balance", None]  # as before


async def test_an_entry_seq_that_is_not_a_count_is_refused_before_the_upgrade(live: Live) -> None:
    for bad in ("-1", "x", "1.5", ""):
        with pytest.raises(InvalidStatus) as refused:
            await frames_until_reply(live, "rae", f"since_seq=0&entry_seq={bad}")
        assert refused.value.response.status_code == 400


async def test_the_first_request_of_a_socket_gets_its_own_push_however_slow_the_subscribe(
    live: Live, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fresh socket's first request is answered only once its push channel is subscribed:
    with the pub/sub connection's writes held back 0.3 s, the `task_done` push of the task
    it claims still arrives (it would be published before the SUBSCRIBE reached the
    store)."""
    first = await live.connect("dot")
    await first.call("task_start", task="browse")
    await first.close()
    clock.advance(15_000)
    loop = asyncio.get_running_loop()
    for wire in (fanout_module._Wire, sharded_module._NodeWire):
        original = wire.write
        monkeypatch.setattr(
            wire,
            "write",
            lambda self, packed, original=original: loop.call_later(0.3, original, self, packed),
        )
    phone = await live.connect("dot")
    claimed = await phone.call("task_claim", task="browse")
    push = await phone.next_push(timeout_s=5)
    assert (push["push"], push["data"]["coins"]) == ("task_done", claimed["coins"])
    await phone.close()


async def test_retried_request_id_on_new_connection_replays_and_credits_once(
    live: Live, redis: Redis, clock: FrozenClock
) -> None:
    first = await live.connect("dan")
    reply = await first.request("sign_in", request_id="signin-7")
    await first.close()
    clock.advance(DAY_MS)  # even a day later, the same id is the same request
    second = await live.connect("dan")
    again = await second.request("sign_in", request_id="signin-7")
    assert again == reply
    assert (await second.call("state"))["balance"] == 10
    reused = await second.request("state", request_id="signin-7")
    assert reused["ok"]  # reads are not remembered: a read id may repeat
    await second.close()
    assert len(await keys_matching(redis, "*journal")) == 1
    assert (await verify(redis)).ok


async def test_dev_clock_is_refused_unless_enabled(live: Live) -> None:
    import httpx

    async with httpx.AsyncClient() as http:
        response = await http.post(f"{live.http}/dev/clock", json={"advance_ms": 1000})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "DEV_CLOCK_OFF"


async def test_dev_clock_moves_the_business_day(
    redis: Redis, redis_server: EmbeddedStore, tmp_path: Path
) -> None:
    import httpx

    async with serve(redis_server.url, tmp_path, dev_clock=True) as live:
        client = await live.connect("eve")
        assert (await client.call("sign_in"))["streak"] == 1
        async with httpx.AsyncClient() as http:
            bad = await http.post(f"{live.http}/dev/clock", json={"advance_ms": -5})
            assert bad.status_code == 400
            moved = await http.post(f"{live.http}/dev/clock", json={"advance_ms": DAY_MS})
            assert moved.status_code == 200
        assert (await client.call("sign_in"))["streak"] == 2
        await client.close()


async def test_health_and_readiness(live: Live) -> None:
    import httpx

    async with httpx.AsyncClient() as http:
        assert (await http.get(f"{live.http}/healthz")).json() == {"ok": True}
        ready = (await http.get(f"{live.http}/readyz")).json()
    assert ready["ok"] and ready["rules_version"] == "2026.11-default"
    assert set(ready["nodes"].values()) == {"ok"}
    primaries = [node for node in ready["nodes"] if node.endswith("(primary)")]
    assert len(primaries) == (3 if "+cluster://" in live.settings.redis_url else 1)


async def test_a_push_published_while_pubsub_was_down_is_replayed_to_the_socket(
    live: Live, redis: Redis, clock: FrozenClock
) -> None:
    """The process lost its pub/sub connection; a credit landed before it subscribed again.
    Once it has, the socket is caught up without a reconnect: the balance as it is then (a
    state push is not in the inbox), and the inbox's pushes after the last it saw."""
    from server.ledger.commit import Commit, apply
    from server.ledger.ledger import Transfer
    from server.store.keys import PlayerKeys

    client = await live.connect("gus")
    assert (await client.call("sign_in"))["entry_seq"] == 1  # and no `balance` push to it
    if isinstance(redis, RedisCluster):
        await redis.client_kill_filter(_type="pubsub", target_nodes=RedisCluster.ALL_NODES)
    else:
        await redis.client_kill_filter(_type="pubsub")
    grant = Transfer("grant:gap", "c", 5, "mint:grant", date(2027, 6, 30))
    store = live.manor.store
    note = ("note", msgpack.packb({"n": 1}))
    commit = Commit(transfers=[grant], pushes=[note])
    done = await apply(store, PlayerKeys("gus"), commit, clock.now_ms())
    assert done.status == "ok"
    first = await client.next_push(timeout_s=10)  # the fan-out resubscribes after 0.5 s
    second = await client.next_push()
    assert first == {"push": "note", "seq": 1, "data": {"n": 1}}
    # Sent after the replay, as the store holds it: the delta of what the socket missed
    # is not known, so 0.
    assert second == {
        "push": "balance",
        "seq": 0,
        "data": {"balance": 15, "delta": 0, "entry_seq": 2},
    }
    await client.close()


async def test_a_socket_that_knows_no_push_seq_gets_resync_after_pubsub_was_down(
    live: Live, redis: Redis, clock: FrozenClock
) -> None:
    """A socket that was sent no event push and made no rule op (only `state`, a read)
    cannot say which pushes it missed while the process's pub/sub connection was down:
    it gets `resync` with the player's push seq, and no balance (`state` carries it)."""
    from server.ledger.commit import Commit, apply
    from server.ledger.ledger import Transfer
    from server.store.keys import PlayerKeys

    client = await live.connect("hal")
    await client.call("state")
    if isinstance(redis, RedisCluster):
        await redis.client_kill_filter(_type="pubsub", target_nodes=RedisCluster.ALL_NODES)
    else:
        await redis.client_kill_filter(_type="pubsub")
    grant = Transfer("grant:gap", "c", 5, "mint:grant", date(2027, 6, 30))
    commit = Commit(transfers=[grant], pushes=[("note", msgpack.packb({"n": 1}))])
    done = await apply(live.manor.store, PlayerKeys("hal"), commit, clock.now_ms())
    assert done.status == "ok"
    push = await client.next_push(timeout_s=10)  # the fan-out resubscribes after 0.5 s
    assert push == {"push": "resync", "seq": 1, "data": {"snapshot_needed": True}}
    assert (await client.call("state"))["entry_seq"] == 1
    await asyncio.sleep(0.3)  # nothing else was on its way
    assert client.pushes.empty()
    await client.close()
