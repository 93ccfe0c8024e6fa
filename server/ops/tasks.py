"""Task ops: `tasks` (the list as this player sees it), `task_start` and `task_claim` (the
browse timer, checked by the server clock); and `paid_commit`, the one commit a paid
completion makes, for the platform's reports too (server/platform/tasks.py).

A completion writes, in one version-checked commit: the `tasks` field (the caps' counts),
the `growth` field (the task's growth event), the coins from `mint:task` (the journal
entry's ref names the level's and the campaign's part) and the pushes `task_done` (and
`level_up` when the level shown changed).
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from game_rules import business_day
from game_rules import tasks as rule
from game_rules.campaign import is_running
from game_rules.growth import add_growth, level_of
from game_rules.ids import ID_RE
from game_rules.rules import Rules
from game_rules.tasks import TaskOutcome, TasksState
from server.ledger.commit import Commit
from server.ledger.ledger import Transfer
from server.ops.components import growth_of, pack
from server.ops.growth import enlist, growth_commit
from server.pipeline import Change, Op, Services, Snapshot, StrArg, load, rule_op
from server.protocol import Request
from server.settings import Settings
from server.store.keys import PlayerKeys

TASK_ARG = StrArg(re.compile(r"[a-z_]{1,24}"))
GROWTH_REF_LEN_MAX = 128  # add_growth's ref: 1..128 printable ASCII


def tasks_of(snapshot: Snapshot) -> TasksState:
    wire = snapshot.component("tasks")
    return TasksState() if wire is None else TasksState.from_wire(wire)


def level_pct(snapshot: Snapshot, rules: Rules, now_ms: int) -> int:
    """The member level's task coin multiplier (a level perk), in percent."""
    level = level_of(growth_of(snapshot), rules, now_ms)
    return level.perks.task_coin_multiplier_pct


def growth_ref(transfer_id: str) -> str:
    """The growth history's name of a completion: its transfer id, or a digest of a long one."""
    if len(transfer_id) <= GROWTH_REF_LEN_MAX and ID_RE.fullmatch(transfer_id):
        return transfer_id
    return "task#" + hashlib.sha256(transfer_id.encode()).hexdigest()


def paid_commit(
    snapshot: Snapshot, rules: Rules, outcome: TaskOutcome, now_ms: int
) -> tuple[Commit, dict[str, Any]]:
    """The commit of a paid completion and what it answers (also the `task_done` push)."""
    fields = {"tasks": pack(outcome.state.to_wire())}
    level_pushes: list[tuple[str, bytes]] = []
    growth_added = 0
    if outcome.growth_event:
        grown = add_growth(
            growth_of(snapshot),
            rules,
            outcome.growth_event,
            now_ms,
            growth_ref(outcome.credit.transfer_id),
        )
        growth_fields, level_pushes = growth_commit(grown)
        fields.update(growth_fields)
        growth_added = grown.added
    result = {
        "task": outcome.task,
        "coins": outcome.coins,
        "base_coins": outcome.base_coins,
        "level_coins": outcome.level_coins,
        "campaign": None if outcome.bonus is None else outcome.bonus.campaign,
        "campaign_coins": 0 if outcome.bonus is None else outcome.bonus.coins,
        "growth": growth_added,
        "done_today": outcome.done_today,
        "done_month": outcome.done_month,
    }
    pushes = [("task_done", pack(result)), *level_pushes]
    credit = outcome.credit
    transfer = Transfer(
        credit.transfer_id, "c", credit.amount, f"mint:{credit.source}", credit.batch, outcome.ref
    )
    return Commit(fields=fields, transfers=[transfer], pushes=pushes), result


def decide_start(
    services: Services, keys: PlayerKeys, snapshot: Snapshot, args: dict[str, Any], now_ms: int
) -> Change:
    started = rule.start(tasks_of(snapshot), services.rulebook.rules, args["task"], now_ms)
    result = {
        "task": started.task,
        "started_ms": started.started_ms,
        "claim_at_ms": started.claim_at_ms,
        "already": started.already,
    }
    if started.already:
        return Change({**result, "balance": snapshot.balance})
    return Change(result, Commit(fields={"tasks": pack(started.state.to_wire())}))


def decide_claim(
    services: Services, keys: PlayerKeys, snapshot: Snapshot, args: dict[str, Any], now_ms: int
) -> Change:
    rules = services.rulebook.rules
    pct = level_pct(snapshot, rules, now_ms)
    outcome = rule.claim(tasks_of(snapshot), rules, args["task"], now_ms, pct)
    commit, result = paid_commit(snapshot, rules, outcome, now_ms)
    return Change(result, commit)


def running_campaigns(rules: Rules, now_ms: int) -> list[dict[str, Any]]:
    return [
        {
            "campaign": c.name,
            "title": c.title,
            "coins_pct": c.coins_pct,
            "applies_to": c.applies_to,
            "category": c.category or None,
            "first_day": c.first_day.isoformat(),
            "last_day": c.last_day.isoformat(),
        }
        for c in rules.tasks.campaigns.values()
        if is_running(c, rules, now_ms)
    ]


def tasks_panel(snapshot: Snapshot, rules: Rules, now_ms: int) -> dict[str, Any]:
    """The tasks as this player sees them now, and the campaigns running (also the
    operators' lookup)."""
    views = rule.tasks_view(tasks_of(snapshot), rules, now_ms, level_pct(snapshot, rules, now_ms))
    return {
        "day": business_day(now_ms, rules.tz).isoformat(),
        "now_ms": now_ms,
        "tasks": [view.public() for view in views],
        "campaigns": running_campaigns(rules, now_ms),
    }


async def tasks(
    services: Services, keys: PlayerKeys, request: Request, args: dict[str, Any]
) -> dict[str, Any]:
    snapshot, _ = await load(services.store, keys, None)
    panel = tasks_panel(snapshot, services.rulebook.rules, services.clock.now_ms())
    return {**panel, "balance": snapshot.balance}


async def enlist_growth(services: Services, keys: PlayerKeys, args: dict[str, Any]) -> None:
    """Make the growth recompute job walk this player when the task adds growth
    (growth.enlist: before the first commit that writes the `growth` field)."""
    task = services.rulebook.rules.tasks.tasks.get(args["task"])
    if task is not None and task.growth_event:
        await enlist(services.store, keys)


def ops(settings: Settings) -> dict[str, Op]:
    return {
        "tasks": Op({}, tasks),
        "task_start": Op({"task": TASK_ARG}, rule_op(decide_start)),
        "task_claim": Op({"task": TASK_ARG}, rule_op(decide_claim, prepare=enlist_growth)),
    }
