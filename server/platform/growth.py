"""Growth events the platform reports (a review, a share, real-name verification...).

Idempotent by the platform's event id: the answer is kept as the record `growth:<id>` in
the player's records hash, compare-and-set in the same commit as the growth state, so a
replay (or two racing deliveries) counts the event once and answers as the first time
(the value and level as they were then, with `already: true`).
The records stay (like order records); each player writes at most the rules'
reports_per_day_max of them per business day.
"""

from __future__ import annotations

from typing import Any

import msgpack

from game_rules import RuleViolation
from game_rules.growth import add_growth
from server.ledger.commit import Commit, apply
from server.ops.components import growth_of, pack
from server.ops.growth import enlist, growth_commit, level_wire
from server.pipeline import COMMIT_ATTEMPTS_MAX, Services, snapshot_of_hash
from server.platform.base import Refused, busy, refused, ruled
from server.store.keys import PlayerKeys

RECORD_PREFIX = "growth:"


def record_field(event_id: str) -> str:
    return RECORD_PREFIX + event_id


async def report_growth(
    services: Services, player: str, event_id: str, event: str
) -> dict[str, Any]:
    keys = PlayerKeys(player)
    field = record_field(event_id)
    for _ in range(COMMIT_ATTEMPTS_MAX):
        state_raw, record = await services.store.call_many(
            ("HGETALL", keys.state), ("HGET", keys.records, field)
        )
        if record is not None:
            return _repeat(event_id, event, record)
        snapshot = snapshot_of_hash(state_raw)
        rules = services.rulebook.rules
        now_ms = services.clock.now_ms()
        try:
            outcome = add_growth(growth_of(snapshot), rules, event, now_ms, event_id)
        except RuleViolation as exc:
            raise ruled(exc) from None
        if outcome.capped == "reports":
            raise Refused(
                "GROWTH_REPORTS_OVER_LIMIT",
                f"at most {rules.growth.reports_per_day_max} growth reports per player a day",
                422,
            )
        answer = {
            "event_id": event_id,
            "event": event,
            "added": outcome.added,
            "value": outcome.state.shown,
            "pending": outcome.state.pending,
            "level": level_wire(outcome.level_after),
        }
        if outcome.capped:
            answer["capped"] = outcome.capped  # absent when the event counted
        fields, pushes = growth_commit(outcome)
        commit = Commit(
            expected_ver=snapshot.ver,
            fields=fields,
            pushes=pushes,
            records=[(field, b"", pack(answer))],
        )
        if b"growth" not in state_raw:
            await enlist(services.store, keys)  # the first growth: whoever wrote one enlisted
        done = await apply(services.store, keys, commit, now_ms)
        if done.status in ("CONFLICT", "RECORD_CONFLICT"):
            continue  # another op or the same event meanwhile: read again
        if done.status != "ok":
            raise refused(done.status)
        return {**answer, "already": False}
    raise busy()


def _repeat(event_id: str, event: str, record: bytes) -> dict[str, Any]:
    answer = msgpack.unpackb(record, raw=False)
    if answer["event"] != event:
        raise Refused("GROWTH_EVENT_MISMATCH", "this event id was reported with another event", 409)
    return {**answer, "already": True}
