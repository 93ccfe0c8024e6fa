"""The store's layout (server/store/layout.py): a store of layout 1 (wallets as hashes of
their own) or 2 (batches and holds as a field each) is refused by the server and the tools
until `manor store migrate` takes it to layout 3; its books still prove afterwards, and go
on."""

from __future__ import annotations

import zlib
from datetime import date
from pathlib import Path

import msgpack
import pytest
from redis.asyncio import Redis

from server.ledger.commit import Commit, HoldOp, apply
from server.ledger.ledger import Transfer, Wallet
from server.ledger.verify import verify
from server.store import layout
from server.store.embedded import EmbeddedStore, free_port
from server.store.keys import BUCKETS, PlayerKeys, bucket_of
from server.store.store import Store
from tests.conftest import keys_matching
from tests.test_cli import manor

BATCH = date(2027, 6, 30)
NOW_MS = 1_795_000_000_000
PLAYERS = ("ann", "bo:b", "cy")  # a player id may hold `:`


def wallet_field(name: bytes) -> bool:
    """Whether a layout-2 state-hash field is the wallet's (commit.lua's header then)."""
    return name in (b"bal", b"seq", b"head", b"held", b"debt") or name.startswith(
        (b"b:", b"h:", b"ck_")
    )


def comparable(state: dict[bytes, bytes]) -> dict[bytes, object]:
    """A layout-3 hash with its hold index decoded (a msgpack map's order is not kept)."""
    out: dict[bytes, object] = dict(state)
    if b"hx" in out:
        out[b"hx"] = msgpack.unpackb(state[b"hx"], raw=False)
    return out


async def books(store: Store) -> None:
    """Credits, a debit, a hold and a rule field for each player, through commit.lua."""
    for n, player in enumerate(PLAYERS):
        keys = PlayerKeys(player)
        credit = Transfer(f"signin:{player}:1", "c", 30 + n, "mint:signin", BATCH)
        done = await apply(store, keys, Commit(fields={"signin": b"x"}, transfers=[credit]), NOW_MS)
        assert done.status == "ok"
        spend = Transfer(f"mall:{player}:1", "d", 5, "sink:mall", None)
        hold = HoldOp("reserve", f"order-{player}", 7, NOW_MS + 10**9)
        done = await apply(store, keys, Commit(transfers=[spend], holds=[hold]), NOW_MS + 1)
        assert done.status == "ok"


async def as_layout_2(redis: Redis) -> dict[str, dict[bytes, bytes]]:
    """Unpack each player's batches and hold index as a layout-2 server kept them
    (`b:<day>` = coins, `h:<order>` = `<coins>|<expires_ms>`), and mark the store 2.
    Returns the hashes before."""
    before = {}
    for player in PLAYERS:
        keys = PlayerKeys(player)
        state = await redis.hgetall(keys.state)
        before[player] = state
        fields = {
            f"b:{pair.split(b'=')[0].decode()}": pair.split(b"=")[1]
            for pair in state[b"bt"].split(b",")
        }
        index = msgpack.unpackb(state[b"hx"], raw=False)
        fields |= {
            f"h:{order}": f"{coins}|{expires}".encode() for order, (coins, expires) in index.items()
        }
        await redis.hset(keys.state, mapping=fields)  # type: ignore[arg-type]
        await redis.hdel(keys.state, "bt", "hx")
    await redis.set(layout.LAYOUT_KEY, 2)
    return before


async def as_layout_1(redis: Redis) -> dict[str, dict[bytes, bytes]]:
    """As layout 2, then split each player's hash as a layout-1 server kept it: the
    wallet's fields in `<base>:wallet`, the rule's in `<base>:state`, no mark. Returns the
    hashes before."""
    before = await as_layout_2(redis)
    for player in PLAYERS:
        keys = PlayerKeys(player)
        state = await redis.hgetall(keys.state)
        wallet = {f: v for f, v in state.items() if wallet_field(f)}
        assert wallet[b"bal"] and wallet[b"held"] == b"7"
        await redis.hset(layout.legacy_wallet_key(player), mapping=wallet)  # type: ignore[arg-type]
        await redis.hdel(keys.state, *wallet)
    await redis.delete(layout.LAYOUT_KEY)
    return before


async def test_a_new_store_is_marked_with_this_layout(redis: Redis) -> None:
    assert await redis.get(layout.LAYOUT_KEY) is None
    await layout.check(redis)
    assert await redis.get(layout.LAYOUT_KEY) == str(layout.LAYOUT).encode()
    await layout.check(redis)  # marked: one read


async def test_a_layout_1_store_is_refused_then_migrated_and_its_books_prove(
    store: Store, redis: Redis
) -> None:
    await books(store)
    assert (await verify(redis)).ok
    before = await as_layout_1(redis)
    # What the refusal prevents: this server reads every layout-1 wallet as empty.
    assert not (await verify(redis)).ok
    with pytest.raises(layout.LayoutRefused, match="manor store migrate"):
        await layout.check(redis)
    assert await redis.get(layout.LAYOUT_KEY) is None

    done = await layout.migrate(store)
    assert (done.wallets, done.packed) == (len(PLAYERS), len(PLAYERS))
    assert done.fields == sum(sum(map(wallet_field, h)) + 2 for h in before.values())
    assert await keys_matching(redis, "*:wallet") == []
    for player in PLAYERS:
        after = await redis.hgetall(PlayerKeys(player).state)
        assert comparable(after) == comparable(before[player])
    assert (await verify(redis)).ok
    await layout.check(redis)

    # The books go on from where layout 1 left them: the chain, the batch, the hold.
    keys = PlayerKeys("ann")
    credit = Transfer("signin:ann:2", "c", 10, "mint:signin", BATCH)
    assert (await apply(store, keys, Commit(transfers=[credit]), NOW_MS + 2)).status == "ok"
    wallet = Wallet.from_hash(await redis.hgetall(keys.state))
    assert (wallet.balance, wallet.held, wallet.seq) == (35, 7, 3)
    assert (await verify(redis)).ok

    again = await layout.migrate(store)  # resumable: nothing left to move
    assert (again.wallets, again.fields, again.packed) == (0, 0, 0)


async def test_a_layout_2_store_is_refused_then_packed(store: Store, redis: Redis) -> None:
    await books(store)
    before = await as_layout_2(redis)
    with pytest.raises(layout.LayoutRefused, match=r"layout 2 .* `manor store migrate`"):
        await layout.check(redis)
    done = await layout.migrate(store)
    assert (done.wallets, done.packed) == (0, len(PLAYERS))
    for player in PLAYERS:
        after = await redis.hgetall(PlayerKeys(player).state)
        assert comparable(after) == comparable(before[player])
        assert not [f for f in after if f.startswith((b"b:", b"h:"))]
    assert (await verify(redis)).ok
    await layout.check(redis)


@pytest.mark.parametrize(
    ("fields", "status"),
    [
        ({"b:20270630": "10", "bt": "20270630=10"}, "CLASH"),
        ({"h:o1": "5|99", "hx": "x"}, "CLASH"),
        ({"b:20270630": "ten"}, "BAD"),
        ({"h:o1": "5"}, "BAD"),
    ],
)
async def test_a_wallet_that_cannot_be_packed_is_left_as_it_is(
    store: Store, redis: Redis, fields: dict[str, str], status: str
) -> None:
    keys = PlayerKeys("fay")
    await redis.hset(keys.state, mapping={**fields, "bal": 10})  # type: ignore[arg-type]
    before = await redis.hgetall(keys.state)
    with pytest.raises(layout.LayoutRefused, match=f"fay.*{status}"):
        await layout.migrate(store)
    assert await redis.hgetall(keys.state) == before
    assert await redis.get(layout.LAYOUT_KEY) is None


async def test_a_wallet_whose_fields_clash_with_the_state_hash_is_not_moved(
    store: Store, redis: Redis
) -> None:
    keys = PlayerKeys("dee")
    await redis.hset(keys.state, mapping={"bal": 3, "signin": b"x"})
    await redis.hset(layout.legacy_wallet_key("dee"), mapping={"bal": 5, "seq": 1})
    with pytest.raises(layout.LayoutRefused, match="dee"):
        await layout.migrate(store)
    assert await redis.hgetall(keys.state) == {b"bal": b"3", b"signin": b"x"}
    assert await redis.hgetall(layout.legacy_wallet_key("dee")) == {b"bal": b"5", b"seq": b"1"}
    assert await redis.get(layout.LAYOUT_KEY) is None


def test_only_a_players_own_wallet_key_names_a_layout_1_wallet() -> None:
    assert layout.legacy_wallet(layout.legacy_wallet_key("ann").encode()) == "ann"
    assert layout.legacy_wallet(layout.legacy_wallet_key("bo:b").encode()) == "bo:b"
    # Another key of ann's that ends in `:wallet` (a request id "wallet"): its would-be
    # player "ann:rep:s" has another bucket than ann's tag.
    key = f"{PlayerKeys('ann').replies}s:wallet"
    assert bucket_of("ann:rep:s") != bucket_of("ann")
    assert layout.legacy_wallet(key.encode()) is None
    wrong = (zlib.crc32(b"ann") + 1) % BUCKETS
    assert layout.legacy_wallet(f"m:{{b{wrong}}}:ann:wallet".encode()) is None


@pytest.mark.parametrize("field", ["bal", "head", "bt", "hx", "ck_seq", "pseq"])
async def test_a_rule_field_named_as_the_books_is_refused_unwritten(
    store: Store, redis: Redis, field: str
) -> None:
    """The rule's fields share the hash with the wallet's: one that would overwrite the
    books is BAD_TRANSFER before any write."""
    keys = PlayerKeys("eve")
    credit = Transfer("signin:eve:1", "c", 10, "mint:signin", BATCH)
    assert (await apply(store, keys, Commit(transfers=[credit]), NOW_MS)).status == "ok"
    before = await redis.hgetall(keys.state)
    bad = Commit(fields={field: b"99"}, transfers=[Transfer("t2", "c", 1, "mint:signin", BATCH)])
    assert (await apply(store, keys, bad, NOW_MS + 1)).status == "BAD_TRANSFER"
    assert await redis.hgetall(keys.state) == before
    assert await redis.llen(keys.journal) == 1


async def test_the_tools_refuse_a_layout_1_store_until_migrate_moves_it(
    store: Store, redis: Redis, redis_server: EmbeddedStore, tmp_path: Path
) -> None:
    await books(store)
    await as_layout_1(redis)
    url, port = redis_server.url, str(free_port())
    for command in (("serve",), ("ledger", "verify"), ("ledger", "compact")):
        done = manor(*command, MANOR_REDIS_URL=url, MANOR_PORT=port, MANOR_DATA_DIR=str(tmp_path))
        assert done.returncode == 2, (command, done.stderr)
        assert "manor store migrate" in done.stderr
        assert "Traceback" not in done.stderr
    moved = manor("store", "migrate", MANOR_REDIS_URL=url)
    assert moved.returncode == 0, moved.stderr
    assert f"{len(PLAYERS)} wallets moved" in moved.stdout
    good = manor("ledger", "verify", MANOR_REDIS_URL=url)
    assert good.returncode == 0, good.stderr
    assert f"{len(PLAYERS)} players" in good.stdout
