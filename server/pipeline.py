"""The dispatch table: op name -> argument spec and handler.

Rule ops follow one shape: load the player's snapshot (one round trip), call the pure
rule, commit its outcome with a version check (one script call), retry on a conflict.
On a socket the rule decides first on the snapshot the socket's last rule op left (Seen),
and a decision that commits skips the load. A request id's reply is stored by the same
commit, so a retry replays it exactly.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from random import getrandbits
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
from server.ledger.commit import Commit, CommitResult, apply, reply_body
from server.protocol import ProtocolError, Request
from server.rulebook import Rulebook
from server.settings import Settings
from server.store.keys import PlayerKeys
from server.store.store import ReplicaTimeout, Store

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
    """A player's one hash and its balance as one round trip read them. Immutable (a
    NamedTuple: built on every rule op, at half a frozen dataclass's cost)."""

    ver: int
    # The hash as read: the rule's fields, and the wallet's (layout.py). A socket's
    # remembered snapshot (Seen) keeps its rule fields and `balance` current after each
    # commit, not the wallet's other fields: rules read the balance, never the wallet.
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
    """The key of a request id's stored reply: `i:` an integer id, `s:` a string one."""
    request_id = request.id
    if isinstance(request_id, int):
        return f"{keys.replies}i:{request_id}"
    return f"{keys.replies}s:{request_id}"


async def load(store: Store, keys: PlayerKeys, reply: str | None) -> tuple[Snapshot, Any]:
    """The player's state and balance (and a cached reply) in one round trip."""
    if not reply:
        return snapshot_of_hash(await store.call("HGETALL", keys.state)), None
    state, cached = await store.call_many(("HGETALL", keys.state), ("GET", reply))
    return snapshot_of_hash(state), cached


def snapshot_of_hash(state: dict[bytes, bytes]) -> Snapshot:
    """The snapshot in a player's one hash (the rule's fields and the wallet's)."""
    return Snapshot(int(state.get(b"ver", 0)), state, int(state.get(b"bal", 0)))


RuleOp = Callable[[Services, PlayerKeys, Snapshot, dict[str, Any], int], Change]
Prepare = Callable[[Services, PlayerKeys, dict[str, Any]], Awaitable[None]]


class Seen:
    """The snapshot one socket's last rule op left of its player (None before the first),
    kept by the socket (server/transport/ws.py), so it lives and dies with it.

    The socket's next rule op decides on it before reading anything. A decision that
    commits goes to the store at once, where commit.lua checks that the state still has
    this version and stamp and that the request id has no stored reply: a stale snapshot
    costs a refused commit and the usual load, never a wrong write. So a credit is one
    round trip, not two (the midnight credit path, docs/benchmark.md)."""

    __slots__ = ("snapshot",)

    def __init__(self) -> None:
        self.snapshot: Snapshot | None = None


def new_stamp() -> str:
    """Who writes a state version: 64 random bits. A version number alone repeats when
    the store loses a write (a failover) and a later write takes its number; a snapshot
    remembered from the lost write must not pass for the later one."""
    return f"{getrandbits(64):016x}"


def stamp_of(snapshot: Snapshot) -> str:
    return snapshot.fields.get(b"vs", b"").decode()


def same_state(a: Snapshot, b: Snapshot) -> bool:
    """Whether a decision on `a` stands for `b`: the rule reads the fields (guarded by the
    version and its writer's stamp) and the balance."""
    return a.ver == b.ver and a.balance == b.balance and a.fields.get(b"vs") == b.fields.get(b"vs")


def rule_op(decide: RuleOp, prepare: Prepare | None = None) -> RuleRun:
    return RuleRun(decide, prepare)


@dataclass(frozen=True, slots=True)
class RuleRun:
    """A rule op: load -> decide -> commit, retried on conflicts. With the socket's Seen it
    decides on the remembered snapshot first: a decision that commits is sent at once (see
    Seen); any other (no commit, a rule's refusal, a commit the store refused) takes the
    load as usual, and stands if the load shows the same state."""

    decide: RuleOp
    prepare: Prepare | None = None  # awaited first (task_claim: the growth job's enlisting)

    def __call__(
        self, services: Services, keys: PlayerKeys, request: Request, args: dict[str, Any]
    ) -> Awaitable[dict[str, Any]]:
        return self.run(services, keys, request, args, None)

    async def run(
        self,
        services: Services,
        keys: PlayerKeys,
        request: Request,
        args: dict[str, Any],
        seen: Seen | None,
    ) -> dict[str, Any]:
        if self.prepare is not None:
            await self.prepare(services, keys, args)
        key = reply_key(keys, request)
        remembered = None if seen is None else seen.snapshot
        early: Change | RuleViolation | None = None
        if seen is not None and remembered is not None:
            now_ms = services.clock.now_ms()
            early = self._decide(services, keys, remembered, args, now_ms)
            if isinstance(early, Change) and early.commit is not None:
                sent, done = await _commit(
                    services, keys, request, key, remembered, early, now_ms, True
                )
                if done.status == "ok":
                    return _committed(seen, remembered, sent, early.result, done)
                early = None  # refused: decide again on what the store holds
        store = services.store
        for _ in range(COMMIT_ATTEMPTS_MAX):
            # load(), inline: one coroutine less on every request (this is every rule op)
            state, cached = await store.call_many(("HGETALL", keys.state), ("GET", key))
            snapshot = snapshot_of_hash(state)
            if cached:
                return replay(request, cached)
            if seen is not None:
                seen.snapshot = snapshot
            now_ms = services.clock.now_ms()
            if early is None or remembered is None or not same_state(remembered, snapshot):
                early = self._decide(services, keys, snapshot, args, now_ms)
            change, early = early, None
            if isinstance(change, RuleViolation):
                raise OpError(change.code, change.message) from None
            if change.commit is None:
                return change.result
            sent, done = await _commit(
                services, keys, request, key, snapshot, change, now_ms, False
            )
            if done.status == "ok" and seen is not None:
                return _committed(seen, snapshot, sent, change.result, done)
            if done.status in ("ok", "exists"):
                return done.answer(change.result)
            if done.status != "CONFLICT":
                raise OpError(done.status, f"the ledger refused the change: {done.status}")
        raise OpError("BUSY", "the player's state kept changing; try again")

    def _decide(
        self,
        services: Services,
        keys: PlayerKeys,
        snapshot: Snapshot,
        args: dict[str, Any],
        now_ms: int,
    ) -> Change | RuleViolation:
        try:
            return self.decide(services, keys, snapshot, args, now_ms)
        except RuleViolation as exc:
            return exc


async def _commit(
    services: Services,
    keys: PlayerKeys,
    request: Request,
    key: str,
    snapshot: Snapshot,
    change: Change,
    now_ms: int,
    remembered: bool,
) -> tuple[Commit, CommitResult]:
    """The change's commit on `snapshot`: checked against its version, and against its
    stamp and the request id's reply when the snapshot was remembered, not read."""
    assert change.commit is not None
    commit = change.commit.guarded(
        expected_ver=snapshot.ver,
        reply_body=reply_body(request.op, change.result),
        reply_ttl_s=services.settings.reply_retention_s,
        seen_stamp=stamp_of(snapshot) if remembered else None,
        stamp=new_stamp(),
        asked_by_socket=True,  # the pipeline answers the player's own sockets only
    )
    return commit, await apply(services.store, keys, commit, now_ms, reply_key=key)


def _committed(
    seen: Seen, before: Snapshot, commit: Commit, result: dict[str, Any], done: CommitResult
) -> dict[str, Any]:
    """Remember the state the commit left, and answer."""
    fields = before.fields
    if commit.fields:  # written with a new version and stamp
        fields = {**fields, **{name.encode(): value for name, value in commit.fields.items()}}
        fields[b"vs"] = commit.stamp.encode()
    seen.snapshot = Snapshot(done.ver, fields, done.balance)
    return done.answer(result)


def replay(request: Request, cached: bytes) -> dict[str, Any]:
    """A stored reply: `<balance>:<msgpack {op, result, entry_seq}>` (commit.lua writes
    it; one stored before entry_seq has none, and its reply goes without)."""
    balance, _, packed = cached.partition(b":")
    body = msgpack.unpackb(packed, raw=False)
    if body["op"] != request.op:
        raise OpError("ID_REUSED", f"request id {request.id!r} was used for {body['op']}")
    result: dict[str, Any] = {**body["result"], "balance": int(balance)}
    if "entry_seq" in body:
        result["entry_seq"] = body["entry_seq"]
    return result


@dataclass
class Dispatcher:
    services: Services
    ops: dict[str, Op]

    def handle(
        self, keys: PlayerKeys, request: Request, seen: Seen | None = None
    ) -> Awaitable[dict[str, Any]]:
        """The op's run, to be awaited (no coroutine of its own: one frame less per
        request); an unknown op or bad args raise here, before anything runs. `seen`: the
        socket's memory for rule ops."""
        op = self.ops.get(request.op)
        if op is None:
            raise ProtocolError("UNKNOWN_OP", f"unknown op {request.op!r}", request.id)
        args = check_args(request.op, op.args, request.args)
        run = op.run
        if seen is not None and isinstance(run, RuleRun):
            return run.run(self.services, keys, request, args, seen)
        return run(self.services, keys, request, args)
