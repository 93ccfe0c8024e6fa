"""Checkout: quote, then a hold reserved, then posted or voided, each at most once.

A hold is (order id, coins): the first reserve fixes its expiry and a repeat answers that
expiry. A pending hold past its expires_ms is void whether or not its timer fired: reads
count it as void at once, and commit.lua writes the void in the player's next commit. The
timer (`hold|<player>|<order>`) fires at least once, for players nobody touches.
"""

from __future__ import annotations

from typing import Any

from game_rules import Rules, RuleViolation, ids
from game_rules import commerce as rule
from game_rules.growth import rules_at_level
from server.ledger.commit import Commit, HoldOp, apply
from server.ledger.ledger import Transfer, Wallet
from server.ops.components import growth_from
from server.pipeline import COMMIT_ATTEMPTS_MAX, Services
from server.platform.base import Refused, busy, refused, ruled
from server.store.keys import PlayerKeys
from server.store.timers import member


def hold_state(raw: bytes | None, now_ms: int) -> tuple[str, int, int]:
    """(state, coins, expires_ms) of a hold value written by commit.lua at now_ms: a
    pending hold whose time has come is "voided" (with its coins and expiry)."""
    if raw is None:
        return ("none", 0, 0)
    parts = raw.decode().split("|")
    if parts[0] == "pending":
        coins, expires_ms = int(parts[1]), int(parts[2])
        return ("pending" if now_ms < expires_ms else "lapsed", coins, expires_ms)
    return (parts[0], 0, 0)


def level_rules(services: Services, growth_raw: bytes | None, now_ms: int) -> Rules:
    """The rules with the checkout ratio and cap of the player's member level."""
    return rules_at_level(services.rulebook.rules, growth_from(growth_raw), now_ms)


async def quote(services: Services, player: str, order_fen: int) -> dict[str, Any]:
    keys = PlayerKeys(player)
    state_raw = await services.store.call("HGETALL", keys.state)
    wallet, growth_raw = Wallet.from_hash(state_raw), state_raw.get(b"growth")
    now_ms = services.clock.now_ms()
    available = wallet.balance - wallet.held_at(now_ms)
    try:
        got = rule.quote(level_rules(services, growth_raw, now_ms), order_fen, max(0, available))
    except RuleViolation as exc:
        raise ruled(exc) from None
    return {
        "order_fen": order_fen,
        "coins_max": got.coins_max,
        "value_fen": got.yuan_value_fen,
        "balance": wallet.balance,
        "available": available,
    }


def _repeat(
    order_id: str, coins: int, state: str, held_coins: int, expires_ms: int
) -> dict[str, Any]:
    """The answer to a reserve of an order that has a hold already."""
    if state == "pending":
        if held_coins != coins:
            raise Refused("HOLD_MISMATCH", "this order already holds other coins", 409)
        return {"order_id": order_id, "coins": coins, "expires_ms": expires_ms, "already": True}
    raise refused("HOLD_VOIDED" if state == "lapsed" else f"HOLD_{state.upper()}")


async def reserve(
    services: Services, player: str, order_id: str, order_fen: int, coins: int
) -> dict[str, Any]:
    keys = PlayerKeys(player)
    for _ in range(COMMIT_ATTEMPTS_MAX):
        state_raw, hold_raw = await services.store.call_many(
            ("HGETALL", keys.state), ("HGET", keys.holds, order_id)
        )
        growth_raw = state_raw.get(b"growth")
        now_ms = services.clock.now_ms()
        rules = level_rules(services, growth_raw, now_ms)
        state, held_coins, expires_ms = hold_state(hold_raw, now_ms)
        if state != "none":
            return _repeat(order_id, coins, state, held_coins, expires_ms)
        wallet = Wallet.from_hash(state_raw)
        available = wallet.balance - wallet.held_at(now_ms)
        try:
            rule.check_reserve(rules, order_fen, coins, max(0, available))
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
        if done.status in ("exists", "HOLD_MISMATCH"):
            continue  # the same order reserved meanwhile (a retry in flight): answer as it
        if done.status != "ok":
            raise refused(done.status)
        return {
            "order_id": order_id,
            "coins": coins,
            "expires_ms": expires_ms,
            "already": False,
            "available": done.balance - done.held,
        }
    raise busy()


async def settle(services: Services, player: str, order_id: str, op: str) -> dict[str, Any]:
    """Post (capture) or void (release) an order's hold, each at most once."""
    keys = PlayerKeys(player)
    hold_raw = await services.store.call("HGET", keys.holds, order_id)
    now_ms = services.clock.now_ms()
    state, coins, _ = hold_state(hold_raw, now_ms)
    done_state = "posted" if op == "post" else "voided"
    if state == done_state:
        return {"order_id": order_id, "state": done_state, "already": True}
    if state == "none":
        raise refused("HOLD_NOT_FOUND")
    if state not in ("pending", "lapsed"):
        raise refused(f"HOLD_{state.upper()}")
    if op == "post" and state == "lapsed":
        await settle(services, player, order_id, "void")  # write the void the time made
        raise Refused("HOLD_EXPIRED", "the hold timed out and was voided", 409)
    transfers = []
    if op == "post":
        redeem_id = ids.transfer_id("redeem", order_id)
        transfers.append(Transfer(redeem_id, "d", coins, "sink:redeem", ref=f"order {order_id}"))
    commit = Commit(holds=[HoldOp(op, order_id, coins)], transfers=transfers)
    done = await apply(services.store, keys, commit, now_ms)
    if done.status == "exists":
        return {"order_id": order_id, "state": done_state, "already": True}
    if done.status == "HOLD_EXPIRED":
        await settle(services, player, order_id, "void")
        raise Refused("HOLD_EXPIRED", "the hold timed out and was voided", 409)
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
    """Timer `hold|player|order`: a hold not posted in time is voided. Idempotent (the timer
    fires at least once): a hold already voided, posted or unknown is left as it is."""
    player, order_id = parts[0], "|".join(parts[1:])
    try:
        await settle(services, player, order_id, "void")
    except Refused as exc:
        if exc.code not in ("HOLD_POSTED", "HOLD_NOT_FOUND"):
            raise
