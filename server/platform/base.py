"""What every platform call shares: refusals with stable codes, and posting a credit."""

from __future__ import annotations

from game_rules import Credit, RuleViolation
from server.ledger.commit import HOLDS_PENDING_MAX, Commit, CommitResult, apply
from server.ledger.ledger import Transfer, Wallet
from server.pipeline import Services
from server.store.keys import PlayerKeys


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
    "HOLDS_FULL",  # the player's pending holds are at the limit: settle one first
    "ORDER_EXPIRED",  # mall/payment: the order's fate is decided otherwise
    "ORDER_CANCELLED",
    "ORDER_PAID",
}


# What a refusal tells the caller to do, where "the ledger refused: <code>" would not.
MESSAGES = {
    "HOLDS_FULL": f"the player has {HOLDS_PENDING_MAX} pending holds: post or void one first",
}


def refused(status_code: str) -> Refused:
    if status_code == "HOLD_NOT_FOUND":
        return Refused(status_code, "no hold for this order", 404)
    message = MESSAGES.get(status_code, f"the ledger refused: {status_code}")
    return Refused(status_code, message, 409 if status_code in CONFLICTS else 422)


def ruled(exc: RuleViolation) -> Refused:
    return Refused(exc.code, exc.message, 400 if exc.code.startswith("BAD_") else 422)


def busy() -> Refused:
    return Refused("BUSY", "the wallet kept changing; retry", 503)


def credit_transfer(credit: Credit, ref: str = "") -> Transfer:
    return Transfer(
        credit.transfer_id, "c", credit.amount, f"mint:{credit.source}", credit.batch, ref
    )


async def wallet_of(services: Services, keys: PlayerKeys) -> Wallet:
    return Wallet.from_hash(await services.store.call("HGETALL", keys.state))


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
