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
from game_rules.commerce import ID_RE
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
from server.ledger.ledger import TRANSFER_ID_BYTES_MAX, Entry, Transfer, Wallet
from server.ops.components import pack
from server.pipeline import COMMIT_ATTEMPTS_MAX, Services
from server.store.keys import PlayerKeys

REVERSAL_PREFIX = "reverse:"


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
    transfer = Transfer(
        f"grant:{grant_id}", "c", coins, "mint:grant", todays_batch(services, now_ms), reason
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


@dataclass(frozen=True, slots=True)
class Posting:
    """What the txids hash says of a transfer: `<kind>|<coins>|<account>|<seq>`."""

    kind: str
    coins: int
    account: str
    seq: int

    @classmethod
    def parse(cls, raw: bytes) -> Posting:
        kind, coins, *account, seq = raw.decode().split("|")
        return cls(kind, int(coins), "|".join(account), int(seq))


def _reversal_reply(
    pid: str, transfer_id: str, record: dict[str, Any], already: bool, balance: int, debt: int
) -> dict[str, Any]:
    return {
        "player": pid,
        "transfer_id": transfer_id,
        "reversal_id": REVERSAL_PREFIX + transfer_id,
        "reversed": "credit" if record["kind"] == "c" else "debit",
        "coins": record["coins"],
        "moved": record["moved"],
        "debt_added": record["debt_added"],
        "already": already,
        "balance": balance,
        "debt": debt,
    }


async def reverse(request: Request) -> JSONResponse:
    """Post the opposite of a transfer. A credit reversed takes back what the player still
    has available and books the rest as debt (as a refund does); a debit reversed credits
    the coins back in today's batch. Idempotent: a record `reversal:<id>` is set with it."""
    services = services_of(request)
    store = services.store
    pid, transfer_id, reason = fields(
        await read_body(request),
        {"player": player_field, "transfer_id": matching(TRANSFER_ID_RE), "reason": reason_field},
    )
    keys = PlayerKeys(pid)
    reversal_id = REVERSAL_PREFIX + transfer_id
    field = f"reversal:{transfer_id}"
    for _ in range(COMMIT_ATTEMPTS_MAX):
        seen, wallet_raw, record_raw = await store.call_many(
            ("HGET", keys.txids, transfer_id),
            ("HGETALL", keys.wallet),
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
        if transfer_id.startswith(REVERSAL_PREFIX):
            raise Refused(409, "NOT_REVERSIBLE", "a reversal is not reversed; post a grant")
        if posting.account == "clawback" and transfer_id.endswith(":debt"):
            raise Refused(409, "NOT_REVERSIBLE", "a debt repayment: reverse the credit it follows")
        if len(reversal_id.encode()) > TRANSFER_ID_BYTES_MAX:
            raise Refused(409, "NOT_REVERSIBLE", "the id is too long to name its reversal")
        ck = wallet.checkpoint.seq
        raw = (
            None
            if posting.seq <= ck
            else await store.call("LINDEX", keys.journal, posting.seq - ck - 1)
        )
        if raw is None:
            raise Refused(410, "ENTRY_ARCHIVED", f"entry seq {posting.seq} is in the archive only")
        entry = Entry.decode(raw)
        if entry.seq != posting.seq or entry.transfer_id != transfer_id:
            continue  # compaction trimmed the journal in between: read again
        now_ms = services.clock.now_ms()
        if posting.kind == "c":
            moved = min(posting.coins, max(0, wallet.balance - wallet.held))
            transfers = (
                [Transfer(reversal_id, "d", moved, posting.account, ref=reason)] if moved else []
            )
            debt_added = posting.coins - moved
        else:
            batch = todays_batch(services, now_ms)
            transfers = [Transfer(reversal_id, "c", posting.coins, posting.account, batch, reason)]
            moved, debt_added = posting.coins, 0
        record = {
            "kind": posting.kind,
            "coins": posting.coins,
            "moved": moved,
            "debt_added": debt_added,
            "reason": reason,
            "at_ms": now_ms,
        }
        commit = Commit(
            transfers=transfers, debt_add=debt_added, records=[(field, b"", pack(record))]
        )
        done = await apply(store, keys, commit, now_ms)
        if done.status in ("RECORD_CONFLICT", "INSUFFICIENT_FUNDS", "exists"):
            continue  # another reversal or a spend came first: read again
        if done.status != "ok":
            raise Refused(422, done.status, f"the ledger refused: {done.status}")
        return JSONResponse(
            _reversal_reply(pid, transfer_id, record, False, done.balance, done.debt)
        )
    raise Refused(503, "BUSY", "the wallet kept changing; retry")
