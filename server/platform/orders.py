"""Paid orders and their refunds: the reward, the order record, the proportional clawback.

An order's reward is taken back once, whoever takes it: the refunds (proportionally) or an
operator's reversal of the reward (all of what is left). Each side reads the other's record
and compare-and-sets it in the same commit (commit.lua `records`), so the two can race and
still never take the same coins twice: a refund CASes the order record and checks the
reversal record `reversal:<reward id>`; a reversal writes that record and checks the order
record (server/admin/corrections.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack

from game_rules import RuleViolation, campaign, ids
from game_rules import commerce as rule
from server.ledger.commit import Commit, apply
from server.ledger.ledger import Transfer, Wallet
from server.ops.components import pack
from server.pipeline import COMMIT_ATTEMPTS_MAX, Services
from server.platform.base import Refused, busy, credit_transfer, refused, ruled, wallet_of
from server.store.keys import PlayerKeys

REVERSAL_RECORD_PREFIX = "reversal:"


def order_field(order_id: str) -> str:
    return f"order:{order_id}"


def reversal_field(transfer_id: str) -> str:
    return REVERSAL_RECORD_PREFIX + transfer_id


@dataclass(frozen=True, slots=True)
class OrderRecord:
    """What an order earned per item, and the refunds taken back from it so far.

    `reward_id` is the transfer id of the reward. Records written before transfer ids were
    built by game_rules.ids.transfer_id have none: their reward was `order:<id>:reward`.
    """

    items: tuple[tuple[str, int, int], ...]  # (item_id, paid_fen, coins)
    refunds: tuple[tuple[str, tuple[tuple[str, int], ...], int], ...] = ()  # (id, lines, coins)
    reward_id: str = ""

    def encode(self) -> bytes:
        return pack(
            {
                "i": [list(i) for i in self.items],
                "r": [[rid, [list(x) for x in lines], coins] for rid, lines, coins in self.refunds],
                "t": self.reward_id,
            }
        )

    @classmethod
    def decode(cls, raw: bytes, order_id: str) -> OrderRecord:
        d = msgpack.unpackb(raw, raw=False)
        items = tuple((str(a), int(b), int(c)) for a, b, c in d["i"])
        refunds = tuple(
            (str(rid), tuple((str(x), int(y)) for x, y in lines), int(coins))
            for rid, lines, coins in d["r"]
        )
        return cls(items, refunds, d.get("t") or f"order:{order_id}:reward")

    @property
    def earned(self) -> int:
        return sum(coins for _, _, coins in self.items)

    @property
    def refunded_coins(self) -> int:
        """Coins the refunds took back (from the balance or as debt)."""
        return sum(coins for _, _, coins in self.refunds)

    def refunded_lines(self) -> list[tuple[str, int]]:
        return [line for _, lines, _ in self.refunds for line in lines]


def reversed_coins(raw: bytes | None) -> int:
    """Coins an operator's reversal record took back (0 without one)."""
    return 0 if raw is None else int(msgpack.unpackb(raw, raw=False)["coins"])


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
    # A campaign multiplies the items' coins; the record keeps them, so refunds take the
    # campaign's coins back in proportion, and the entry's ref names the campaign.
    reward, bonuses = campaign.boost_order(rules, reward, items, now_ms)
    keys = PlayerKeys(player)
    lines = tuple(
        (item.item_id, item.paid_fen, coins)
        for item, (_, coins) in zip(items, reward.per_item, strict=True)
    )
    record = OrderRecord(lines, reward_id=ids.order_reward_id(order_id))
    field = order_field(order_id)
    transfers = (
        []
        if reward.credit is None
        else [credit_transfer(reward.credit, f"order {order_id}{campaign.bonus_note(bonuses)}")]
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
        stored = None if existing is None else OrderRecord.decode(existing, order_id)
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
    """Take back what the refunded money earned, less what an operator's reversal of the
    reward took back already; coins already spent become debt."""
    keys = PlayerKeys(player)
    field = order_field(order_id)
    for _ in range(COMMIT_ATTEMPTS_MAX):
        raw, wallet_raw = await services.store.call_many(
            ("HGET", keys.records, field), ("HGETALL", keys.state)
        )
        if raw is None:
            raise Refused("ORDER_NOT_FOUND", "no paid order with this id for this player", 404)
        record = OrderRecord.decode(raw, order_id)
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
            step = rule.clawback_step(record.items, record.refunded_lines(), lines)
        except RuleViolation as exc:
            raise ruled(exc) from None
        reversal = reversal_field(record.reward_id)
        reversal_raw = await services.store.call("HGET", keys.records, reversal)
        back = record.refunded_coins + reversed_coins(reversal_raw)
        claw = rule.refund_net(step, record.earned, back)
        now_ms = services.clock.now_ms()
        wallet = Wallet.from_hash(wallet_raw)
        taken, debt = rule.clawback_split(claw, max(0, wallet.balance - wallet.held_at(now_ms)))
        updated = OrderRecord(
            record.items, (*record.refunds, (refund_id, tuple(lines), claw)), record.reward_id
        )
        transfers = []
        if taken:
            refund_transfer_id = ids.transfer_id("refund", order_id, refund_id)
            ref = f"refund {refund_id}"
            transfers.append(Transfer(refund_transfer_id, "d", taken, "clawback", ref=ref))
        unchanged = reversal_raw or b""
        records = [(field, raw, updated.encode()), (reversal, unchanged, unchanged)]
        commit = Commit(transfers=transfers, debt_add=debt, records=records)
        done = await apply(services.store, keys, commit, now_ms)
        if done.status in ("RECORD_CONFLICT", "INSUFFICIENT_FUNDS"):
            continue  # another refund, a reversal or a spend came first: read again
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
    raise busy()
