"""The credit path's floor on our stack: what a credited sign-in costs the server once the
game is taken away (`python -m bench.instructions --paths floor`).

A socket on the app's wire (server/transport/wire.py), admitted by its token as the app
admits one, subscribed to its player's push channel through the app's fan-out. Each
request is decoded, sent to the store as one script call through the app's Store
(bench/lua/floor_credit.lua publishes a `balance` push and answers in commit.lua's reply
shape), and answered with the reply a credit gets, corked as the app corks it. The push
comes back through the fan-out and, through the app's own BalanceGate
(server/transport/balance_gate.py), goes only to the player's sockets that were not given
that balance in a reply.
What is left out is everything the game adds: the dispatcher and its argument checks, the
rules' decision, the commit's keys and arguments, the socket's remembered state, metrics.
So its instructions per request, beside the credit path's, say how much of a credit is the
stack (the wire, the store's round trip, the push) and how much is ours to cut.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
from redis.asyncio.cluster import RedisCluster
from starlette.applications import Starlette

from server.auth import verify_token
from server.protocol import SUBPROTOCOL_MSGPACK, state_entry_seq
from server.store.keys import PlayerKeys
from server.store.store import Store, connect
from server.transport.admission import bearer_token
from server.transport.balance_gate import BalanceGate
from server.transport.fanout import Pushes
from server.transport.sharded import fanout_for
from server.transport.sockets import Disconnected
from server.transport.wire import Wire

SCRIPT = (Path(__file__).parent / "lua" / "floor_credit.lua").read_text()
SCRIPT_SHA = hashlib.sha1(SCRIPT.encode()).hexdigest()
FRAMES_PER_SOCKET_MAX = 100_000_000  # far above any bench run; the loop still has a bound


@dataclass
class Floor:
    store: Store
    fanout: Pushes
    sha: str
    jwt_secret: str


class FloorWire(Wire):
    """uvicorn's `ws=` class of the floor app (bench/serve.py)."""

    __slots__ = ()

    async def serve(self) -> None:
        floor: Floor = self.app_state["floor"]
        request = self.request
        token = None if request is None else bearer_token(request, {})
        if not token:
            self.deny(401, "missing token")
            return
        keys = PlayerKeys(verify_token(floor.jwt_secret, token))
        self.accept(SUBPROTOCOL_MSGPACK)
        balances = BalanceGate()

        def sink(frame: bytes) -> None:
            entry_seq = state_entry_seq(frame)
            if entry_seq is not None and balances.admit(frame, entry_seq):
                self.send_now(frame)

        channel = keys.push_channel
        confirmed = floor.fanout.subscribe(channel, sink)
        script_keys = (channel, f"{keys.state}:floor")
        publish = floor.store.publish_command
        try:
            if confirmed is not None:
                await confirmed
            for _ in range(FRAMES_PER_SOCKET_MAX):
                message = msgpack.unpackb(await self.receive())
                self.cork()
                balances.answering = True
                try:
                    status, balance, *_, entry_seq = await floor.store.call(
                        "EVALSHA", floor.sha, 2, *script_keys, publish, str(message["id"])
                    )
                    result = {"coins": 10, "streak": 1, "day": "2026-12-02", "already": False}
                    result["balance"] = balance
                    result["entry_seq"] = entry_seq
                    reply = {"id": message["id"], "ok": status == b"ok", "result": result}
                    self.send_now(msgpack.packb(reply))
                    newer = balances.answered(reply)
                    if newer is not None:
                        self.send_now(newer)
                finally:
                    balances.answering = False
                    self.uncork()
        except Disconnected:
            pass
        finally:
            await floor.fanout.detach(channel, sink)


def create_floor_app(redis_url: str, jwt_secret: str) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        store = Store(connect(redis_url))
        fanout_redis = connect(redis_url)
        fanout = fanout_for(fanout_redis)
        await fanout.start()
        if isinstance(fanout_redis, RedisCluster):  # SCRIPT LOAD on every primary
            await fanout_redis.script_load(SCRIPT)
        else:
            await store.call("SCRIPT", "LOAD", SCRIPT)
        try:
            yield {"floor": Floor(store, fanout, SCRIPT_SHA, jwt_secret)}
        finally:
            await fanout.close()
            await fanout_redis.aclose()
            await store.close()

    return Starlette(lifespan=lifespan)
