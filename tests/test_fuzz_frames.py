"""A seeded fuzzer of WebSocket frames against a real server, a real store, a funded player.

Random and mutated msgpack and JSON frames (valid requests with wrong types, nulls, huge
ints, nested maps, mixed key types, bad ids, unknown ops, oversize frames, flipped bytes)
go over one live socket, one at a time. For every frame:

- the reply is `ok` or an error whose code is in docs/protocol.md's error table, never
  `INTERNAL`; an id the server echoes is the id that was sent;
- the socket stays open (a frame over the hard cap is the one documented close, 1009);
- a frame answered with an error changed nothing in the store (a digest of every key).

`make test` sends MANOR_FUZZ_FRAMES (default 3000) frames; a long run:
`MANOR_FUZZ_FRAMES=1000000 MANOR_FUZZ_SEED=7 .venv/bin/pytest -q tests/test_fuzz_frames.py -s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path
from typing import Any

import msgpack
import pytest
import yaml
from redis.asyncio import Redis
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from server.clock import FrozenClock
from server.ledger.commit import Commit, apply
from server.ledger.ledger import Transfer
from server.ops.friends import import_edges
from server.protocol import SUBPROTOCOL_JSON, SUBPROTOCOL_MSGPACK
from server.store.embedded import EmbeddedStore
from server.store.keys import PlayerKeys
from tests.fuzz import DOCS, digest, documented_codes, nasty, nested
from tests.live import Live, serve

FRAMES = int(os.environ.get("MANOR_FUZZ_FRAMES", "3000"))
SEED = int(os.environ.get("MANOR_FUZZ_SEED", "20261123"))
CODES = documented_codes("protocol.md", 0)
PLAYER = "fuzz"
HOUR_MS = 3_600_000
REPLY_WAIT_S = 10.0
HARD_CAP_BYTES = 65_536

TARGETS = ["pal", "ann", "bob", PLAYER]
TEMPLATES: list[tuple[str, dict[str, Any]]] = [
    ("state", {}),
    ("sign_in", {}),
    ("ledger", {"limit": 5}),
    ("ledger", {"limit": 3, "before_seq": 3}),
    ("farm", {}),
    ("plant", {"plot": 1, "seed": "turnip"}),
    ("harvest", {"plot": 0}),
    ("friends", {}),
    ("friend_request", {"player": "ann"}),
    ("friend_accept", {"player": "bob"}),
    ("friend_decline", {"player": "ann"}),
    ("friend_remove", {"player": "bob"}),
    ("friend_block", {"player": "ann"}),
    ("friend_unblock", {"player": "ann"}),
    ("visit", {"player": "pal"}),
    ("water", {"player": "pal", "plot": 1}),
    ("steal", {"player": "pal", "plot": 0}),
]
OPS = sorted({op for op, _ in TEMPLATES})


class Fuzzer:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.ids = 0

    def request_id(self) -> int | str:
        self.ids += 1
        return self.ids if self.rng.random() < 0.5 else f"fz-{self.ids}"

    def valid(self) -> dict[str, Any]:
        op, args = self.rng.choice(TEMPLATES)
        args = dict(args)
        if "player" in args and self.rng.random() < 0.3:
            args["player"] = self.rng.choice(TARGETS)
        if "plot" in args and self.rng.random() < 0.3:
            args["plot"] = self.rng.randint(0, 7)
        return {"id": self.request_id(), "op": op, "args": args}

    def mutate(self, message: dict[str, Any], binary: bool) -> dict[Any, Any]:
        rng = self.rng
        out: dict[Any, Any] = dict(message)
        args: dict[Any, Any] = dict(out["args"])
        out["args"] = args
        for _ in range(rng.choice((1, 1, 1, 2, 3))):
            kind = rng.randrange(14)
            if kind == 0:
                out["id"] = nasty(rng, binary)
            elif kind == 1:
                out["op"] = rng.choice([nasty(rng, binary), rng.choice(OPS).upper(), "fly", ""])
            elif kind == 2:
                out["args"] = nasty(rng, binary)
            elif kind in (3, 4) and args:
                args[rng.choice(list(args))] = nasty(rng, binary)
            elif kind == 5:
                args[rng.choice(["limit", "before_seq", "plot", "seed", "player", "x"])] = nasty(
                    rng, binary
                )
            elif kind == 6:
                for n in range(rng.randint(15, 20)):
                    args[f"a{n}"] = n
            elif kind == 7:
                out.pop(rng.choice(["id", "op", "args"]), None)
            elif kind == 8:
                out[rng.choice(["extra", "ID", "push", "seq"])] = nasty(rng, binary)
            elif kind == 9 and binary:  # keys that are not strings
                where = out if rng.random() < 0.5 else args
                key = rng.choice([b"id", b"op", b"limit", 1, -7])
                where[key] = nasty(rng, binary)
            elif kind == 10:
                args[rng.choice(["limit", "x", "player"])] = nested(rng, rng.randint(1, 400))
            elif kind == 11:
                out["id"] = rng.choice([1.0, True, -(2**53), 2**53, "", "i" * 65, [1], {"a": 1}])
            elif kind == 12:
                out["op"] = rng.choice(OPS) + rng.choice(["", " ", "\x00", "é", "_x"])
            else:  # oversize: past the soft limit, under the hard cap
                args["pad"] = "p" * rng.randint(4_000, 20_000)
        return out

    def encode(self, message: Any, binary: bool) -> bytes | str:
        if binary:
            try:
                packed: bytes = msgpack.packb(message)
            except (OverflowError, TypeError, ValueError):
                packed = msgpack.packb({"id": self.request_id(), "op": "fly"})
            return packed
        try:
            return json.dumps(message)
        except (TypeError, ValueError):
            return json.dumps({"id": self.request_id(), "op": "fly"})

    def bytes_mutation(self, frame: bytes) -> bytes:
        rng = self.rng
        data = bytearray(frame)
        for _ in range(rng.randint(1, 4)):
            kind = rng.randrange(4)
            if kind == 0 and data:
                data[rng.randrange(len(data))] = rng.randrange(256)
            elif kind == 1 and data:
                del data[rng.randrange(len(data)) :]
            elif kind == 2:
                at = rng.randrange(len(data) + 1)
                data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
            else:
                data += bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        return bytes(data)

    def text_mutation(self, frame: str) -> str:
        rng = self.rng
        text = list(frame)
        for _ in range(rng.randint(1, 4)):
            kind = rng.randrange(5)
            at = rng.randrange(len(text) + 1)
            if kind == 0 and text:
                text[min(at, len(text) - 1)] = rng.choice('{}[]",:0\\ né👾\x00')
            elif kind == 1:
                del text[at:]
            elif kind == 2:
                text[at:at] = list(rng.choice(["\\ud800", "\\udfff", "\\u0000", "NaN", "1e999"]))
            elif kind == 3:
                text[at:at] = list(rng.choice(['"\\ud83d"', '"\\ude00x"', "[" * 50, "{}", ","]))
            else:
                text += list(rng.choice(["}", "]", " x", "\n", ',"id":1}']))
        return "".join(text)

    def frame(self, binary: bool) -> tuple[bytes | str, dict[str, Any] | None]:
        """A frame to send and, when it was built from a map, that map."""
        roll = self.rng.random()
        message = self.valid()
        if roll < 0.1:
            return self.encode(message, binary), message
        if roll < 0.7:
            mutated = self.mutate(message, binary)
            return self.encode(mutated, binary), mutated
        if roll < 0.9:
            encoded = self.encode(message, binary)
            if isinstance(encoded, bytes):
                return self.bytes_mutation(encoded), None
            return self.text_mutation(encoded), None
        if roll < 0.95:  # the other encoding's frame type
            return self.encode(message, not binary), None
        size = self.rng.randint(0, 64)
        return bytes(self.rng.randrange(256) for _ in range(size)), None


async def reply_to(socket: ClientConnection, binary: bool) -> dict[str, Any]:
    """The next frame that is not a push."""
    while True:
        raw = await asyncio.wait_for(socket.recv(), REPLY_WAIT_S)
        message: dict[str, Any] = msgpack.unpackb(raw, raw=False) if binary else json.loads(raw)
        if "push" not in message:
            return message


async def open_socket(live: Live, binary: bool) -> ClientConnection:
    protocol = SUBPROTOCOL_MSGPACK if binary else SUBPROTOCOL_JSON
    return await connect(
        f"{live.url}/v1/ws",
        subprotocols=[protocol],  # type: ignore[list-item]
        additional_headers={"Authorization": f"Bearer {live.token(PLAYER)}"},
        max_size=1 << 20,
    )


async def set_up(live: Live, clock: FrozenClock) -> None:
    """A funded player with a crop, friends with `pal`, whose crop is ripe."""
    store = live.manor.store
    now_ms = clock.now_ms()
    credit = Transfer("fund:fuzz", "c", 1_000, "mint:grant", date(2027, 12, 31), ref="fuzz")
    assert (await apply(store, PlayerKeys(PLAYER), Commit(transfers=[credit]), now_ms)).status in (
        "ok",
    )
    await import_edges(store, [(PLAYER, "pal", now_ms - 48 * HOUR_MS)], 200)
    for player in (PLAYER, "pal"):
        client = await live.connect(player)
        await client.call("plant", plot=0, seed="turnip")
        await client.close()
    clock.advance(5 * HOUR_MS)  # both turnips ripe


@pytest.fixture
async def live(
    redis: Redis, redis_server: EmbeddedStore, tmp_path: Path, clock: FrozenClock
) -> AsyncIterator[Live]:
    """The live server, with a rate limit the fuzzer's pace never reaches."""
    async with serve(
        redis_server.url, tmp_path, clock, requests_per_s_max=10_000, request_burst_max=100_000
    ) as running:
        yield running


async def test_fuzzed_frames_get_documented_codes_and_change_nothing(
    live: Live, redis: Redis, clock: FrozenClock
) -> None:
    assert "INTERNAL" in CODES and "BAD_FRAME" in CODES  # the table was found
    await set_up(live, clock)
    rng = random.Random(SEED)
    fuzzer = Fuzzer(rng)
    outcomes: Counter[str] = Counter()
    started = time.monotonic()
    sockets = {True: await open_socket(live, True), False: await open_socket(live, False)}
    before = await digest(redis)
    hard_closes = 0
    try:
        for n in range(FRAMES):
            binary = n % 2 == 0
            socket = sockets[binary]
            if n % 997 == 500:  # the one documented close: over the hard cap
                await socket.send(b"\x00" * (HARD_CAP_BYTES + 1))
                with contextlib.suppress(ConnectionClosed):
                    await asyncio.wait_for(socket.recv(), REPLY_WAIT_S)
                assert socket.close_code == 1009
                hard_closes += 1
                sockets[binary] = await open_socket(live, binary)
                continue
            frame, message = fuzzer.frame(binary)
            await socket.send(frame)
            reply = await reply_to(socket, binary)
            code = "ok" if reply.get("ok") is True else reply["error"]["code"]
            outcomes[code] += 1
            context = f"frame {n} (seed {SEED}): {frame[:300]!r} -> {reply}"
            assert code != "INTERNAL", context
            assert code == "ok" or code in CODES, context
            assert set(reply) == {"id", "ok", "result" if code == "ok" else "error"}, context
            if reply["id"] is not None and message is not None:
                assert reply["id"] == message.get("id"), context
            after = await digest(redis)
            if code != "ok":
                assert after == before, f"an error reply changed the store: {context}"
            before = after
            if n % 250 == 249:  # still usable, after whatever came before
                probe = {"id": f"probe-{n}", "op": "state", "args": {}}
                await socket.send(fuzzer.encode(probe, binary))
                assert (await reply_to(socket, binary))["ok"] is True
        for socket in sockets.values():
            assert socket.close_code is None
    finally:
        for socket in sockets.values():
            await socket.close()
    elapsed_s = time.monotonic() - started
    print(
        f"\nfuzz frames: {FRAMES} sent (seed {SEED}) in {elapsed_s:.1f} s, "
        f"{hard_closes} hard-cap closes; replies: {dict(outcomes.most_common())}"
    )
    assert outcomes["INTERNAL"] == 0
    assert sum(outcomes.values()) + hard_closes == FRAMES


def test_the_asyncapi_error_codes_are_the_protocol_table() -> None:
    document = yaml.safe_load((DOCS / "asyncapi.yaml").read_text("utf-8"))
    assert set(document["components"]["schemas"]["ErrorCode"]["enum"]) == CODES
