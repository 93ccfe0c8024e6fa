"""Push-notification triggers for players whom a push did not reach.

A push that matters (ripe crop, thefts, streak at risk) and reached no socket becomes a
trigger: the rules decide (quiet hours, daily cap), then it goes to the trigger stream of
the player's partition (one of TRIGGER_PARTITIONS, by bucket range: no single hot key) that
the app's push gateway (or `manor push-relay`) consumes with a consumer group. A trigger
deferred by quiet hours waits as a timer in the player's bucket, `notify|player|kind|key`;
its data waits beside it in a string key of the player's slot, written before the timer is
armed and kept DEFERRED_KEEP_MS past its due time, so no size of data or of player id can
make a deferred trigger too long for a timer member.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from game_rules.notify import decide
from server.ledger.commit import Commit, apply
from server.ops.components import notify_of, pack
from server.pipeline import COMMIT_ATTEMPTS_MAX, Services, load
from server.store.keys import TRIGGER_STREAM_LEN_MAX, PlayerKeys, trigger_stream_of
from server.store.store import Store
from server.store.timers import member

TRIGGER_DATA_BYTES_MAX = 400  # a notification's payload, not a document: keep it small
# A deferred trigger's data outlives its due time by this much: the timers job fires it
# within seconds, and a key that a lost timer leaves behind still goes away on its own.
DEFERRED_KEEP_MS = 86_400_000

log = logging.getLogger(__name__)

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
    stream = trigger_stream_of(player_id)
    args: list[str | int] = ["XADD", stream, "MAXLEN", "~", TRIGGER_STREAM_LEN_MAX, "*"]
    for name, value in fields.items():
        args += (name, value)
    await store.call(*args)


def checked(player_id: str, kind: str, collapse_key: str, data: dict[str, Any]) -> tuple[str, str]:
    """(data as JSON, the timer member if deferred), or ValueError: callers that clear
    state for a trigger call this first, so a trigger that cannot go out clears nothing."""
    if kind not in NOTIFY_KINDS:
        raise ValueError(f"trigger kind must be one of {sorted(NOTIFY_KINDS)}, got {kind!r}")
    text = json.dumps(data, separators=(",", ":"))
    if len(text.encode()) > TRIGGER_DATA_BYTES_MAX:
        raise ValueError(f"trigger data over {TRIGGER_DATA_BYTES_MAX} bytes")
    return text, member("notify", player_id, kind, collapse_key)


async def offer(
    services: Services,
    player_id: str,
    kind: str,
    collapse_key: str,
    data: dict[str, Any],
    now_ms: int,
) -> str:
    """Send, defer or drop a trigger as the rules say; returns "sent", "deferred", "dropped"."""
    text, timer = checked(player_id, kind, collapse_key, data)
    keys = PlayerKeys(player_id)
    store = services.store
    rules = services.rulebook.rules
    for _ in range(COMMIT_ATTEMPTS_MAX):
        snapshot, _ = await load(store, keys, None)
        decision = decide(notify_of(snapshot), rules, now_ms, NOTIFY_KINDS[kind])
        if decision.send_at_ms is None:
            return "dropped"
        deferred = decision.send_at_ms > now_ms
        timers = [(timer, decision.send_at_ms)]
        if deferred:
            # Before the timer exists, so a fired timer always finds its data. A later
            # deferral of the same collapse key replaces it, as the gateway would. The TTL
            # is relative: Redis's clock is not the injected one (tests, the dev clock).
            keep_ms = decision.send_at_ms - now_ms + DEFERRED_KEEP_MS
            data_key = keys.deferred_trigger(kind, collapse_key)
            await store.call("SET", data_key, text, "PX", keep_ms)
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
    """Timer `notify|player|kind|collapse_key`: the quiet hours are over. Timers armed
    before the data moved out of the member read `notify|player|kind|collapse_key|json`."""
    player_id, kind, collapse_key = parts[0], parts[1], parts[2]
    store = services.store
    if len(parts) > 3:
        await send(store, player_id, kind, collapse_key, json.loads("|".join(parts[3:])), now_ms)
        return
    data_key = PlayerKeys(player_id).deferred_trigger(kind, collapse_key)
    text = await store.call("GET", data_key)
    if text is None:
        log.warning("deferred trigger %s of %s: its data expired", collapse_key, player_id)
        return
    await send(store, player_id, kind, collapse_key, json.loads(text), now_ms)
    await store.call("DEL", data_key)
