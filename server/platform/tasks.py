"""Task completions the platform reports (share, photo review, invite, first order of the
month): `POST /v1/platform/tasks/done`, idempotent by the platform's event id.

The transfer id `task:<task>:<event id>` is the idempotency key: when the player's txids
has it, the call answers `already` with the coins it paid, whatever the rules say now. Else
the rule decides on the player's snapshot and the commit is version-checked, so two
reports racing for the last place under a cap cannot both pay: the loser reloads and finds
the cap reached (or its own event id, if it was the same event).
"""

from __future__ import annotations

from typing import Any, cast

from game_rules import RuleViolation
from game_rules import tasks as rule
from server.ledger.commit import apply
from server.ledger.posting import read_posting
from server.ops.growth import enlist
from server.ops.tasks import level_pct, paid_commit, tasks_of
from server.pipeline import COMMIT_ATTEMPTS_MAX, Services, snapshot_of_hash
from server.platform.base import busy, refused, ruled
from server.store.keys import PlayerKeys


async def task_done(services: Services, player: str, task: str, event_id: str) -> dict[str, Any]:
    keys = PlayerKeys(player)
    credit_id = rule.report_id(task, event_id)
    for _ in range(COMMIT_ATTEMPTS_MAX):
        state, seen = await services.store.call_many(
            ("HGETALL", keys.state), ("HGET", keys.txids, credit_id)
        )
        state = cast(dict[bytes, bytes], state)
        balance, ck_seq = state.get(b"bal"), state.get(b"ck_seq")
        if seen is not None:
            posting = await read_posting(services.store, keys, credit_id, seen, int(ck_seq or 0))
            if posting is None:
                continue  # compaction trimmed the journal meanwhile: read again
            return {
                "task": task,
                "event_id": event_id,
                "coins": posting.coins,
                "already": True,
                "balance": int(balance or 0),
            }
        snapshot = snapshot_of_hash(state)
        rules = services.rulebook.rules
        now_ms = services.clock.now_ms()
        try:
            pct = level_pct(snapshot, rules, now_ms)
            outcome = rule.report(tasks_of(snapshot), rules, task, event_id, now_ms, pct)
            commit, result = paid_commit(snapshot, rules, outcome, now_ms)
        except RuleViolation as exc:
            raise ruled(exc) from None
        assert outcome.credit.transfer_id == credit_id
        commit = commit._replace(expected_ver=snapshot.ver)
        if outcome.growth_event:
            await enlist(services.store, keys)  # before the first commit of the growth field
        done = await apply(services.store, keys, commit, now_ms)
        if done.status in ("CONFLICT", "exists"):
            continue  # the state moved (another report, a claim): read again
        if done.status != "ok":
            raise refused(done.status)
        answer = {**result, "event_id": event_id, "already": False, "balance": done.balance}
        return {name: value for name, value in answer.items() if value is not None}
    raise busy()
