"""The dispatch table: op name -> argument spec and handler.

Rule ops follow one shape: load the player's snapshot (one round trip), call the pure
rule, commit its outcome with a version check (one script call), retry on a conflict.
A request id's reply is stored by the same commit, so a retry replays it exactly.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

import msgpack
from redis.exceptions import (
    ClusterDownError,
    MasterDownError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisClusterException,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from game_rules import RuleViolation
from server.clock import Clock
from server.ledger.commit import Commit, apply
from server.protocol import ProtocolError, Request
from server.rulebook import Rulebook
from server.settings import Settings
from server.store.keys import PlayerKeys
from server.store.store import Arg, ReplicaTimeout, Store

COMMIT_ATTEMPTS_MAX = 5

# The store cannot answer now (it may have applied the request before failing): the caller
# may retry with the same id (WebSocket `STORE_UNAVAILABLE`, HTTP 503 with Retry-After).
# Connection refused, reset or timed out (redis-py's ConnectionError and TimeoutError,
# BusyLoadingError included: the store is loading its data after a restart), a replica
# that refuses writes, a store that is out of memory (`noeviction` refuses writes) or whose
# primary is down, a cluster none of whose nodes answers, or a write no replica confirmed
# in time. A script refused by OOM or READONLY never started, so it wrote nothing.
STORE_DOWN_ERRORS: tuple[type[Exception], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    ReadOnlyError,
    OutOfMemoryError,
    MasterDownError,
    RedisClusterException,  # no node of the cluster answers
    ClusterDownError,
    ReplicaTimeout,  # MANOR_STORE_ACK=replica: applied, but no replica confirmed it yet
)


class OpError(Exception):
    """A refusal with a stable code (rule violations and store refusals)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Services:
    store: Store
    clock: Clock
    rulebook: Rulebook
    settings: Settings


class Snapshot(NamedTuple):
    """A player's state hash and balance as one round trip read them. Immutable (a
    NamedTuple: built on every rule op, at half a frozen dataclass's cost)."""

    ver: int
    fields: dict[bytes, bytes]
    balance: int

    def component(self, name: str) -> Any:
        raw = self.fields.get(name.encode())
        return None if raw is None else msgpack.unpackb(raw, raw=False)


class Change(NamedTuple):
    """What a rule op decided: the reply, and the commit that makes it true (if any).
    Immutable (a NamedTuple, as Snapshot)."""

    result: dict[str, Any]
    commit: Commit | None = None


@dataclass(frozen=True, slots=True)
class IntArg:
    low: int
    high: int
    default: int | None = None
    required: bool = False

    def check(self, op: str, name: str, value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise OpError("BAD_ARGS", f"{op}: {name} must be an integer")
        if not self.low <= value <= self.high:
            raise OpError("BAD_ARGS", f"{op}: {name} must be in {self.low}..{self.high}")
        return value


@dataclass(frozen=True, slots=True)
class StrArg:
    pattern: re.Pattern[str]
    default: str | None = None
    required: bool = True

    def check(self, op: str, name: str, value: object) -> str:
        if not isinstance(value, str) or not self.pattern.fullmatch(value):
            raise OpError("BAD_ARGS", f"{op}: {name} must match {self.pattern.pattern}")
        return value


ArgSpec = IntArg | StrArg
OpRun = Callable[["Services", PlayerKeys, Request, dict[str, Any]], Awaitable[dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class Op:
    args: dict[str, ArgSpec]
    run: OpRun


def check_args(op: str, spec: dict[str, ArgSpec], args: dict[str, Any]) -> dict[str, Any]:
    if not spec and not args:  # an op without args (sign_in, state): nothing to check
        return {}
    unknown = set(args) - set(spec)
    if unknown:
        raise OpError("BAD_ARGS", f"{op}: unknown args {sorted(unknown)}")
    out: dict[str, Any] = {}
    for name, arg in spec.items():
        if name in args and args[name] is None:  # null is no value: not "absent", not a default
            raise OpError("BAD_ARGS", f"{op}: {name} must not be null")
        value = args.get(name, arg.default)
        if value is None:
            if arg.required:
                raise OpError("BAD_ARGS", f"{op}: {name} is required")
            out[name] = None
            continue
        out[name] = arg.check(op, name, value)
    return out


def reply_key(keys: PlayerKeys, request: Request) -> str:
    kind = "i" if isinstance(request.id, int) else "s"
    return keys.reply(f"{kind}:{request.id}")


async def load(store: Store, keys: PlayerKeys, reply: str | None) -> tuple[Snapshot, Any]:
    """The player's state and balance (and a cached reply) in one round trip."""
    commands: list[tuple[Arg, ...]] = [("HGETALL", keys.state), ("HGET", keys.wallet, "bal")]
    if reply:
        commands.append(("GET", reply))
    got = await store.call_many(*commands)
    return snapshot_of_load(got), (got[2] if reply else None)


def snapshot_of_load(got: list[Any]) -> Snapshot:
    """The snapshot in the replies of load's first two commands."""
    state: dict[bytes, bytes] = got[0]
    return Snapshot(int(state.get(b"ver", 0)), state, int(got[1] or 0))


RuleOp = Callable[[Services, PlayerKeys, Snapshot, dict[str, Any], int], Change]


def rule_op(decide: RuleOp) -> OpRun:
    """Wrap a synchronous decision into load -> decide -> commit, retried on conflicts."""

    async def run(
        services: Services, keys: PlayerKeys, request: Request, args: dict[str, Any]
    ) -> dict[str, Any]:
        key = reply_key(keys, request)
        store = services.store
        for _ in range(COMMIT_ATTEMPTS_MAX):
            # load(), inline: one coroutine less on every request (this is every rule op)
            got = await store.call_many(
                ("HGETALL", keys.state), ("HGET", keys.wallet, "bal"), ("GET", key)
            )
            snapshot, cached = snapshot_of_load(got), got[2]
            if cached:
                return replay(request, cached)
            now_ms = services.clock.now_ms()
            try:
                change = decide(services, keys, snapshot, args, now_ms)
            except RuleViolation as exc:
                raise OpError(exc.code, exc.message) from None
            if change.commit is None:
                return change.result
            commit = replace(
                change.commit,
                expected_ver=snapshot.ver,
                reply_body=msgpack.packb({"op": request.op, "result": change.result}),
                reply_ttl_s=services.settings.reply_retention_s,
            )
            done = await apply(store, keys, commit, now_ms, reply_key=key)
            if done.status in ("ok", "exists"):
                return {**change.result, "balance": done.balance}
            if done.status != "CONFLICT":
                raise OpError(done.status, f"the ledger refused the change: {done.status}")
        raise OpError("BUSY", "the player's state kept changing; try again")

    return run


def replay(request: Request, cached: bytes) -> dict[str, Any]:
    """A stored reply: `<balance>:<msgpack {op, result}>` (commit.lua writes it)."""
    balance, _, packed = cached.partition(b":")
    body = msgpack.unpackb(packed, raw=False)
    if body["op"] != request.op:
        raise OpError("ID_REUSED", f"request id {request.id!r} was used for {body['op']}")
    result: dict[str, Any] = body["result"]
    return {**result, "balance": int(balance)}


@dataclass
class Dispatcher:
    services: Services
    ops: dict[str, Op]

    def handle(self, keys: PlayerKeys, request: Request) -> Awaitable[dict[str, Any]]:
        """The op's run, to be awaited (no coroutine of its own: one frame less per
        request); an unknown op or bad args raise here, before anything runs."""
        op = self.ops.get(request.op)
        if op is None:
            raise ProtocolError("UNKNOWN_OP", f"unknown op {request.op!r}", request.id)
        args = check_args(request.op, op.args, request.args)
        return op.run(self.services, keys, request, args)
