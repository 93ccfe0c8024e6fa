"""`verify` against a real store: a clean ledger passes; each kind of tampering is named."""

from __future__ import annotations

from datetime import date

import msgpack
import pytest
from redis.asyncio import Redis

from server.ledger.commit import Commit, apply
from server.ledger.ledger import Entry, Transfer
from server.ledger.verify import verify
from server.store.keys import PlayerKeys
from server.store.store import Store

NOW_MS = 1_790_000_000_000
BATCH = date(2027, 6, 30)


async def seed(store: Store, players: tuple[str, ...] = ("ada", "ben")) -> None:
    for player in players:
        keys = PlayerKeys(player)
        for day in range(1, 4):
            transfer = Transfer(f"signin:{player}:{day}", "c", 10 * day, "mint:signin", BATCH)
            await apply(store, keys, Commit(transfers=[transfer]), NOW_MS + day)
        spend = Transfer(f"spend:{player}", "d", 5, "sink:redeem")
        await apply(store, keys, Commit(transfers=[spend]), NOW_MS + 9)


async def test_verify_passes_a_clean_ledger(store: Store, redis: Redis) -> None:
    await seed(store)
    report = await verify(redis)
    assert report.ok, report.problems
    assert (report.players, report.entries, report.player_sum) == (2, 8, 110)
    assert report.system_sum == -110
    one = await verify(redis, "ada")
    assert one.ok and one.players == 1 and one.entries == 4


async def rewrite_entry(
    redis: Redis, player: str, index: int, position: int, value: object
) -> None:
    keys = PlayerKeys(player)
    raw = await redis.lindex(keys.journal, index)
    fields = msgpack.unpackb(raw)
    fields[position] = value
    await redis.lset(keys.journal, index, msgpack.packb(fields))


@pytest.mark.parametrize(
    ("position", "value", "words"),
    [
        (3, 1000, "seq 3"),  # amount inflated: the chain of the next entry breaks
        (4, 61, "seq 3"),  # balance_after edited
        (0, 9, "seq 9"),  # seq edited
        (7, 12345, "seq 3"),  # the link to the entry before
    ],
)
async def test_verify_names_the_first_tampered_entry(
    store: Store, redis: Redis, position: int, value: object, words: str
) -> None:
    await seed(store)
    await rewrite_entry(redis, "ada", 2, position, value)
    report = await verify(redis)
    assert not report.ok
    assert "player ada" in report.problems[0] and words in report.problems[0]


async def test_verify_catches_a_tampered_last_entry_by_the_wallet_head(
    store: Store, redis: Redis
) -> None:
    await seed(store)
    keys = PlayerKeys("ben")
    last = Entry.decode(await redis.lindex(keys.journal, -1))
    await rewrite_entry(redis, "ben", -1, 6, last.ref + "x")  # only the ref: balances agree
    report = await verify(redis)
    assert report.problems == ["player ben: wallet head/seq do not match the journal end"]


async def test_verify_catches_a_deleted_entry(store: Store, redis: Redis) -> None:
    await seed(store)
    keys = PlayerKeys("ada")
    await redis.lpop(keys.journal)
    report = await verify(redis, "ada")
    assert not report.ok and "expected seq 1" in report.problems[0]


async def test_verify_catches_an_edited_balance_and_a_forged_system_account(
    store: Store, redis: Redis
) -> None:
    await seed(store)
    keys = PlayerKeys("ada")
    await redis.hincrby(keys.state, "bal", 100)
    await redis.hincrby(keys.sys, "mint:signin", -3)
    problems = (await verify(redis)).problems
    assert any("player ada: wallet balance 155, replay 55" in p for p in problems)
    assert any("account mint:signin" in p for p in problems)
    assert any("sum to" in p for p in problems)
