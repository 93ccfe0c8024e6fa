"""server/protocol.py's pure helpers."""

from __future__ import annotations

from datetime import date

import msgpack
from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio import Redis

from server.ledger.commit import Commit, apply
from server.ledger.ledger import Transfer
from server.protocol import balance_push, push_seq, state_entry_seq
from server.store.keys import PlayerKeys
from server.store.store import Store
from tests.conftest import Listener

SEQS = st.integers(min_value=0, max_value=2**64 - 1)  # 0: a state push's


@given(
    st.text(max_size=40),
    SEQS,
    st.dictionaries(st.text(max_size=5), st.integers(-(2**63), 2**63 - 1)),
)
def test_push_seq_reads_the_seq_of_any_push_frame(kind: str, seq: int, data: dict) -> None:
    """The bytes' fast path where the layout is commit.lua's, the unpacker elsewhere: the
    same answer either way (kinds of 32 bytes and more are not fixstrs)."""
    frame = msgpack.packb({"push": kind, "seq": seq, "data": data})
    assert push_seq(frame) == (seq or None)


@given(st.permutations(["push", "seq", "data"]), SEQS)
def test_push_seq_reads_a_frame_with_its_keys_in_any_order(order: list[str], seq: int) -> None:
    values = {"push": "note", "seq": seq, "data": {}}
    assert push_seq(msgpack.packb({key: values[key] for key in order})) == (seq or None)


async def test_push_seq_reads_the_frames_commit_lua_writes(store: Store, redis: Redis) -> None:
    keys = PlayerKeys("alice")
    for n in range(300):  # seqs past one byte and a fixint
        credit = Transfer(f"t:{n}", "c", 1, "mint:signin", date(2027, 6, 30))
        pushes = [("note", b"\x80"), ("note", b"\x80")]
        await apply(store, keys, Commit(transfers=[credit], pushes=pushes), n)
    frames = await redis.lrange(keys.inbox, 0, -1)
    assert [push_seq(f) for f in frames] == [msgpack.unpackb(f)["seq"] for f in frames]
    assert push_seq(frames[-1]) == 600


@given(st.integers(0, 2**53), st.integers(-(2**53), 2**53), st.integers(0, 2**53))
def test_a_balance_push_is_a_state_push_with_seq_0(
    balance: int, delta: int, entry_seq: int
) -> None:
    frame = balance_push(balance, delta, entry_seq)
    assert push_seq(frame) is None
    data = {"balance": balance, "delta": delta, "entry_seq": entry_seq}
    assert msgpack.unpackb(frame) == {"push": "balance", "seq": 0, "data": data}


@given(st.integers(0, 2**64 - 1), st.integers(-(2**53), 2**53), st.permutations([0, 1, 2]))
def test_state_entry_seq_reads_the_entry_seq_of_any_balance_frame(
    entry_seq: int, delta: int, order: list[int]
) -> None:
    """Read from the tail where the frame is balance_push's (and commit.lua's, below), by
    the unpacker where entry_seq is not its last key; None for a push without one."""
    assert state_entry_seq(balance_push(7, delta, entry_seq)) == entry_seq
    pairs = [("balance", 7), ("delta", delta), ("entry_seq", entry_seq)]
    data = dict(pairs[i] for i in order)
    frame = msgpack.packb({"push": "balance", "seq": 0, "data": data})
    assert state_entry_seq(frame) == entry_seq
    assert state_entry_seq(msgpack.packb({"push": "note", "seq": 0, "data": {}})) is None


async def test_the_balance_push_commit_lua_publishes_is_balance_push_s(
    store: Store, redis: Redis
) -> None:
    """The server's resume builds the frame commit.lua publishes: the same bytes."""
    keys = PlayerKeys("bea")
    async with Listener(redis, keys.push_channel) as listener:
        for n, coins in enumerate((10, 200, 70000)):  # fixints and wider ints
            credit = Transfer(f"t:{n}", "c", coins, "mint:signin", date(2027, 6, 30))
            await apply(store, keys, Commit(transfers=[credit]), n)
        frames = []
        for _ in range(3):
            message = await listener.next()
            assert message is not None
            frames.append(message["data"])
    assert frames == [
        balance_push(10, 10, 1),
        balance_push(210, 200, 2),
        balance_push(70210, 70000, 3),
    ]
