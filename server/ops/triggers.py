"""Push-notification triggers for players whom a push did not reach.

A push that matters (ripe crop, thefts, streak at risk) and reached no socket becomes a
trigger: the rules decide (quiet hours, daily cap), then it goes to one Redis stream that
the app's push gateway (or `manor push-relay`) consumes with a consumer group. A trigger
deferred by quiet hours waits as a timer in the player's bucket.
"""

from __future__ import annotations

import json
from typing import Any

from game_rules.notify import decide
from server.ledger.commit import Commit, apply
from server.ops.components import notify_of, pack
from server.pipeline import COMMIT_ATTEMPTS_MAX, Services, load
from server.store.keys import TRIGGER_STREAM, TRIGGER_STREAM_LEN_MAX, PlayerKeys
from server.store.store import Store
from server.store.timers import member

TRIGGER_DATA_BYTES_MAX = 400  # the data rides in a timer member while deferred

# push kind -> the rules' notification kind (its cap and quiet hours)
NOTIFY_KINDS = {
    "crop_ripe": "ripe",
    "stolen": "stolen",
    "streak_reminder": "streak",
    "coins_expiring": "expiry",
}


async def send(
    store: Store, player_id: str, kind: str, collapse_key: str, data: dict[str, Any], now_ms: int
) -> None:
    fields = {
        "player": player_id,
        "kind": kind,
        "collapse_key": collapse_key,
        "data": json.dumps(data, separators=(",", ":")),
        "created_ms": str(now_ms),
    }
    args: list[str | int] = ["XADD", TRIGGER_STREAM, "MAXLEN", "~", TRIGGER_STREAM_LEN_MAX, "*"]
    for name, value in fields.items():
        args += (name, value)
    await store.call(*args)


async def offer(
    services: Services,
    player_id: str,
    kind: str,
    collapse_key: str,
    data: dict[str, Any],
    now_ms: int,
) -> str:
    """Send, defer or drop a trigger as the rules say; returns "sent", "deferred", "dropped"."""
    text = json.dumps(data, separators=(",", ":"))
    if len(text) > TRIGGER_DATA_BYTES_MAX:
        raise ValueError(f"trigger data over {TRIGGER_DATA_BYTES_MAX} bytes")
    keys = PlayerKeys(player_id)
    rules = services.rulebook.rules
    for _ in range(COMMIT_ATTEMPTS_MAX):
        snapshot, _ = await load(services.store, keys, None)
        decision = decide(notify_of(snapshot), rules, now_ms, NOTIFY_KINDS[kind])
        if decision.send_at_ms is None:
            return "dropped"
        deferred = decision.send_at_ms > now_ms
        timers = [(member("notify", player_id, kind, collapse_key, text), decision.send_at_ms)]
        commit = Commit(
            expected_ver=snapshot.ver,
            fields={"notify": pack(decision.state.to_wire())},
            timers=timers if deferred else (),
        )
        done = await apply(services.store, keys, commit, now_ms)
        if done.status == "CONFLICT":
            continue
        if deferred:
            return "deferred"
        await send(services.store, player_id, kind, collapse_key, data, now_ms)
        return "sent"
    return "dropped"


async def fire_deferred(services: Services, parts: list[str], due_ms: int, now_ms: int) -> None:
    """Timer `notify|player|kind|collapse_key|json`: the quiet hours are over."""
    player_id, kind, collapse_key = parts[0], parts[1], parts[2]
    data = json.loads("|".join(parts[3:]))
    await send(services.store, player_id, kind, collapse_key, data, now_ms)
