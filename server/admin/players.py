"""Looking a player up: balance by batch, held, debt, sign-in, farm, a journal page, verify."""

from __future__ import annotations

from typing import cast

from redis.asyncio import Redis
from starlette.requests import Request
from starlette.responses import JSONResponse

from game_rules import sign_in_view
from server.admin.checks import SEQ_MAX, Refused, player_field, query_int, services_of
from server.ledger.journal_page import JournalBusy, journal_page
from server.ledger.ledger import Wallet
from server.ledger.verify import verify
from server.ops.account import LEDGER_PAGE_DEFAULT
from server.ops.components import growth_of, signin_of
from server.ops.draw import draw_panel
from server.ops.farm import plots_view
from server.ops.growth import history, panel
from server.ops.mall_orders import mall_panel
from server.ops.tasks import tasks_panel
from server.pipeline import snapshot_of_hash
from server.store.keys import PlayerKeys


async def player(request: Request) -> JSONResponse:
    services = services_of(request)
    pid = player_field("player", request.path_params["player"])
    page_max = services.settings.ledger_page_max
    limit = query_int(request, "limit", 1, page_max, min(LEDGER_PAGE_DEFAULT, page_max))
    before = query_int(request, "before_seq", 1, SEQ_MAX, None)
    assert limit is not None
    keys = PlayerKeys(pid)
    state_raw = await services.store.call("HGETALL", keys.state)
    if not state_raw:
        raise Refused(404, "PLAYER_NOT_FOUND", f"no state and no wallet for player {pid!r}")
    wallet = Wallet.from_hash(state_raw)
    snapshot = snapshot_of_hash(state_raw)
    now_ms = services.clock.now_ms()
    rules = services.rulebook.rules
    view = sign_in_view(signin_of(snapshot), rules, now_ms)
    report = await verify(cast(Redis, services.store.redis), pid)
    try:
        journal = await journal_page(services.store, keys, limit, before)
    except JournalBusy:
        raise Refused(503, "BUSY", "the journal kept changing; retry") from None
    held = wallet.held_at(now_ms)  # a hold past its expiry is void before a commit says so
    return JSONResponse(
        {
            "player": pid,
            "balance": wallet.balance,
            "held": held,
            "available": wallet.balance - held,
            "debt": wallet.debt,
            "batches": wallet.by_batch(),
            "signin": {
                "streak": view.streak,
                "signed_in_today": view.signed_today,
                "next_sign_in_coins": view.next_coins,
                "day": view.day.isoformat(),
            },
            "farm": {"now_ms": now_ms, "plots": plots_view(snapshot, services, now_ms)},
            "draw": draw_panel(snapshot, rules, now_ms),
            "growth": {
                **panel(growth_of(snapshot), rules, now_ms),
                "history": history(growth_of(snapshot)),
            },
            "tasks": tasks_panel(snapshot, rules, now_ms),
            "mall": await mall_panel(services, keys, snapshot),
            "journal": journal,
            "verify": {"ok": report.ok, "entries": report.entries, "problems": report.problems},
            "rules_version": rules.version,
        }
    )
