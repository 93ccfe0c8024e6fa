"""Grants and reversals. Corrections are new transfers against the same system account, never
edits: the journal keeps both the mistake and its reversal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack
from starlette.requests import Request
from starlette.responses import JSONResponse

from game_rules import business_day, expiry_batch
from game_rules.commerce import refund_net
from game_rules.ids import ID_RE, reversal_id
from game_rules.ids import transfer_id as build_transfer_id
from server.admin.checks import (
    TRANSFER_ID_RE,
    Refused,
    coins_field,
    fields,
    matching,
    player_field,
    read_body,
    reason_field,
    services_of,
)
from server.ledger.commit import Commit, apply
from server.ledger.ledger import Entry, Transfer, Wallet
from server.ledger.outbox import OUTBOX_SOURCES
from server.ledger.posting import Posting, journal_entry
from server.ops.components import pack
from server.pipeline import COMMIT_ATTEMPTS_MAX, Services
from server.platform.orders import OrderRecord, order_field, reversal_field
from server.store.keys import PlayerKeys
from server.store.store import Store

REVERSAL_PREFIXES = ("reverse:", "reverse#")
DEBT_PREFIXES = ("debt:", "debt#")


def todays_batch(services: Services, now_ms: int) -> Any:
    rules = services.rulebook.rules
    return expiry_batch(business_day(now_ms, rules.tz), rules.expiry)


async def grant(request: Request) -> JSONResponse:
    services = services_of(request)
    pid, coins, reason, grant_id = fields(
        await read_body(request),
        {
            "player": player_field,
            "coins": coins_field,
            "reason": reason_field,
            "grant_id": matching(ID_RE),
        },
    )
    now_ms = services.clock.now_ms()
    batch = todays_batch(services, now_ms)
    transfer = Transfer(
        build_transfer_id("grant", grant_id), "c", coins, "mint:grant", batch, reason
    )
    done = await apply(services.store, PlayerKeys(pid), Commit(transfers=[transfer]), now_ms)
    if done.status == "TRANSFER_MISMATCH":
        raise Refused(409, "TRANSFER_MISMATCH", "this grant id was used with other coins")
    if done.status not in ("ok", "exists"):
        raise Refused(422, done.status, f"the ledger refused: {done.status}")
    return JSONResponse(
        {
            "player": pid,
            "grant_id": grant_id,
            "transfer_id": transfer.transfer_id,
            "coins": coins,
            "already": done.status == "exists",
            "balance": done.balance,
            "debt": done.debt,
        }
    )


def _reversal_reply(
    pid: str, transfer_id: str, record: dict[str, Any], already: bool, balance: int, debt: int
) -> dict[str, Any]:
    return {
        "player": pid,
        "transfer_id": transfer_id,
        "reversal_id": record.get("id") or reversal_id(transfer_id),
        "reversed": "credit" if record["kind"] == "c" else "debit",
        "coins": record["coins"],
        "moved": record["moved"],
        "debt_added": record["debt_added"],
        "already": already,
        "balance": balance,
        "debt": debt,
    }


async def _order_of_reward(
    store: Store, keys: PlayerKeys, transfer_id: str, entry: Entry
) -> tuple[str, bytes, OrderRecord] | None:
    """The order record whose reward `transfer_id` is, if it is one: (field, raw, record).
    order_paid books the reward from mint:order with the ref "order <order id>", followed
    by " campaign <name> ..." when a campaign raised it (order ids have no spaces)."""
    if entry.account != "mint:order" or not entry.ref.startswith("order "):
        return None
    order_id = entry.ref.removeprefix("order ").split(" ", 1)[0]  # " campaign ..." may follow
    field = order_field(order_id)
    raw = await store.call("HGET", keys.records, field)
    if raw is None:
        return None
    record = OrderRecord.decode(raw, order_id)
    return (field, raw, record) if record.reward_id == transfer_id else None


@dataclass(frozen=True, slots=True)
class Undo:
    """What a reversal takes back: `due` coins, `moved` of them from the balance (the rest
    becomes debt), the records it was decided on (checked unchanged in the same commit) and
    the stats counters it adds to."""

    due: int
    moved: int
    checked: tuple[tuple[str, bytes, bytes], ...] = ()
    counts: tuple[tuple[str, int], ...] = ()


async def _undo_credit(
    store: Store,
    keys: PlayerKeys,
    wallet: Wallet,
    transfer_id: str,
    posting: Posting,
    entry: Entry,
    now_ms: int,
) -> Undo:
    """A credit reversed: what the player has available now, the rest as debt. An order's
    reward: only what the order's refunds did not take back already."""
    due = posting.coins
    checked: tuple[tuple[str, bytes, bytes], ...] = ()
    order = await _order_of_reward(store, keys, transfer_id, entry)
    if order is not None:
        order_key, order_raw, order_record = order
        due = refund_net(posting.coins, order_record.earned, order_record.refunded_coins)
        checked = ((order_key, order_raw, order_raw),)  # the same value: checked, not changed
    moved = min(due, max(0, wallet.balance - wallet.held_at(now_ms)))
    source = posting.account.removeprefix("mint:")
    counts = ((f"{source}:reversed", moved),) if moved and source in OUTBOX_SOURCES else ()
    return Undo(due, moved, checked, counts)  # the outbox audit counts `counts` (outbox.py)


def _check_reversible(transfer_id: str, posting: Posting) -> None:
    why_not = _not_reversible(transfer_id, posting)
    if why_not:
        raise Refused(409, "NOT_REVERSIBLE", why_not)


def _not_reversible(transfer_id: str, posting: Posting) -> str:
    if transfer_id.startswith(REVERSAL_PREFIXES):
        return "a reversal is not reversed; post a grant"
    if posting.account == "clawback" and (
        transfer_id.startswith(DEBT_PREFIXES) or transfer_id.endswith(":debt")
    ):
        return "a debt repayment: reverse the credit it follows"
    return ""


async def reverse(request: Request) -> JSONResponse:
    """Post the opposite of a transfer. A credit reversed takes back what the player still
    has available and books the rest as debt (as a refund does); a debit reversed credits
    the coins back in today's batch. Idempotent: a record `reversal:<id>` is set with it.

    An order's reward is taken back once: its reversal takes only what the order's refunds
    did not take back already, and checks the order record in the same commit (a refund
    checks this reversal's record likewise, server/platform/orders.py)."""
    services = services_of(request)
    store = services.store
    pid, transfer_id, reason = fields(
        await read_body(request),
        {"player": player_field, "transfer_id": matching(TRANSFER_ID_RE), "reason": reason_field},
    )
    keys = PlayerKeys(pid)
    undo_id = reversal_id(transfer_id)
    field = reversal_field(transfer_id)
    for _ in range(COMMIT_ATTEMPTS_MAX):
        seen, wallet_raw, record_raw = await store.call_many(
            ("HGET", keys.txids, transfer_id),
            ("HGETALL", keys.state),
            ("HGET", keys.records, field),
        )
        wallet = Wallet.from_hash(wallet_raw)
        if record_raw is not None:
            record = msgpack.unpackb(record_raw, raw=False)
            body = _reversal_reply(pid, transfer_id, record, True, wallet.balance, wallet.debt)
            return JSONResponse(body)
        if seen is None:
            raise Refused(404, "TRANSFER_NOT_FOUND", f"player {pid} has no transfer {transfer_id}")
        posting = Posting.parse(seen)
        if posting.complete:
            _check_reversible(transfer_id, posting)
        ck = wallet.checkpoint.seq
        if posting.seq <= ck:
            raise Refused(410, "ENTRY_ARCHIVED", f"entry seq {posting.seq} is in the archive only")
        entry = await journal_entry(store, keys, transfer_id, posting.seq, ck)
        if entry is None:
            continue  # compaction trimmed the journal in between: read again
        if not posting.complete:
            posting = Posting.of(entry)
            _check_reversible(transfer_id, posting)
        now_ms = services.clock.now_ms()
        if posting.kind == "c":
            plan = await _undo_credit(store, keys, wallet, transfer_id, posting, entry, now_ms)
            transfers = (
                [Transfer(undo_id, "d", plan.moved, posting.account, ref=reason)]
                if plan.moved
                else []
            )
        else:
            batch = todays_batch(services, now_ms)
            transfers = [Transfer(undo_id, "c", posting.coins, posting.account, batch, reason)]
            plan = Undo(posting.coins, posting.coins)
        record = {
            "kind": posting.kind,
            "coins": plan.due,
            "moved": plan.moved,
            "debt_added": plan.due - plan.moved,
            "reason": reason,
            "at_ms": now_ms,
            "id": undo_id,
        }
        records = [*plan.checked, (field, b"", pack(record))]
        commit = Commit(
            transfers=transfers,
            debt_add=plan.due - plan.moved,
            records=records,
            counts=plan.counts,
        )
        done = await apply(store, keys, commit, now_ms)
        if done.status in ("RECORD_CONFLICT", "INSUFFICIENT_FUNDS", "exists"):
            continue  # another reversal, a refund or a spend came first: read again
        if done.status != "ok":
            raise Refused(422, done.status, f"the ledger refused: {done.status}")
        return JSONResponse(
            _reversal_reply(pid, transfer_id, record, False, done.balance, done.debt)
        )
    raise Refused(503, "BUSY", "the wallet kept changing; retry")
