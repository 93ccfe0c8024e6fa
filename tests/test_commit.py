"""server/store/lua/commit.lua against a real server: every path, and no write on a rejection."""

from __future__ import annotations

import asyncio
from datetime import date

import msgpack
import pytest
from redis.asyncio import Redis

from server.ledger.commit import (
    HOLDS_PENDING_MAX,
    Commit,
    HoldOp,
    apply,
    commit_answer,
    commit_header,
    reply_body,
)
from server.ledger.ledger import Entry, Transfer, Wallet
from server.ledger.verify import live_entries, verify
from server.pipeline import replay
from server.protocol import Request
from server.store.keys import PlayerKeys, players_index
from server.store.store import Store
from tests.conftest import Listener, calls, contents

NOW_MS = 1_790_000_000_000
JUNE = date(2027, 6, 30)
DEC = date(2027, 12, 31)


def credit(tid: str, amount: int, batch: date = JUNE, account: str = "mint:signin") -> Transfer:
    return Transfer(tid, "c", amount, account, batch)


def debit(tid: str, amount: int, account: str = "sink:redeem") -> Transfer:
    return Transfer(tid, "d", amount, account)


def test_guarded_is_replace_of_the_guards_and_keeps_every_other_field() -> None:
    """Commit.guarded spells out _replace: a field added to Commit and left out of it
    would be lost on every rule op."""
    full = Commit(
        expected_ver=3,
        fields={"signin": b"s"},
        transfers=[Transfer("t:1", "c", 5, "mint:signin", date(2027, 6, 30))],
        pushes=[("note", b"\x80")],
        orders=[("steal", 2, b"o")],
        timers=[("ripe:1", 9)],
        holds=[HoldOp("reserve", "o1", 4, 99)],
        debt_add=1,
        records=[("r", b"", b"x")],
        counts=[("steal:ordered", 2)],
        reply_body=b"old",
        reply_ttl_s=5,
        seen_stamp="aa",
        stamp="bb",
    )
    guards = {
        "expected_ver": 7,
        "reply_body": b"new",
        "reply_ttl_s": 60,
        "seen_stamp": None,
        "stamp": "cc",
        "asked_by_socket": True,
    }
    assert full.guarded(**guards) == full._replace(**guards)
    assert set(Commit._fields) - set(guards) == {
        "fields", "transfers", "pushes", "orders", "timers", "holds", "debt_add", "records",
        "counts",
    }  # fmt: skip


async def test_commit_credit_posts_entry_balance_batch_and_push(store: Store, redis: Redis) -> None:
    keys = PlayerKeys("alice")
    result = await apply(
        store,
        keys,
        Commit(
            expected_ver=0,
            fields={"signin": b"x"},
            transfers=[credit("signin:alice:2026-11-23", 10)],
        ),
        NOW_MS,
    )
    assert (result.status, result.balance, result.ver, result.pseq) == ("ok", 10, 1, 0)
    wallet = Wallet.from_hash(await redis.hgetall(keys.state))
    assert wallet.balance == 10 and wallet.batches == {JUNE: 10} and wallet.seq == 1
    [entry] = await live_entries(redis, keys)
    assert (entry.seq, entry.ts_ms, entry.amount, entry.balance_after, entry.tag) == (
        1,
        NOW_MS // 1000 * 1000,  # an entry keeps the second
        10,
        10,
        0,
    )
    assert (entry.transfer_id, entry.account) == ("signin:alice:2026-11-23", "mint:signin")
    assert wallet.head == entry.chained("")
    assert await redis.hget(keys.sys, "mint:signin") == b"-10"
    assert await redis.hget(keys.state, "signin") == b"x"
    assert await redis.smembers(players_index(keys.bucket)) == {b"alice"}
    # The `balance` push is a state push: published (seq 0), never in the inbox, no pseq.
    assert not await redis.exists(keys.inbox)
    assert await redis.hget(keys.state, "pseq") is None
    assert (await verify(redis)).ok


async def test_commit_publishes_push_on_player_channel(store: Store, redis: Redis) -> None:
    keys = PlayerKeys("bob")
    async with Listener(redis, keys.push_channel) as listener:
        data = msgpack.packb({"from": "x"})
        transfers = [credit("t1", 5)]
        await apply(store, keys, Commit(transfers=transfers, pushes=[("hello", data)]), NOW_MS)
        frames = []
        for _ in range(2):
            message = await listener.next()
            assert message is not None
            frames.append(msgpack.unpackb(message["data"]))
    assert frames == [
        {"push": "balance", "seq": 0, "data": {"balance": 5, "delta": 5, "entry_seq": 1}},
        {"push": "hello", "seq": 1, "data": {"from": "x"}},
    ]
    # The inbox keeps the sequenced push only: a resume sends the balance as it is.
    assert [msgpack.unpackb(f) for f in await redis.lrange(keys.inbox, 0, -1)] == frames[1:]


async def test_commit_same_transfer_id_again_is_exists_and_writes_nothing(
    store: Store, redis: Redis
) -> None:
    keys = PlayerKeys("carol")
    await apply(store, keys, Commit(transfers=[credit("t1", 10)]), NOW_MS)
    before = await contents(redis)
    result = await apply(store, keys, Commit(transfers=[credit("t1", 10)]), NOW_MS + 1)
    assert (result.status, result.balance) == ("exists", 10)
    assert await contents(redis) == before


@pytest.mark.parametrize(
    ("commit", "status"),
    [
        (Commit(transfers=[credit("t1", 11)]), "TRANSFER_MISMATCH"),
        (Commit(transfers=[credit("t1", 10, account="mint:other")]), "TRANSFER_MISMATCH"),
        (Commit(transfers=[debit("t1", 10)]), "TRANSFER_MISMATCH"),
        (Commit(transfers=[credit("t2", 1), credit("t1", 99)]), "TRANSFER_MISMATCH"),
        (Commit(expected_ver=0, fields={"signin": b"y"}), "CONFLICT"),
        (Commit(expected_ver=7, transfers=[credit("t9", 1)]), "CONFLICT"),
        (Commit(transfers=[debit("d1", 11)]), "INSUFFICIENT_FUNDS"),
        (Commit(transfers=[credit("t3", 5), debit("d1", 16)]), "INSUFFICIENT_FUNDS"),
        (Commit(transfers=[credit("t4", 5), credit("t4", 5)]), "BAD_TRANSFER"),
        # A rule field never takes a name the books use (commit.lua's BOOK_FIELDS, ck_*).
        (Commit(fields={"bal": b"99"}), "BAD_TRANSFER"),
        (Commit(fields={"signin": b"y", "hx": b""}), "BAD_TRANSFER"),
        (Commit(fields={"vs": b"s"}), "BAD_TRANSFER"),
        (Commit(fields={"pseq": b"1"}), "BAD_TRANSFER"),
        (Commit(fields={"ck_seq": b"0"}), "BAD_TRANSFER"),
    ],
)
async def test_commit_rejection_leaves_no_write(
    store: Store, redis: Redis, commit: Commit, status: str
) -> None:
    keys = PlayerKeys("dave")
    seed = Commit(expected_ver=0, fields={"signin": b"x"}, transfers=[credit("t1", 10)])
    await apply(store, keys, seed, NOW_MS)
    before = await contents(redis)
    result = await apply(store, keys, commit, NOW_MS + 1, reply_key=keys.reply("r1"))
    assert result.status == status
    assert result.balance == 10
    assert await contents(redis) == before


@pytest.mark.parametrize(
    ("part", "keys_needed"),
    [("orders", 11), ("counts", 11), ("timers", 12), ("records", 13)],
)
async def test_a_commit_naming_fewer_keys_than_its_parts_use_is_refused_unwritten(
    store: Store, redis: Redis, part: str, keys_needed: int
) -> None:
    """commit.lua's KEYS 10-13 come only up to the last one a commit uses: one sent short
    of a key it needs is BAD_TRANSFER before any write, never a Lua error halfway."""
    keys = PlayerKeys("alice")
    commit = {
        "orders": Commit(orders=[("steal", 2, b"o")]),
        "counts": Commit(counts=[("steal:ordered", 2)]),
        "timers": Commit(timers=[("ripe:1", NOW_MS)]),
        "records": Commit(records=[("r", b"", b"x")]),
    }[part]._replace(fields={"f": b"v"}, stamp="s")
    extra = {
        "orders": ["steal", 2, b"o"],
        "counts": ["steal:ordered", 2],
        "timers": ["ripe:1", NOW_MS],
        "records": ["r", b"", b"x"],
    }[part]
    all_keys = [keys.state, keys.journal, keys.txids, keys.sys, keys.inbox,
                keys.players, keys.reply("-"), keys.push_channel, keys.holds, keys.outbox,
                keys.stats, keys.timers, keys.records]  # fmt: skip
    args = [commit_header(store, keys, commit, NOW_MS, None), "f", b"v", *extra]
    before = await contents(redis)
    short = await store.script("commit", all_keys[: keys_needed - 1], args)
    assert commit_answer(short).status == "BAD_TRANSFER"
    assert await contents(redis) == before
    done = await store.script("commit", all_keys[:keys_needed], args)
    assert commit_answer(done).status == "ok"


async def test_commit_debit_spends_the_batch_that_expires_first(store: Store, redis: Redis) -> None:
    keys = PlayerKeys("erin")
    await apply(store, keys, Commit(transfers=[credit("late", 30, DEC)]), NOW_MS)
    await apply(store, keys, Commit(transfers=[credit("early", 20, JUNE)]), NOW_MS)
    result = await apply(store, keys, Commit(transfers=[debit("spend", 25)]), NOW_MS)
    assert (result.status, result.balance) == ("ok", 25)
    wallet = Wallet.from_hash(await redis.hgetall(keys.state))
    assert wallet.batches == {DEC: 25}
    last = Entry.decode((await redis.lrange(keys.journal, -1, -1))[0])
    assert last.amount == -25 and last.batches == (20270630, -20, 20271231, -5)
    assert await redis.hget(keys.sys, "sink:redeem") == b"25"
    report = await verify(redis)
    assert report.ok, report.problems
    assert report.player_sum == 25 and report.system_sum == -25


async def test_commit_caches_reply_with_retention(store: Store, redis: Redis) -> None:
    keys = PlayerKeys("frank")
    key = keys.reply("req-1")
    commit = Commit(transfers=[credit("t1", 3)], reply_body=b"\x80", reply_ttl_s=120)
    done = await apply(store, keys, commit, NOW_MS, reply_key=key)
    assert done.entry_seq == 1
    assert await redis.get(key) == b"3:\x80\xa9entry_seq\x01"  # entry_seq appended
    assert 0 < await redis.ttl(key) <= 120


async def test_a_stored_reply_carries_its_entry_seq_and_reads_as_before(
    store: Store, redis: Redis
) -> None:
    """The reply a rule op stores is `<balance>:` and a msgpack map of op, result and the
    entry_seq commit.lua appends: replay() gives the reply its entry_seq, and a server of
    before (which took the map's op and result) reads it as it did. A reply stored before
    entry_seq replays without one."""
    keys = PlayerKeys("fern")
    key = keys.reply("req-1")
    result = {"coins": 3, "already": False}
    body = reply_body("sign_in", result)
    done = await apply(store, keys, Commit(transfers=[credit("t1", 3)], reply_body=body), 1, key)
    stored = await redis.get(key)
    request = Request("req-1", "sign_in", {})
    assert replay(request, stored) == {**result, "balance": 3, "entry_seq": done.entry_seq}
    balance, _, packed = stored.partition(b":")  # replay() of 2026-12-02
    assert (int(balance), msgpack.unpackb(packed)["result"]) == (3, result)
    before = b"3:" + msgpack.packb({"op": "sign_in", "result": result})
    assert replay(request, before) == {**result, "balance": 3}


def remembered(transfer: Transfer, asked_by_socket: bool = False) -> Commit:
    """A sign-in's commit on the state a first commit (stamp s1, version 1) left, as a
    socket that remembers it sends it: its stamp checked, its reply stored by SET NX."""
    return Commit(
        expected_ver=1,
        fields={"signin": b"b"},
        transfers=[transfer],
        reply_body=b"\x82",
        seen_stamp="s1",
        stamp="s2",
        asked_by_socket=asked_by_socket,
    )


async def test_a_remembered_commit_whose_request_id_has_a_reply_is_replayed_unwritten(
    store: Store, redis: Redis
) -> None:
    """On a remembered snapshot the stored reply is the commit's last check, made by the
    SET NX that stores the new one: when it finds a reply, nothing at all is written."""
    keys = PlayerKeys("fay")
    key = keys.reply("req-1")
    first = Commit(fields={"signin": b"a"}, transfers=[credit("t1", 3)], stamp="s1")
    assert (await apply(store, keys, first._replace(reply_body=b"\x81"), NOW_MS, key)).written
    before = await contents(redis)
    again = remembered(credit("t2", 4))
    assert (await apply(store, keys, again, NOW_MS, key)).status == "REPLAYED"
    assert await contents(redis) == before
    other = keys.reply("req-2")  # another request id on the same snapshot commits
    done = await apply(store, keys, again, NOW_MS, other)
    assert (done.status, done.balance, await redis.get(other)) == (
        "ok",
        7,
        b"7:\x82\xa9entry_seq\x02",
    )
    assert 0 < await redis.ttl(other) <= 86_400
    assert (await verify(redis)).ok


async def test_a_credit_from_a_lone_socket_is_seven_commands_its_id_checked_as_written(
    store: Store, redis: Redis
) -> None:
    """The midnight credit: its transfer id is checked by the write that records it
    (HSETNX), as the stored reply is by its SET NX; no read of the id before."""
    keys = PlayerKeys("hal")
    await apply(store, keys, Commit(fields={"signin": b"a"}, stamp="s1"), NOW_MS)
    await redis.hset(keys.state, "sk", 1)  # the player's only socket (socket_lease.lua)
    names = ("evalsha", "hmget", "hget", "hexists", "set", "hsetnx", "hincrby", "rpush",
             "hset", "publish", "spublish")  # fmt: skip
    before = [await calls(redis, name) for name in names]
    sign_in = remembered(credit("signin:hal:1", 10), asked_by_socket=True)
    done = await apply(store, keys, sign_in, NOW_MS, keys.reply("i:1"))
    assert (done.status, done.balance) == ("ok", 10)
    ran = {n: await calls(redis, n) - b for n, b in zip(names, before, strict=True)}
    assert ran == {"evalsha": 1, "hmget": 1, "hget": 0, "hexists": 0, "set": 1, "hsetnx": 1,
                   "hincrby": 1, "rpush": 1, "hset": 1, "publish": 0, "spublish": 0}  # fmt: skip
    assert await redis.hget(keys.txids, "signin:hal:1") == b"1"
    assert (await verify(redis)).ok


@pytest.mark.parametrize(
    ("stored", "status"), [("c|10|mint:signin|7", "exists"), ("d|1|sink:x|7", "TRANSFER_MISMATCH")]
)
async def test_a_remembered_credit_whose_id_is_taken_undoes_its_reply_and_writes_nothing(
    store: Store, redis: Redis, stored: str, status: str
) -> None:
    """A new request on a remembered state whose credit's id is in txids already (a
    store that lost the state's write but kept the id): the SET NX that stored the reply
    is undone, and the answer is the id's, as a read of it first would have given."""
    keys = PlayerKeys("ida")
    await apply(store, keys, Commit(fields={"signin": b"a"}, stamp="s1"), NOW_MS)
    await redis.hset(keys.txids, "signin:ida:1", stored)
    before = await contents(redis)
    sign_in = remembered(credit("signin:ida:1", 10))
    assert (await apply(store, keys, sign_in, NOW_MS, keys.reply("i:1"))).status == status
    assert await contents(redis) == before  # the reply too


async def test_commit_concurrent_same_transfer_posts_once(store: Store, redis: Redis) -> None:
    keys = PlayerKeys("gina")
    results = await asyncio.gather(
        *(apply(store, keys, Commit(transfers=[credit("once", 7)]), NOW_MS) for _ in range(20))
    )
    assert sorted(r.status for r in results) == ["exists"] * 19 + ["ok"]
    assert (await redis.hget(keys.state, "bal")) == b"7"
    assert (await verify(redis)).ok


async def test_inbox_is_capped_and_trimmed_every_few_pushes(store: Store, redis: Redis) -> None:
    from server.ledger.commit import INBOX_KEEP, INBOX_MAX

    keys = PlayerKeys("hank")
    lengths = []
    data = msgpack.packb({})
    for _ in range(INBOX_MAX + 5):
        await apply(store, keys, Commit(pushes=[("crop_ripe", data)]), NOW_MS)
        lengths.append(await redis.llen(keys.inbox))
    assert max(lengths) == INBOX_MAX  # never more
    assert lengths[INBOX_MAX] == INBOX_KEEP  # the push past INBOX_MAX trimmed it back
    frames = await redis.lrange(keys.inbox, 0, -1)
    assert len(frames) == INBOX_KEEP + 4
    assert msgpack.unpackb(frames[-1])["seq"] == INBOX_MAX + 5


async def test_commit_appends_outbox_orders_and_counts_them(store: Store, redis: Redis) -> None:
    keys = PlayerKeys("ivy")
    order = msgpack.packb({"id": "steal:ivy:0:1:joe", "to": "joe", "coins": 2})
    result = await apply(
        store,
        keys,
        Commit(expected_ver=0, fields={"farm": b"f"}, orders=[("steal", 2, order)]),
        NOW_MS,
    )
    assert result.status == "ok"
    assert await redis.lrange(keys.outbox, 0, -1) == [order]
    assert await redis.hget(keys.stats, "steal:ordered") == b"2"


async def test_commit_bad_order_amount_leaves_no_write(store: Store, redis: Redis) -> None:
    keys = PlayerKeys("ivy")
    before = await contents(redis)
    result = await apply(store, keys, Commit(orders=[("steal", 0, b"x")]), NOW_MS)
    assert result.status == "BAD_TRANSFER"
    assert await contents(redis) == before


async def test_commit_reports_receivers_of_each_extra_push(store: Store, redis: Redis) -> None:
    keys = PlayerKeys("jon")
    data = msgpack.packb({})
    alone = await apply(store, keys, Commit(pushes=[("crop_ripe", data)]), NOW_MS)
    assert alone.receivers == (0,)
    async with Listener(redis, keys.push_channel):
        heard = await apply(
            store,
            keys,
            Commit(transfers=[credit("t", 1)], pushes=[("stolen", data), ("watered", data)]),
            NOW_MS,
        )
    assert heard.receivers == (1, 1)  # the automatic balance push is not counted


async def test_commit_without_fields_keeps_the_version(store: Store, redis: Redis) -> None:
    keys = PlayerKeys("kim")
    await apply(store, keys, Commit(expected_ver=0, fields={"farm": b"1"}), NOW_MS)
    credited = await apply(store, keys, Commit(transfers=[credit("t", 5)]), NOW_MS)
    assert credited.ver == 1  # a credit from elsewhere does not make the owner's op retry
    again = await apply(store, keys, Commit(expected_ver=1, fields={"farm": b"2"}), NOW_MS)
    assert again.written and again.ver == 2


async def test_commit_arms_and_moves_timers(store: Store, redis: Redis) -> None:
    keys = PlayerKeys("lee")
    await apply(store, keys, Commit(timers=[("ripe|lee|0|1", 5000)]), NOW_MS)
    await apply(store, keys, Commit(timers=[("ripe|lee|0|1", 4000)]), NOW_MS)
    assert await redis.zrange(keys.timers, 0, -1, withscores=True) == [(b"ripe|lee|0|1", 4000.0)]


# --- checkout holds, expiry, debt ----------------------------------------------------------


def reserve(order: str, coins: int, expires_ms: int = NOW_MS + 900_000) -> Commit:
    return Commit(holds=[HoldOp("reserve", order, coins, expires_ms)])


def post(order: str, coins: int) -> Commit:
    return Commit(holds=[HoldOp("post", order, coins)], transfers=[debit(f"redeem:{order}", coins)])


def void(order: str) -> Commit:
    return Commit(holds=[HoldOp("void", order)])


async def funded(store: Store, player: str, coins: int = 100) -> PlayerKeys:
    keys = PlayerKeys(player)
    await apply(store, keys, Commit(transfers=[credit(f"seed:{player}", coins)]), NOW_MS)
    return keys


async def test_hold_reserve_post_once(store: Store, redis: Redis) -> None:
    keys = await funded(store, "hal")
    held = await apply(store, keys, reserve("o1", 60), NOW_MS)
    assert (held.status, held.balance, held.held) == ("ok", 100, 60)
    assert (await apply(store, keys, reserve("o1", 60), NOW_MS)).status == "exists"
    done = await apply(store, keys, post("o1", 60), NOW_MS)
    assert (done.status, done.balance, done.held) == ("ok", 40, 0)
    assert (await apply(store, keys, post("o1", 60), NOW_MS)).status == "exists"
    assert await redis.hget(keys.sys, "sink:redeem") == b"60"
    report = await verify(redis)
    assert report.ok, report.problems


@pytest.mark.parametrize(
    ("steps", "last", "status"),
    [
        ([], post("o1", 10), "HOLD_NOT_FOUND"),
        ([], void("o1"), "HOLD_NOT_FOUND"),
        ([reserve("o1", 60)], reserve("o1", 61), "HOLD_MISMATCH"),
        ([reserve("o1", 60)], post("o1", 61), "HOLD_MISMATCH"),
        ([reserve("o1", 60)], reserve("o2", 41), "INSUFFICIENT_FUNDS"),
        ([reserve("o1", 60)], Commit(transfers=[debit("spend", 41)]), "INSUFFICIENT_FUNDS"),
        ([reserve("o1", 60), post("o1", 60)], void("o1"), "HOLD_POSTED"),
        ([reserve("o1", 60), post("o1", 60)], reserve("o1", 60), "HOLD_POSTED"),
        ([reserve("o1", 60), void("o1")], post("o1", 60), "HOLD_VOIDED"),
        ([reserve("o1", 60), void("o1")], void("o1"), "exists"),
    ],
)
async def test_hold_refusals_leave_no_write(
    store: Store, redis: Redis, steps: list[Commit], last: Commit, status: str
) -> None:
    keys = await funded(store, "hil")
    for step in steps:
        assert (await apply(store, keys, step, NOW_MS)).status == "ok"
    before = await contents(redis)
    assert (await apply(store, keys, last, NOW_MS)).status == status
    assert await contents(redis) == before


async def test_a_player_holds_at_most_holds_pending_max_orders_at_once(
    store: Store, redis: Redis
) -> None:
    """The hold index is one field, rewritten whole when a hold moves: its length has a
    named limit. One reserve past it is refused unwritten, in one commit or across many;
    a settled hold makes room."""
    keys = await funded(store, "hox", coins=10 * HOLDS_PENDING_MAX)
    many = [HoldOp("reserve", f"o{n}", 1, NOW_MS + 900_000) for n in range(HOLDS_PENDING_MAX)]
    assert (await apply(store, keys, Commit(holds=many[:-1]), NOW_MS)).status == "ok"
    before = await contents(redis)
    both = Commit(holds=[many[-1], HoldOp("reserve", "extra", 1, NOW_MS + 900_000)])
    assert (await apply(store, keys, both, NOW_MS)).status == "HOLDS_FULL"
    assert await contents(redis) == before
    assert (await apply(store, keys, Commit(holds=[many[-1]]), NOW_MS)).status == "ok"
    before = await contents(redis)
    assert (await apply(store, keys, reserve("extra", 1), NOW_MS)).status == "HOLDS_FULL"
    assert await contents(redis) == before
    assert (await apply(store, keys, void("o0"), NOW_MS)).status == "ok"
    done = await apply(store, keys, reserve("extra", 1), NOW_MS)
    assert (done.status, done.held) == ("ok", HOLDS_PENDING_MAX)


async def test_hold_void_gives_the_coins_back_to_spend(store: Store, redis: Redis) -> None:
    keys = await funded(store, "vic")
    await apply(store, keys, reserve("o1", 90), NOW_MS)
    assert (await apply(store, keys, Commit(transfers=[debit("spend", 20)]), NOW_MS)).status == (
        "INSUFFICIENT_FUNDS"
    )
    assert (await apply(store, keys, void("o1"), NOW_MS)).held == 0
    spent = await apply(store, keys, Commit(transfers=[debit("spend", 20)]), NOW_MS)
    assert (spent.status, spent.balance) == ("ok", 80)


async def test_holds_racing_spends_never_overdraw(store: Store, redis: Redis) -> None:
    keys = await funded(store, "ray", 100)
    commits = [reserve(f"o{n}", 30) for n in range(4)] + [
        Commit(transfers=[debit(f"s{n}", 30)]) for n in range(4)
    ]
    results = await asyncio.gather(*(apply(store, keys, c, NOW_MS) for c in commits))
    assert sorted(r.status for r in results).count("ok") == 3
    wallet = await redis.hgetall(keys.state)
    assert int(wallet[b"bal"]) - int(wallet.get(b"held", 0)) >= 0
    assert (await verify(redis)).ok


async def test_commit_expires_batches_past_their_day(store: Store, redis: Redis) -> None:
    keys = PlayerKeys("exa")
    await apply(
        store, keys, Commit(transfers=[credit("old", 30, JUNE), credit("new", 20, DEC)]), NOW_MS
    )
    await apply(store, keys, reserve("o1", 25), NOW_MS)
    store.today_of = lambda now_ms: 20270630  # the last valid day: nothing expires yet
    assert (await apply(store, keys, Commit(), NOW_MS)).balance == 50
    store.today_of = lambda now_ms: 20270701
    swept = await apply(store, keys, Commit(), NOW_MS)
    assert (swept.balance, swept.held) == (45, 25)  # 5 expired; the 25 a hold locks did not
    last = Entry.decode((await redis.lrange(keys.journal, -1, -1))[0])
    assert (last.account, last.amount, last.batches) == ("sink:expire", -5, (20270630, -5))
    assert await redis.hget(keys.sys, "sink:expire") == b"5"
    again = await apply(store, keys, Commit(), NOW_MS)
    assert again.balance == 45 and len(await redis.lrange(keys.journal, 0, -1)) == 3
    report = await verify(redis)
    assert report.ok, report.problems


async def test_a_credit_that_expires_a_batch_reads_the_transfer_ids_once(
    store: Store, redis: Redis
) -> None:
    """The first credit after 30 June or 31 December also expires a batch, for nearly every
    player at that midnight: the credit's id and the expiry's are looked up in one read."""
    keys = PlayerKeys("exb")
    await apply(store, keys, Commit(transfers=[credit("old", 30, JUNE)]), NOW_MS)
    store.today_of = lambda now_ms: 20270701
    names = ("evalsha", "hmget", "hget", "hexists", "hincrby", "rpush", "hset", "publish",
             "spublish")  # fmt: skip
    before = [await calls(redis, name) for name in names]
    sign_in = Commit(fields={"signin": b"x"}, transfers=[credit("new", 10, DEC)])
    assert (await apply(store, keys, sign_in, NOW_MS)).balance == 10
    ran = {n: await calls(redis, n) - b for n, b in zip(names, before, strict=True)}
    # the script; the state's read and the ids' read; the mint's and the expiry sink's
    # system accounts; the two entries; the ids; the state; the `balance` push
    assert ran == {"evalsha": 1, "hmget": 2, "hget": 0, "hexists": 0, "hincrby": 2, "rpush": 1,
                   "hset": 2, "publish": ran["publish"], "spublish": ran["spublish"]}  # fmt: skip
    assert ran["publish"] + ran["spublish"] == 1
    assert [e.transfer_id for e in await live_entries(redis, keys)][1:] == [
        "expire:20270630:2",
        "new",
    ]
    assert (await verify(redis)).ok


async def test_an_expiry_whose_id_is_taken_is_refused_and_writes_nothing(
    store: Store, redis: Redis
) -> None:
    """An id commit.lua makes for an expiry is new unless the store lost a write (the seq
    in it went back): then the commit is refused, the id never overwritten."""
    keys = PlayerKeys("exc")
    await apply(store, keys, Commit(transfers=[credit("old", 30, JUNE)]), NOW_MS)
    await redis.hset(keys.txids, "expire:20270630:2", "d|30|14|2")
    store.today_of = lambda now_ms: 20270701
    before = await contents(redis)
    for change in (Commit(), Commit(transfers=[credit("new", 10, DEC)])):
        assert (await apply(store, keys, change, NOW_MS)).status == "TRANSFER_MISMATCH"
        assert await contents(redis) == before


async def test_debt_is_repaid_from_the_next_credit(store: Store, redis: Redis) -> None:
    keys = await funded(store, "deb", 10)
    claw = Commit(transfers=[debit("claw:o1", 10, "clawback")], debt_add=6)
    taken = await apply(store, keys, claw, NOW_MS)
    assert (taken.balance, taken.debt) == (0, 6)
    paid = await apply(store, keys, Commit(transfers=[credit("signin:deb:1", 4)]), NOW_MS)
    assert (paid.balance, paid.debt) == (0, 2)
    paid = await apply(store, keys, Commit(transfers=[credit("signin:deb:2", 5)]), NOW_MS)
    assert (paid.balance, paid.debt) == (3, 0)
    ids = [e.transfer_id for e in await live_entries(redis, keys)]
    assert ids[-2:] == ["signin:deb:2", "debt:signin:deb:2"]
    assert await redis.hget(keys.sys, "clawback") == b"16"
    report = await verify(redis)
    assert report.ok, report.problems


async def test_records_are_compare_and_set(store: Store, redis: Redis) -> None:
    keys = PlayerKeys("rec")
    first = Commit(records=[("order:1", b"", b"v1")])
    assert (await apply(store, keys, first, NOW_MS)).status == "ok"
    before = await contents(redis)
    assert (await apply(store, keys, first, NOW_MS)).status == "RECORD_CONFLICT"
    stale = Commit(records=[("order:1", b"v0", b"v2")], transfers=[credit("t", 1)])
    assert (await apply(store, keys, stale, NOW_MS)).status == "RECORD_CONFLICT"
    assert await contents(redis) == before
    fresh = Commit(records=[("order:1", b"v1", b"v2")])
    assert (await apply(store, keys, fresh, NOW_MS)).status == "ok"
    assert await redis.hget(keys.records, "order:1") == b"v2"


async def test_a_post_after_midnight_of_its_coins_batch_still_spends_them(
    store: Store, redis: Redis
) -> None:
    keys = PlayerKeys("mid")
    await apply(store, keys, Commit(transfers=[credit("june", 100, JUNE)]), NOW_MS)
    store.today_of = lambda now_ms: 20270630
    assert (await apply(store, keys, reserve("o1", 100), NOW_MS)).held == 100
    store.today_of = lambda now_ms: 20270701  # the coins' last valid day has passed
    posted = await apply(store, keys, post("o1", 100), NOW_MS)
    assert (posted.status, posted.balance, posted.held) == ("ok", 0, 0)
    assert await redis.hget(keys.sys, "sink:redeem") == b"100"
    assert await redis.hget(keys.sys, "sink:expire") is None
    assert (await verify(redis)).ok
