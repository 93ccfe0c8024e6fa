"""Account ops: the player's panel, the daily sign-in and the journal."""

from __future__ import annotations

from typing import Any

import msgpack

from game_rules import (
    SignInState,
    business_day,
    iso_day,
    reward_coins,
    sign_in,
    sign_in_view,
    streak_at_risk,
)
from game_rules.notify import collapse_key
from server.ledger.commit import Commit, apply
from server.ledger.journal_page import JournalBusy, journal_page
from server.ledger.ledger import Transfer, Wallet
from server.ops import triggers
from server.ops.components import growth_of, pack, signin_of
from server.ops.growth import panel
from server.pipeline import (
    Change,
    IntArg,
    Op,
    OpError,
    Services,
    Snapshot,
    rule_op,
    snapshot_of_hash,
)
from server.protocol import Request
from server.settings import Settings
from server.store.keys import BUCKETS, PlayerKeys, players_index

LEDGER_PAGE_DEFAULT = 20


def decide_sign_in(
    services: Services, keys: PlayerKeys, snapshot: Snapshot, args: dict[str, Any], now_ms: int
) -> Change:
    outcome = sign_in(signin_of(snapshot), services.rulebook.rules, now_ms, keys.player_id)
    day = iso_day(outcome.day)
    result = {
        "coins": outcome.coins,
        "streak": outcome.streak,
        "day": day,
        "already": outcome.already,
    }
    credit = outcome.credit
    if credit is None:  # the steady path: the reply is all there is
        result["balance"] = snapshot.balance
        return Change(result)
    transfer = Transfer(
        credit.transfer_id,
        "c",
        credit.amount,
        f"mint:{credit.source}",
        credit.batch,
        ref=day,
    )
    commit = Commit(fields={"signin": pack(outcome.state.to_wire())}, transfers=[transfer])
    return Change(result, commit)


async def state(
    services: Services, keys: PlayerKeys, request: Request, args: dict[str, Any]
) -> dict[str, Any]:
    state_raw = await services.store.call("HGETALL", keys.state)
    wallet = Wallet.from_hash(state_raw)
    snapshot = snapshot_of_hash(state_raw)
    rules = services.rulebook.rules
    now_ms = services.clock.now_ms()
    view = sign_in_view(signin_of(snapshot), rules, now_ms)
    return {
        "player": keys.player_id,
        "balance": wallet.balance,
        "entry_seq": wallet.seq,
        "batches": wallet.by_batch(),
        "streak": view.streak,
        "signed_in_today": view.signed_today,
        "next_sign_in_coins": view.next_coins,
        "day": view.day.isoformat(),
        "push_seq": int(snapshot.fields.get(b"pseq", 0)),
        "rules_version": rules.version,
        "growth": panel(growth_of(snapshot), rules, now_ms),
    }


async def ledger(
    services: Services, keys: PlayerKeys, request: Request, args: dict[str, Any]
) -> dict[str, Any]:
    """Newest entries first; `before_seq` pages back, `next_before_seq` is None at the end
    (or at the archive: `archived_through_seq` entries were compacted away)."""
    try:
        return await journal_page(services.store, keys, args["limit"], args["before_seq"])
    except JournalBusy:
        raise OpError("BUSY", "the journal kept changing; try again") from None


def ops(settings: Settings) -> dict[str, Op]:
    page = IntArg(1, settings.ledger_page_max, min(LEDGER_PAGE_DEFAULT, settings.ledger_page_max))
    return {
        "state": Op({}, state),
        "sign_in": Op({}, rule_op(decide_sign_in)),
        "ledger": Op({"limit": page, "before_seq": IntArg(1, 2**53)}, ledger),
    }


REMINDER_SCAN_COUNT = 500  # players per SSCAN page of a bucket


async def remind_streaks(services: Services) -> int:
    """The evening job: a `streak_reminder` push to every player whose streak breaks at
    midnight, and a trigger for those whom no socket heard. Returns pushes sent."""
    store = services.store
    rules = services.rulebook.rules
    now_ms = services.clock.now_ms()
    today = business_day(now_ms, rules.tz)
    sent = 0
    for bucket in range(BUCKETS):
        cursor = 0
        while True:
            cursor, members = await store.call(
                "SSCAN", players_index(bucket), cursor, "COUNT", REMINDER_SCAN_COUNT
            )
            cursor = int(cursor)
            players = [m.decode() for m in members]
            raws = (
                await store.call_many(*[("HGET", PlayerKeys(p).state, "signin") for p in players])
                if players
                else []
            )
            for player, raw in zip(players, raws, strict=True):
                if raw is None:
                    continue
                state = SignInState.from_wire(msgpack.unpackb(raw, raw=False))
                if not streak_at_risk(state, rules, now_ms):
                    continue
                data = {
                    "streak": state.streak,
                    "next_coins": reward_coins(rules.signin, state.streak + 1),
                }
                keys = PlayerKeys(player)
                done = await apply(
                    store, keys, Commit(pushes=[("streak_reminder", pack(data))]), now_ms
                )
                sent += 1
                if done.receivers and done.receivers[0] == 0:
                    key = collapse_key("streak", player, day=today)
                    await triggers.offer(services, player, "streak_reminder", key, data, now_ms)
            if cursor == 0:
                break
    return sent
