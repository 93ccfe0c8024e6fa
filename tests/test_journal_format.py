"""Journal format 2 against a real store: the entry without its id, the id once in txids,
account codes, the short link, and journals that began in format 1 (server/ledger/ledger.py)."""

from __future__ import annotations

import hashlib
import re
from datetime import date
from pathlib import Path

import msgpack
import pytest
from redis.asyncio import Redis

from server.ledger import accounts
from server.ledger.commit import Commit, apply
from server.ledger.compaction import compact
from server.ledger.journal_page import journal_page
from server.ledger.ledger import Transfer, batch_int, head_tag, id_ref, stored_ref
from server.ledger.posting import Posting
from server.ledger.verify import live_entries, verify
from server.store.keys import PlayerKeys, players_index
from server.store.scripts import load_script
from server.store.store import Store

DAY_MS = 86_400_000
NOW_MS = 1_795_000_000_123  # 2026-11-18, not on a second: entries keep the second
OLD_MS = NOW_MS - 200 * DAY_MS
BATCH = date(2027, 12, 31)


def credit(tid: str, amount: int, account: str = "mint:signin", ref: str = "") -> Transfer:
    return Transfer(tid, "c", amount, account, BATCH, ref)


async def post(store: Store, keys: PlayerKeys, transfer: Transfer, now_ms: int = NOW_MS) -> str:
    return (await apply(store, keys, Commit(transfers=[transfer]), now_ms)).status


def test_the_codes_commit_lua_writes_itself_are_the_table_s() -> None:
    source = load_script("commit").source
    table = re.search(r"local SCRIPT_ACCOUNTS = \{(.*)\}", source)
    assert table is not None
    pairs = re.findall(r"\[?'?([\w:]+)'?\]? = (\d+)", table.group(1))
    assert {name: int(code) for name, code in pairs} == {
        "sink:expire": accounts.ACCOUNT_CODES["sink:expire"],
        "clawback": accounts.ACCOUNT_CODES["clawback"],
    }
    assert len(set(accounts.ACCOUNT_CODES.values())) == len(accounts.ACCOUNT_CODES)


@pytest.mark.parametrize(
    ("transfer_id", "ref", "stored"),
    [
        ("signin:ann:2026-11-18", "2026-11-18", False),
        ("signin:ann:2026-11-18", "welcome", "welcome"),
        ("signin:ann:2026-11-18", "", ""),
        ("grant:", "", False),  # an empty last field is still the id's last field
        (":only", "only", "only"),  # nothing before the colon: kept as given
        ("plain", "plain", "plain"),
        ("plain", "", ""),
    ],
)
def test_a_ref_is_stored_false_only_where_the_id_gives_it_back(
    transfer_id: str, ref: str, stored: str | bool
) -> None:
    """commit.lua stores what stored_ref says; a reader gets the ref back from the id."""
    assert stored_ref(transfer_id, ref) == stored
    assert (id_ref(transfer_id) if stored is False else stored) == ref


async def test_an_entry_holds_no_id_and_the_index_holds_its_seq(store: Store, redis: Redis) -> None:
    keys = PlayerKeys("fay")
    assert await post(store, keys, credit("signin:fay:2026-11-18", 10, ref="2026-11-18")) == "ok"
    assert await post(store, keys, credit("grant:g1", 5, "mint:odd", ref="welcome")) == "ok"
    first, second = await redis.lrange(keys.journal, 0, -1)
    assert msgpack.unpackb(first) == [1, NOW_MS // 1000, 1, 10, 10, [20271231, 10], False, 0]
    assert len(first) <= 24  # a sign-in's entry: its id and its day are in txids only
    wallet = await redis.hgetall(keys.state)
    head_1 = hashlib.sha1(msgpack.packb("signin:fay:2026-11-18") + first).hexdigest()
    # an account without a code is stored by name; a ref that is not the id's is kept
    assert msgpack.unpackb(second) == [
        2,
        NOW_MS // 1000,
        "mint:odd",
        5,
        15,
        [20271231, 5],
        "welcome",
        head_tag(head_1),
    ]
    head_2 = hashlib.sha1(head_1.encode() + msgpack.packb("grant:g1") + second).hexdigest()
    assert wallet[b"head"].decode() == head_2
    assert await redis.hgetall(keys.txids) == {b"signin:fay:2026-11-18": b"1", b"grant:g1": b"2"}
    entries = await live_entries(redis, keys)
    assert [(e.transfer_id, e.account, e.ref) for e in entries] == [
        ("signin:fay:2026-11-18", "mint:signin", "2026-11-18"),
        ("grant:g1", "mint:odd", "welcome"),
    ]
    page = await journal_page(store, keys, 10, None)
    assert [(e["transfer_id"], e["ref"]) for e in page["entries"]] == [
        ("grant:g1", "welcome"),
        ("signin:fay:2026-11-18", "2026-11-18"),
    ]
    assert (await verify(redis)).ok


async def test_an_id_reused_with_other_coins_is_refused_live_and_archived(
    store: Store, redis: Redis, tmp_path: Path
) -> None:
    keys = PlayerKeys("gil")
    assert await post(store, keys, credit("order:o1:reward", 30), OLD_MS) == "ok"
    assert await post(store, keys, credit("signin:gil:1", 5)) == "ok"
    for when in ("live", "archived"):
        assert await post(store, keys, credit("order:o1:reward", 30)) == "exists", when
        assert await post(store, keys, credit("order:o1:reward", 31)) == "TRANSFER_MISMATCH"
        other_account = credit("order:o1:reward", 30, "mint:order")
        assert await post(store, keys, other_account) == "TRANSFER_MISMATCH", when
        debit = Transfer("order:o1:reward", "d", 30, "mint:signin")
        assert await post(store, keys, debit) == "TRANSFER_MISMATCH", when
        report = await compact(store, tmp_path, NOW_MS)
        assert report.problems == []
    archived = await redis.hget(keys.txids, "order:o1:reward")
    assert archived == b"c|30|1|1"  # the account by its code
    assert Posting.parse(archived) == Posting("c", 30, "mint:signin", 1)
    assert await redis.hget(keys.txids, "signin:gil:1") == b"2"  # still live
    assert (await verify(redis, archive_dir=tmp_path)).ok


async def test_a_retry_matches_the_account_by_name_or_by_code(
    store: Store, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An entry written while its account had no code, retried by a process that has one,
    is the same posting. (The other way round, a process that lacks a code retrying what
    one that has it wrote, is what accounts.py's rule keeps from happening.)"""
    keys = PlayerKeys("jon")
    assert await post(store, keys, credit("gift:1", 9, "mint:gift")) == "ok"
    monkeypatch.setitem(accounts.ACCOUNT_CODES, "mint:gift", 99)
    monkeypatch.setitem(accounts.ACCOUNT_NAMES, 99, "mint:gift")
    assert await post(store, keys, credit("gift:1", 9, "mint:gift")) == "exists"
    assert await post(store, keys, credit("gift:2", 4, "mint:gift")) == "ok"
    assert msgpack.unpackb(await redis.lindex(keys.journal, 1))[2] == 99
    assert await post(store, keys, credit("gift:2", 4, "mint:other")) == "TRANSFER_MISMATCH"
    monkeypatch.undo()
    # A code this process does not know is read, not refused; verify then reports it.
    [_, unknown] = await live_entries(redis, keys)
    assert unknown.account == "code:99"
    assert not (await verify(redis)).ok


async def test_a_renamed_id_breaks_the_chain(store: Store, redis: Redis) -> None:
    keys = PlayerKeys("hob")
    for n in range(3):
        assert await post(store, keys, credit(f"signin:hob:{n}", 5)) == "ok"
    await redis.hdel(keys.txids, "signin:hob:1")
    await redis.hset(keys.txids, "signin:hob:x", 2)
    problems = (await verify(redis)).problems
    assert problems and "player hob entry seq 3" in problems[0]  # the next entry's link
    await redis.hdel(keys.txids, "signin:hob:x")
    problems = (await verify(redis)).problems
    assert problems and "seq 2 (): no transfer id" in problems[0]


def format_1_entry(
    seq: int, ts_ms: int, tid: str, coins: int, balance: int, head: str
) -> tuple[bytes, str]:
    raw = msgpack.packb(
        [seq, ts_ms, tid, "mint:signin", coins, balance, [batch_int(BATCH), coins], "", head]
    )
    return raw, hashlib.sha1(raw).hexdigest()


async def test_a_format_1_journal_goes_on_in_format_2(
    store: Store, redis: Redis, tmp_path: Path
) -> None:
    """A wallet written before format 2 (its entries, txids values and head as the old
    commit.lua wrote them) takes new entries, and every reader reads both."""
    keys = PlayerKeys("ida")
    head, balance = "", 0
    for seq in (1, 2):
        balance += 10
        raw, new_head = format_1_entry(seq, OLD_MS + seq, f"old:{seq}", 10, balance, head)
        await redis.rpush(keys.journal, raw)
        await redis.hset(keys.txids, f"old:{seq}", f"c|10|mint:signin|{seq}")
        head = new_head
    await redis.hset(
        keys.state,
        mapping={"bal": balance, "seq": 2, "head": head, "bt": f"{batch_int(BATCH)}={balance}"},
    )
    await redis.hset(keys.sys, "mint:signin", -balance)
    await redis.sadd(players_index(keys.bucket), "ida")
    assert (await verify(redis)).ok
    assert await post(store, keys, credit("old:2", 10)) == "exists"
    assert await post(store, keys, credit("old:2", 11)) == "TRANSFER_MISMATCH"
    assert await post(store, keys, credit("new:3", 7)) == "ok"
    entries = await live_entries(redis, keys)
    assert [(e.seq, e.transfer_id, e.tag is None) for e in entries] == [
        (1, "old:1", True),
        (2, "old:2", True),
        (3, "new:3", False),
    ]
    assert entries[2].tag == head_tag(head)
    page = await journal_page(store, keys, 10, None)
    assert [e["transfer_id"] for e in page["entries"]] == ["new:3", "old:2", "old:1"]
    assert (await verify(redis)).ok
    report = await compact(store, tmp_path, NOW_MS + 100 * DAY_MS)  # all three archived
    assert (report.entries, report.problems) == (3, [])
    assert await redis.hget(keys.txids, "new:3") == b"c|7|1|3"
    assert await post(store, keys, credit("new:3", 7)) == "exists"
    assert await post(store, keys, credit("old:1", 10)) == "exists"
    checked = await verify(redis, archive_dir=tmp_path)
    assert checked.ok and checked.entries == 3, checked.problems


async def test_the_chain_agrees_with_lua_for_every_id_length(store: Store, redis: Redis) -> None:
    """The head covers msgpack(id): Lua's cmsgpack and Python's msgpack must pack an id of
    each length class the same (fixstr up to 31 bytes, str8 beyond)."""
    keys = PlayerKeys("kit")
    for size in (1, 31, 32, 200):
        transfer_id = "len:" + "x" * (size - 4) if size > 4 else "k" * size
        assert await post(store, keys, credit(transfer_id, 1)) == "ok"
    report = await verify(redis)
    assert report.ok and report.entries == 4, report.problems
