"""server/protocol.py's pure helpers."""

from __future__ import annotations

from datetime import date

import msgpack
from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio import Redis

from server.ledger.commit import Commit, apply
from server.ledger.ledger import Transfer
from server.protocol import push_seq
from server.store.keys import PlayerKeys
from server.store.store import Store

SEQS = st.integers(min_value=0, max_value=2**64 - 1)


@given(
    st.text(max_size=40),
    SEQS,
    st.dictionaries(st.text(max_size=5), st.integers(-(2**63), 2**63 - 1)),
)
def test_push_seq_reads_the_seq_of_any_push_frame(kind: str, seq: int, data: dict) -> None:
    """The bytes' fast path where the layout is commit.lua's, the unpacker elsewhere: the
    same answer either way (kinds of 32 bytes and more are not fixstrs)."""
    frame = msgpack.packb({"push": kind, "seq": seq, "data": data})
    assert push_seq(frame) == seq


@given(st.permutations(["push", "seq", "data"]), SEQS)
def test_push_seq_reads_a_frame_with_its_keys_in_any_order(order: list[str], seq: int) -> None:
    values = {"push": "note", "seq": seq, "data": {}}
    assert push_seq(msgpack.packb({key: values[key] for key in order})) == seq


async def test_push_seq_reads_the_frames_commit_lua_writes(store: Store, redis: Redis) -> None:
    keys = PlayerKeys("alice")
    for n in range(300):  # seqs past one byte and a fixint
        credit = Transfer(f"t:{n}", "c", 1, "mint:signin", date(2027, 6, 30))
        await apply(store, keys, Commit(transfers=[credit], pushes=[("note", b"\x80")]), n)
    frames = await redis.lrange(keys.inbox, 0, -1)
    assert [push_seq(f) for f in frames] == [msgpack.unpackb(f)["seq"] for f in frames]
    assert push_seq(frames[-1]) == 600
