"""The dispatch table: op name -> argument spec and handler.

Rule ops follow one shape: load the player's snapshot (one round trip), call the pure
rule, commit its outcome with a version check (one script call), retry on a conflict.
A request id's reply is stored by the same commit, so a retry replays it exactly.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, cast

import msgpack

from game_rules import RuleViolation, SignInState, sign_in, sign_in_view
from server.clock import Clock
from server.commit import Commit, apply
from server.keys import PlayerKeys
from server.ledger import Entry, Transfer, Wallet
from server.protocol import ProtocolError, Request
from server.rulebook import Rulebook
from server.settings import Settings
from server.store import Arg, Store

COMMIT_ATTEMPTS_MAX = 5
LEDGER_PAGE_DEFAULT = 20


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


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A player's state hash and balance as one round trip read them."""

    ver: int
    fields: dict[bytes, bytes]
    balance: int

    def component(self, name: str) -> Any:
        raw = self.fields.get(name.encode())
        return None if raw is None else msgpack.unpackb(raw, raw=False)


@dataclass(frozen=True, slots=True)
class Change:
    """What a rule op decided: the reply, and the commit that makes it true (if any)."""

    result: dict[str, Any]
    commit: Commit | None = None


@dataclass(frozen=True, slots=True)
class IntArg:
    low: int
    high: int
    default: int | None = None


@dataclass(frozen=True, slots=True)
class Op:
    args: dict[str, IntArg]
    run: Callable[[Services, PlayerKeys, Request, dict[str, Any]], Awaitable[dict[str, Any]]]
    mutates: bool = False


def check_args(op: str, spec: dict[str, IntArg], args: dict[str, Any]) -> dict[str, Any]:
    unknown = set(args) - set(spec)
    if unknown:
        raise OpError("BAD_ARGS", f"{op}: unknown args {sorted(unknown)}")
    out: dict[str, Any] = {}
    for name, arg in spec.items():
        value = args.get(name, arg.default)
        if value is None:
            out[name] = None
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise OpError("BAD_ARGS", f"{op}: {name} must be an integer")
        if not arg.low <= value <= arg.high:
            raise OpError("BAD_ARGS", f"{op}: {name} must be in {arg.low}..{arg.high}")
        out[name] = value
    return out


def reply_key(keys: PlayerKeys, request: Request) -> str:
    kind = "i" if isinstance(request.id, int) else "s"
    return keys.reply(f"{kind}:{request.id}")


async def load(store: Store, keys: PlayerKeys, reply: str | None) -> tuple[Snapshot, Any]:
    """The player's state and balance (and a cached reply) in one round trip."""
    commands: list[tuple[Arg, ...]] = [("HGETALL", keys.state), ("HGET", keys.wallet, "bal")]
    if reply:
        commands.append(("HGETALL", reply))
    got = await store.call_many(*commands)
    state = cast(dict[bytes, bytes], got[0])
    snapshot = Snapshot(int(state.get(b"ver", 0)), state, int(got[1] or 0))
    return snapshot, (got[2] if reply else None)


RuleOp = Callable[[Services, PlayerKeys, Snapshot, dict[str, Any], int], Change]


def rule_op(decide: RuleOp) -> Callable[..., Awaitable[dict[str, Any]]]:
    """Wrap a synchronous decision into load -> decide -> commit, retried on conflicts."""

    async def run(
        services: Services, keys: PlayerKeys, request: Request, args: dict[str, Any]
    ) -> dict[str, Any]:
        key = reply_key(keys, request)
        for _ in range(COMMIT_ATTEMPTS_MAX):
            snapshot, cached = await load(services.store, keys, key)
            if cached:
                return replay(request, cached)
            now_ms = services.clock.now_ms()
            try:
                change = decide(services, keys, snapshot, args, now_ms)
            except RuleViolation as exc:
                raise OpError(exc.code, exc.message) from None
            if change.commit is None:
                return change.result
            commit = Commit(
                expected_ver=snapshot.ver,
                fields=change.commit.fields,
                transfers=change.commit.transfers,
                pushes=change.commit.pushes,
                reply_body=msgpack.packb({"op": request.op, "result": change.result}),
                reply_ttl_s=services.settings.reply_retention_s,
            )
            done = await apply(services.store, keys, commit, now_ms, reply_key=key)
            if done.status in ("ok", "exists"):
                return {**change.result, "balance": done.balance}
            if done.status != "CONFLICT":
                raise OpError(done.status, f"the ledger refused the change: {done.status}")
        raise OpError("BUSY", "the player's state kept changing; try again")

    return run


def replay(request: Request, cached: dict[bytes, bytes]) -> dict[str, Any]:
    body = msgpack.unpackb(cached[b"body"], raw=False)
    if body["op"] != request.op:
        raise OpError("ID_REUSED", f"request id {request.id!r} was used for {body['op']}")
    result: dict[str, Any] = body["result"]
    return {**result, "balance": int(cached[b"bal"])}


def _signin_state(snapshot: Snapshot) -> SignInState:
    wire = snapshot.component("signin")
    return SignInState() if wire is None else SignInState.from_wire(wire)


def decide_sign_in(
    services: Services, keys: PlayerKeys, snapshot: Snapshot, args: dict[str, Any], now_ms: int
) -> Change:
    outcome = sign_in(_signin_state(snapshot), services.rulebook.rules, now_ms, keys.player_id)
    result = {
        "coins": outcome.coins,
        "streak": outcome.streak,
        "day": outcome.day.isoformat(),
        "already": outcome.already,
    }
    if outcome.credit is None:
        return Change({**result, "balance": snapshot.balance})
    credit = outcome.credit
    transfer = Transfer(
        credit.transfer_id,
        "c",
        credit.amount,
        f"mint:{credit.source}",
        credit.batch,
        ref=outcome.day.isoformat(),
    )
    commit = Commit(fields={"signin": msgpack.packb(outcome.state.to_wire())}, transfers=[transfer])
    return Change(result, commit)


async def op_state(
    services: Services, keys: PlayerKeys, request: Request, args: dict[str, Any]
) -> dict[str, Any]:
    state_raw, wallet_raw = await services.store.call_many(
        ("HGETALL", keys.state), ("HGETALL", keys.wallet)
    )
    wallet = Wallet.from_hash(wallet_raw)
    snapshot = Snapshot(int(state_raw.get(b"ver", 0)), state_raw, wallet.balance)
    rules = services.rulebook.rules
    view = sign_in_view(_signin_state(snapshot), rules, services.clock.now_ms())
    return {
        "player": keys.player_id,
        "balance": wallet.balance,
        "batches": wallet.by_batch(),
        "streak": view.streak,
        "signed_in_today": view.signed_today,
        "next_sign_in_coins": view.next_coins,
        "day": view.day.isoformat(),
        "push_seq": int(snapshot.fields.get(b"pseq", 0)),
        "rules_version": rules.version,
    }


async def op_ledger(
    services: Services, keys: PlayerKeys, request: Request, args: dict[str, Any]
) -> dict[str, Any]:
    """Newest entries first; `before_seq` pages back, `next_before_seq` is None at the end."""
    limit: int = args["limit"]
    before: int | None = args["before_seq"]
    seq = int(await services.store.call("HGET", keys.wallet, "seq") or 0)
    top = seq if before is None else min(before - 1, seq)
    if top < 1:
        return {"entries": [], "next_before_seq": None}
    low = max(1, top - limit + 1)
    raw = await services.store.call("LRANGE", keys.journal, low - 1, top - 1)
    entries = [Entry.decode(r).public() for r in reversed(raw)]
    return {"entries": entries, "next_before_seq": low if low > 1 else None}


def dispatch_table(settings: Settings) -> dict[str, Op]:
    page = IntArg(1, settings.ledger_page_max, min(LEDGER_PAGE_DEFAULT, settings.ledger_page_max))
    return {
        "state": Op({}, op_state),
        "sign_in": Op({}, rule_op(decide_sign_in), mutates=True),
        "ledger": Op({"limit": page, "before_seq": IntArg(1, 2**53)}, op_ledger),
    }


@dataclass
class Dispatcher:
    services: Services
    ops: dict[str, Op] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.ops = self.ops or dispatch_table(self.services.settings)

    async def handle(self, keys: PlayerKeys, request: Request) -> dict[str, Any]:
        op = self.ops.get(request.op)
        if op is None:
            raise ProtocolError("UNKNOWN_OP", f"unknown op {request.op!r}", request.id)
        args = check_args(request.op, op.args, request.args)
        return await op.run(self.services, keys, request, args)
