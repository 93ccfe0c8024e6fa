"""Coins meet money: the platform calls. Order rewards and refunds (orders.py), checkout
holds (holds.py), expiry sweeps and warnings (expiry.py); reviews and partner exchange here.
The shell side of game_rules/commerce.py.

Every call is idempotent by the platform's own id (order, refund, review, partner
transaction): the same id again answers as the first time and moves nothing.
"""

from __future__ import annotations

from typing import Any

from game_rules import RuleViolation
from game_rules import commerce as rule
from server.pipeline import Services
from server.platform.base import CONFLICTS, Refused, post_credit, refused, ruled
from server.platform.expiry import sweep_expiry, warn_expiring
from server.platform.holds import fire_hold, quote, reserve, settle
from server.platform.orders import OrderRecord, order_paid, order_refund

__all__ = [
    "CONFLICTS",
    "OrderRecord",
    "Refused",
    "exchange",
    "fire_hold",
    "order_paid",
    "order_refund",
    "quote",
    "refused",
    "reserve",
    "review",
    "settle",
    "sweep_expiry",
    "warn_expiring",
]


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
