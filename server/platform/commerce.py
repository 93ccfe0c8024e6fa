"""Coins meet money: order and review rewards, refund clawback, checkout holds, partner
exchange, expiry sweeps and warnings. The shell side of game_rules/commerce.py.

Every call is idempotent by the platform's own id (order, refund, review, partner
transaction): the same id again answers as the first time and moves nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import msgpack

from game_rules import Credit, RuleViolation
from game_rules import commerce as rule
from game_rules.notify import collapse_key
from server.ledger.commit import Commit, CommitResult, HoldOp, apply
from server.ledger.ledger import Transfer, Wallet, batch_int
from server.ops import triggers
from server.ops.components import pack
from server.pipeline import COMMIT_ATTEMPTS_MAX, Services
from server.store.keys import BUCKETS, PlayerKeys, players_index
from server.store.timers import member

log = logging.getLogger(__name__)

SWEEP_SCAN_COUNT = 500  # players per SSCAN page


class Refused(Exception):
    """A refusal with a stable code and the HTTP status the platform API answers with."""

    def __init__(self, code: str, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


CONFLICTS = {
    "TRANSFER_MISMATCH",
    "HOLD_MISMATCH",
    "HOLD_POSTED",
    "HOLD_VOIDED",
    "ORDER_MISMATCH",
    "HOLD_EXPIRED",
}


def refused(status_code: str) -> Refused:
    if status_code == "HOLD_NOT_FOUND":
        return Refused(status_code, "no hold for this order", 404)
    if status_code in CONFLICTS:
        return Refused(status_code, f"the ledger refused: {status_code}", 409)
    return Refused(status_code, f"the ledger refused: {status_code}", 422)


def ruled(exc: RuleViolation) -> Refused:
    return Refused(exc.code, exc.message, 400 if exc.code.startswith("BAD_") else 422)


def credit_transfer(credit: Credit, ref: str = "") -> Transfer:
    return Transfer(
        credit.transfer_id, "c", credit.amount, f"mint:{credit.source}", credit.batch, ref
    )


async def wallet_of(services: Services, keys: PlayerKeys) -> Wallet:
    return Wallet.from_hash(await services.store.call("HGETALL", keys.wallet))


async def post_credit(
    services: Services, player: str, credit: Credit | None, ref: str
) -> CommitResult | None:
    if credit is None:
        return None
    done = await apply(
        services.store,
        PlayerKeys(player),
        Commit(transfers=[credit_transfer(credit, ref)]),
        services.clock.now_ms(),
    )
    if done.status not in ("ok", "exists"):
        raise refused(done.status)
    return done


# --- rewards ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OrderRecord:
    """What an order earned per item, and the refunds taken back from it so far."""

    items: tuple[tuple[str, int, int], ...]  # (item_id, paid_fen, coins)
    refunds: tuple[tuple[str, tuple[tuple[str, int], ...], int], ...] = ()  # (id, lines, coins)

    def encode(self) -> bytes:
        return pack(
            {
                "i": [list(i) for i in self.items],
                "r": [[rid, [list(x) for x in lines], coins] for rid, lines, coins in self.refunds],
            }
        )

    @classmethod
    def decode(cls, raw: bytes) -> OrderRecord:
        d = msgpack.unpackb(raw, raw=False)
        items = tuple((str(a), int(b), int(c)) for a, b, c in d["i"])
        refunds = tuple(
            (str(rid), tuple((str(x), int(y)) for x, y in lines), int(coins))
            for rid, lines, coins in d["r"]
        )
        return cls(items, refunds)

    @property
    def earned(self) -> int:
        return sum(coins for _, _, coins in self.items)

    def refunded_lines(self) -> list[tuple[str, int]]:
        return [line for _, lines, _ in self.refunds for line in lines]


async def order_paid(
    services: Services, player: str, order_id: str, items: list[rule.Item]
) -> dict[str, Any]:
    """A paid order earns coins per the rules; the order record keeps the lines for refunds."""
    rules = services.rulebook.rules
    now_ms = services.clock.now_ms()
    try:
        reward = rule.order_reward(rules, items, order_id, player, now_ms)
    except RuleViolation as exc:
        raise ruled(exc) from None
    keys = PlayerKeys(player)
    lines = tuple(
        (item.item_id, item.paid_fen, coins)
        for item, (_, coins) in zip(items, reward.per_item, strict=True)
    )
    record = OrderRecord(lines)
    field = f"order:{order_id}"
    transfers = (
        [] if reward.credit is None else [credit_transfer(reward.credit, f"order {order_id}")]
    )
    done = await apply(
        services.store,
        keys,
        Commit(transfers=transfers, records=[(field, b"", record.encode())]),
        now_ms,
    )
    if done.status in ("RECORD_CONFLICT", "exists"):
        existing = await services.store.call("HGET", keys.records, field)
        # Compare what the platform sent, not the coins: the rules may have changed since.
        stored = None if existing is None else OrderRecord.decode(existing)
        if stored is None or [i[:2] for i in stored.items] != [i[:2] for i in lines]:
            raise Refused("ORDER_MISMATCH", "this order id was reported with other lines", 409)
        return {
            "order_id": order_id,
            "coins": stored.earned,
            "already": True,
            "balance": (await wallet_of(services, keys)).balance,
        }
    if done.status != "ok":
        raise refused(done.status)
    return {"order_id": order_id, "coins": reward.coins, "already": False, "balance": done.balance}


async def order_refund(
    services: Services, player: str, order_id: str, refund_id: str, lines: list[tuple[str, int]]
) -> dict[str, Any]:
    """Take back what the refunded money earned; coins already spent become debt."""
    keys = PlayerKeys(player)
    field = f"order:{order_id}"
    for _ in range(COMMIT_ATTEMPTS_MAX):
        raw, wallet_raw = await services.store.call_many(
            ("HGET", keys.records, field), ("HGETALL", keys.wallet)
        )
        if raw is None:
            raise Refused("ORDER_NOT_FOUND", "no paid order with this id for this player", 404)
        record = OrderRecord.decode(raw)
        earlier = {rid: (rl, coins) for rid, rl, coins in record.refunds}
        if refund_id in earlier:
            if list(earlier[refund_id][0]) != lines:
                raise Refused("REFUND_MISMATCH", "this refund id came with other lines", 409)
            return {
                "order_id": order_id,
                "refund_id": refund_id,
                "coins": earlier[refund_id][1],
                "already": True,
            }
        try:
            claw = rule.clawback_step(record.items, record.refunded_lines(), lines)
        except RuleViolation as exc:
            raise ruled(exc) from None
        wallet = Wallet.from_hash(wallet_raw)
        held = int(wallet_raw.get(b"held", 0))
        taken, debt = rule.clawback_split(claw, wallet.balance - held)
        updated = OrderRecord(record.items, (*record.refunds, (refund_id, tuple(lines), claw)))
        transfers = (
            []
            if taken == 0
            else [
                Transfer(
                    f"refund:{order_id}:{refund_id}",
                    "d",
                    taken,
                    "clawback",
                    ref=f"refund {refund_id}",
                )
            ]
        )
        commit = Commit(
            transfers=transfers, debt_add=debt, records=[(field, raw, updated.encode())]
        )
        done = await apply(services.store, keys, commit, services.clock.now_ms())
        if done.status in ("RECORD_CONFLICT", "INSUFFICIENT_FUNDS"):
            continue  # another refund or a spend came first: read again
        if done.status != "ok":
            raise refused(done.status)
        return {
            "order_id": order_id,
            "refund_id": refund_id,
            "coins": claw,
            "taken": taken,
            "debt_added": debt,
            "debt": done.debt,
            "balance": done.balance,
            "already": False,
        }
    raise Refused("BUSY", "the wallet kept changing; retry", 503)


async def review(
    services: Services, player: str, review_id: str, order_paid_fen: int
) -> dict[str, Any]:
    try:
        credit = rule.review_reward(
            services.rulebook.rules, review_id, order_paid_fen, services.clock.now_ms()
        )
    except RuleViolation as exc:
        raise ruled(exc) from None
    done = await post_credit(services, player, credit, f"review {review_id}")
    assert done is not None
    return {
        "review_id": review_id,
        "coins": credit.amount,
        "already": done.status == "exists",
        "balance": done.balance,
    }


async def exchange(
    services: Services, player: str, partner: str, txn_id: str, points: int
) -> dict[str, Any]:
    try:
        credit = rule.exchange(
            services.rulebook.rules, partner, points, txn_id, services.clock.now_ms()
        )
    except RuleViolation as exc:
        raise ruled(exc) from None
    done = await post_credit(services, player, credit, f"{partner} {txn_id}")
    assert done is not None
    return {
        "partner": partner,
        "txn_id": txn_id,
        "points": points,
        "coins": credit.amount,
        "already": done.status == "exists",
        "balance": done.balance,
    }


# --- checkout: quote, reserve, post, void ------------------------------------------------------


async def quote(services: Services, player: str, order_fen: int) -> dict[str, Any]:
    wallet_raw = await services.store.call("HGETALL", PlayerKeys(player).wallet)
    balance = int(wallet_raw.get(b"bal", 0))
    available = balance - int(wallet_raw.get(b"held", 0))
    try:
        got = rule.quote(services.rulebook.rules, order_fen, available)
    except RuleViolation as exc:
        raise ruled(exc) from None
    return {
        "order_fen": order_fen,
        "coins_max": got.coins_max,
        "value_fen": got.yuan_value_fen,
        "balance": balance,
        "available": available,
    }


def _hold_state(raw: bytes | None) -> tuple[str, int, int]:
    """(state, coins, expires_ms) of a hold value written by commit.lua."""
    if raw is None:
        return ("none", 0, 0)
    parts = raw.decode().split("|")
    if parts[0] == "pending":
        return ("pending", int(parts[1]), int(parts[2]))
    return (parts[0], 0, 0)


async def reserve(
    services: Services, player: str, order_id: str, order_fen: int, coins: int
) -> dict[str, Any]:
    keys = PlayerKeys(player)
    rules = services.rulebook.rules
    for _ in range(COMMIT_ATTEMPTS_MAX):
        wallet_raw, hold_raw = await services.store.call_many(
            ("HGETALL", keys.wallet), ("HGET", keys.holds, order_id)
        )
        state, held_coins, expires_ms = _hold_state(hold_raw)
        if state == "pending":
            if held_coins != coins:
                raise Refused("HOLD_MISMATCH", "this order already holds other coins", 409)
            return {"order_id": order_id, "coins": coins, "expires_ms": expires_ms, "already": True}
        if state != "none":
            raise refused(f"HOLD_{state.upper()}")
        available = int(wallet_raw.get(b"bal", 0)) - int(wallet_raw.get(b"held", 0))
        now_ms = services.clock.now_ms()
        try:
            rule.check_reserve(rules, order_fen, coins, available)
        except RuleViolation as exc:
            raise ruled(exc) from None
        expires_ms = rule.hold_expires_ms(rules, now_ms)
        commit = Commit(
            holds=[HoldOp("reserve", order_id, coins, expires_ms)],
            timers=[(member("hold", player, order_id), expires_ms)],
        )
        done = await apply(services.store, keys, commit, now_ms)
        if done.status == "INSUFFICIENT_FUNDS":
            continue  # a spend raced the check: look again
        if done.status not in ("ok", "exists"):
            raise refused(done.status)
        return {
            "order_id": order_id,
            "coins": coins,
            "expires_ms": expires_ms,
            "already": done.status == "exists",
            "available": done.balance - done.held,
        }
    raise Refused("BUSY", "the wallet kept changing; retry", 503)


async def settle(services: Services, player: str, order_id: str, op: str) -> dict[str, Any]:
    """Post (capture) or void (release) an order's hold, each at most once."""
    keys = PlayerKeys(player)
    hold_raw = await services.store.call("HGET", keys.holds, order_id)
    state, coins, expires_ms = _hold_state(hold_raw)
    now_ms = services.clock.now_ms()
    done_state = "posted" if op == "post" else "voided"
    if state == done_state:
        return {"order_id": order_id, "state": done_state, "already": True}
    if state == "none":
        raise refused("HOLD_NOT_FOUND")
    if state != "pending":
        raise refused(f"HOLD_{state.upper()}")
    if op == "post" and now_ms >= expires_ms:
        await settle(services, player, order_id, "void")
        raise Refused("HOLD_EXPIRED", "the hold timed out and was voided", 409)
    transfers = (
        []
        if op == "void"
        else [Transfer(f"redeem:{order_id}", "d", coins, "sink:redeem", ref=f"order {order_id}")]
    )
    commit = Commit(holds=[HoldOp(op, order_id, coins)], transfers=transfers)
    done = await apply(services.store, keys, commit, now_ms)
    if done.status == "exists":
        return {"order_id": order_id, "state": done_state, "already": True}
    if done.status != "ok":
        raise refused(done.status)
    return {
        "order_id": order_id,
        "state": done_state,
        "coins": coins,
        "already": False,
        "balance": done.balance,
        "available": done.balance - done.held,
    }


async def fire_hold(services: Services, parts: list[str], due_ms: int, now_ms: int) -> None:
    """Timer `hold|player|order`: a hold not posted in time is voided."""
    player, order_id = parts[0], "|".join(parts[1:])
    try:
        await settle(services, player, order_id, "void")
    except Refused as exc:
        if exc.code not in ("HOLD_POSTED", "HOLD_NOT_FOUND"):
            raise


# --- expiry ------------------------------------------------------------------------------------


async def _each_wallet(services: Services) -> Any:
    store = services.store
    for bucket in range(BUCKETS):
        cursor = 0
        while True:
            cursor, members = await store.call(
                "SSCAN", players_index(bucket), cursor, "COUNT", SWEEP_SCAN_COUNT
            )
            cursor = int(cursor)
            players = [m.decode() for m in members]
            if players:
                wallets = await store.call_many(
                    *[("HGETALL", PlayerKeys(p).wallet) for p in players]
                )
                for player, raw in zip(players, wallets, strict=True):
                    yield player, Wallet.from_hash(raw)
            if cursor == 0:
                break


async def sweep_expiry(services: Services) -> int:
    """The boundary job: every wallet holding an expired batch gets a commit, which expires
    it (commit.lua does the posting). Returns the wallets swept."""
    rules = services.rulebook.rules
    now_ms = services.clock.now_ms()
    swept = 0
    async for player, wallet in _each_wallet(services):
        if rule.expired_batches(wallet.batches, rules, now_ms):
            await apply(services.store, PlayerKeys(player), Commit(), now_ms)
            swept += 1
    return swept


async def warn_expiring(services: Services) -> int:
    """Warn, once per batch, the players whose coins expire within warn_days."""
    rules = services.rulebook.rules
    now_ms = services.clock.now_ms()
    warned = 0
    async for player, wallet in _each_wallet(services):
        for batch, coins, days_left in rule.expiring_batches(wallet.batches, rules, now_ms):
            keys = PlayerKeys(player)
            data = {"expires": batch.isoformat(), "coins": coins, "days_left": days_left}
            field = f"warned:{batch_int(batch)}"
            commit = Commit(pushes=[("coins_expiring", pack(data))], records=[(field, b"", b"1")])
            done = await apply(services.store, keys, commit, now_ms)
            if done.status != "ok":
                continue  # warned already (RECORD_CONFLICT)
            warned += 1
            if done.receivers and done.receivers[0] == 0:
                key = collapse_key("expiry", player, batch=batch)
                await triggers.offer(services, player, "coins_expiring", key, data, now_ms)
    return warned
