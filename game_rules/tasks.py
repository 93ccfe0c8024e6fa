"""Tasks: completions that pay coins and growth value, capped per business day and per
calendar month in the rules' time zone.

A "platform" task is reported by the platform, one completion per platform event id (the
transfer id `task:<task>:<event id>` makes a repeat pay once). A "browse" task is claimed
by the player: `start` stamps the server's now_ms, `claim` pays no sooner than browse_ms
later by the same clock (the transfer id `browse:<task>:<started_ms>`: one claim per start).

Coins: the task's coins times the member level's task multiplier (floor), then times the
best running campaign for tasks (floor, see campaign.py). Checks run in the order each
docstring lists; the first failing one raises its RuleViolation.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import TypeVar

from game_rules.calendar import business_day, expiry_batch
from game_rules.campaign import PCT, Bonus, best_campaign, bonus_coins, bonus_note
from game_rules.errors import RuleViolation
from game_rules.ids import ID_RE, transfer_id
from game_rules.rules import Rules, TaskRules
from game_rules.signin import Credit

TASK_SOURCE = "task"  # the mint account: mint:task
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class TaskCount:
    """Completions of one task on business day `day` and in the month starting `month`."""

    day: date
    day_count: int
    month: date  # the first day of the month
    month_count: int


@dataclass(frozen=True, slots=True)
class TasksState:
    """What the shell stores per player (the `tasks` field): counts per task, and the
    browse tasks started and not yet claimed. Only tasks of the rules are kept, so the
    state stays within TASKS_LEN_MAX entries of each."""

    counts: tuple[tuple[str, TaskCount], ...] = ()
    started: tuple[tuple[str, int], ...] = ()  # (task, started_ms)

    def count(self, name: str) -> TaskCount | None:
        return next((c for n, c in self.counts if n == name), None)

    def started_ms(self, name: str) -> int | None:
        return next((ms for n, ms in self.started if n == name), None)

    def to_wire(self) -> dict[str, object]:
        """{"c": [[task, "YYYY-MM-DD", n, "YYYY-MM-DD", m], ...], "s": [[task, ms], ...]}"""
        counts = [
            [n, c.day.isoformat(), c.day_count, c.month.isoformat(), c.month_count]
            for n, c in self.counts
        ]
        return {"c": counts, "s": [[n, ms] for n, ms in self.started]}

    @classmethod
    def from_wire(cls, data: object) -> TasksState:
        """Inverse of to_wire; anything else raises ValueError (the store is not trusted)."""
        if not isinstance(data, dict) or set(data) != {"c", "s"}:
            raise ValueError(f"tasks state must be a map with keys 'c' and 's', got {data!r}")
        try:
            counts = tuple(
                (str(n), TaskCount(date.fromisoformat(d), int(dn), date.fromisoformat(m), int(mn)))
                for n, d, dn, m, mn in data["c"]
            )
            started = tuple((str(n), int(ms)) for n, ms in data["s"])
        except (TypeError, ValueError) as exc:
            raise ValueError(f"tasks state is malformed: {exc}") from None
        return cls(counts, started)


@dataclass(frozen=True, slots=True)
class TaskOutcome:
    """A completion paid: `coins` = base_coins + level_coins + campaign bonus."""

    state: TasksState
    task: str
    base_coins: int
    level_coins: int
    bonus: Bonus | None
    coins: int
    credit: Credit
    ref: str  # the journal entry's ref: "task share level x1.20 +1 campaign ..."
    growth_event: str  # "" when the task adds no growth value
    done_today: int
    done_month: int


@dataclass(frozen=True, slots=True)
class TaskStart:
    state: TasksState
    task: str
    started_ms: int
    claim_at_ms: int
    already: bool  # started before and not claimed yet: the same start


@dataclass(frozen=True, slots=True)
class TaskView:
    """One task as the player sees it at now_ms."""

    name: str
    title: str
    source: str
    coins: int  # what one completion pays now (level and campaign included)
    growth_event: str
    done_today: int
    done_month: int
    left_today: int
    left_month: int
    browse_ms: int
    started_ms: int | None
    claim_at_ms: int | None
    claimable: bool
    campaign: str | None

    def public(self) -> dict[str, object]:
        return {
            "task": self.name,
            "title": self.title,
            "source": self.source,
            "coins": self.coins,
            "growth_event": self.growth_event or None,
            "done_today": self.done_today,
            "done_month": self.done_month,
            "left_today": self.left_today,
            "left_month": self.left_month,
            "browse_s": self.browse_ms // 1000,
            "started_ms": self.started_ms,
            "claim_at_ms": self.claim_at_ms,
            "claimable": self.claimable,
            "campaign": self.campaign,
        }


def report(
    state: TasksState, rules: Rules, name: str, event_id: str, now_ms: int, level_pct: int
) -> TaskOutcome:
    """A completion the platform reports. Checks, in order: the task exists (UNKNOWN_TASK),
    it is a platform task (TASK_NOT_REPORTED: the player claims it), event_id (BAD_EVENT),
    the day's clock (CLOCK_SKEW), the caps (TASK_MONTH_CAP_REACHED, then
    TASK_DAY_CAP_REACHED)."""
    task = _task(rules, name)
    if task.source != "platform":
        raise RuleViolation("TASK_NOT_REPORTED", f"task {name!r} is claimed by the player")
    if not isinstance(event_id, str) or not ID_RE.fullmatch(event_id):
        raise RuleViolation(
            "BAD_EVENT", "event id must be 1..128 printable ASCII characters without spaces"
        )
    return _pay(state, rules, task, now_ms, level_pct, report_id(name, event_id), state.started)


def report_id(name: str, event_id: str) -> str:
    """The transfer id of a reported completion: `task:<task>:<event id>`."""
    return transfer_id("task", name, event_id)


def start(state: TasksState, rules: Rules, name: str, now_ms: int) -> TaskStart:
    """Start a browse task: the claim opens browse_ms later. A start not yet claimed is kept
    (a repeat answers it again, so a retry never restarts the timer). Checks, in order:
    UNKNOWN_TASK, TASK_NOT_CLAIMABLE (a platform task), CLOCK_SKEW, the caps."""
    task = _claimable(rules, name)
    started_ms = state.started_ms(name)
    if started_ms is not None:
        return TaskStart(state, name, started_ms, started_ms + task.browse_ms, already=True)
    _done(state, rules, task, now_ms, check_caps=True)
    started = _known(rules, (*state.started, (name, now_ms)))
    new_state = TasksState(_known(rules, state.counts), started)
    return TaskStart(new_state, name, now_ms, now_ms + task.browse_ms, already=False)


def claim(state: TasksState, rules: Rules, name: str, now_ms: int, level_pct: int) -> TaskOutcome:
    """Claim a browse task. Checks, in order: UNKNOWN_TASK, TASK_NOT_CLAIMABLE, started
    (TASK_NOT_STARTED), browse_ms passed by the server clock (TASK_TOO_EARLY: at exactly
    browse_ms it pays), CLOCK_SKEW, the caps (a start made before the cap was reached by
    other claims is refused, and stays open for the next day)."""
    task = _claimable(rules, name)
    started_ms = state.started_ms(name)
    if started_ms is None:
        raise RuleViolation("TASK_NOT_STARTED", f"start task {name!r} first")
    if now_ms < started_ms + task.browse_ms:
        left_ms = started_ms + task.browse_ms - now_ms
        raise RuleViolation("TASK_TOO_EARLY", f"task {name!r} can be claimed in {left_ms} ms")
    credit_id = transfer_id("browse", name, str(started_ms))
    started = tuple((n, ms) for n, ms in state.started if n != name)
    return _pay(state, rules, task, now_ms, level_pct, credit_id, started)


def tasks_view(state: TasksState, rules: Rules, now_ms: int, level_pct: int) -> list[TaskView]:
    """Every task of the rules as the player sees it at now_ms, in file order."""
    views = []
    for task in rules.tasks.tasks.values():
        today, month = _counts(state, rules, task.name, now_ms)
        left_today = max(0, min(task.per_day_max - today, task.per_month_max - month))
        left_month = max(0, task.per_month_max - month)
        started_ms = state.started_ms(task.name) if task.source == "browse" else None
        claim_at_ms = None if started_ms is None else started_ms + task.browse_ms
        claimable = claim_at_ms is not None and now_ms >= claim_at_ms and left_today > 0
        coins, _, bonus = _coins(rules, task, now_ms, level_pct)
        views.append(
            TaskView(
                task.name,
                task.title,
                task.source,
                coins,
                task.growth_event,
                today,
                month,
                left_today,
                left_month,
                task.browse_ms,
                started_ms,
                claim_at_ms,
                claimable,
                None if bonus is None else bonus.campaign,
            )
        )
    return views


# --- helpers ------------------------------------------------------------------------------


def _task(rules: Rules, name: str) -> TaskRules:
    task = rules.tasks.tasks.get(name)
    if task is None:
        raise RuleViolation("UNKNOWN_TASK", f"no task {name!r}")
    return task


def _claimable(rules: Rules, name: str) -> TaskRules:
    task = _task(rules, name)
    if task.source != "browse":
        raise RuleViolation("TASK_NOT_CLAIMABLE", f"task {name!r} is reported by the platform")
    return task


def _month(day: date) -> date:
    return day.replace(day=1)


def _counts(state: TasksState, rules: Rules, name: str, now_ms: int) -> tuple[int, int]:
    """(done today, done this month) at now_ms; a count of an earlier day or month is 0."""
    count = state.count(name)
    if count is None:
        return 0, 0
    today = business_day(now_ms, rules.tz)
    day_count = count.day_count if count.day == today else 0
    month_count = count.month_count if count.month == _month(today) else 0
    return day_count, month_count


def _done(
    state: TasksState, rules: Rules, task: TaskRules, now_ms: int, check_caps: bool
) -> tuple[int, int]:
    count = state.count(task.name)
    today = business_day(now_ms, rules.tz)
    if count is not None and count.day > today:
        raise RuleViolation(
            "CLOCK_SKEW", f"task {task.name!r} was done on {count.day}, the business day is {today}"
        )
    day_count, month_count = _counts(state, rules, task.name, now_ms)
    # The month first: when both are reached, "next month" is what the player needs to know.
    if check_caps and month_count >= task.per_month_max:
        raise RuleViolation(
            "TASK_MONTH_CAP_REACHED",
            f"task {task.name!r}: {task.per_month_max} a month, all done this month",
        )
    if check_caps and day_count >= task.per_day_max:
        raise RuleViolation(
            "TASK_DAY_CAP_REACHED", f"task {task.name!r}: {task.per_day_max} a day, all done today"
        )
    return day_count, month_count


def _coins(
    rules: Rules, task: TaskRules, now_ms: int, level_pct: int
) -> tuple[int, int, Bonus | None]:
    """(coins, level_coins, bonus): the level's multiplier never lowers a task's coins."""
    leveled = task.coins * max(PCT, level_pct) // PCT
    campaign = best_campaign(rules, "tasks", now_ms)
    extra = bonus_coins(leveled, campaign)
    bonus = (
        None if campaign is None or extra == 0 else Bonus(campaign.name, campaign.coins_pct, extra)
    )
    return leveled + extra, leveled - task.coins, bonus


def _pay(
    state: TasksState,
    rules: Rules,
    task: TaskRules,
    now_ms: int,
    level_pct: int,
    credit_id: str,
    started: tuple[tuple[str, int], ...],
) -> TaskOutcome:
    day_count, month_count = _done(state, rules, task, now_ms, check_caps=True)
    today = business_day(now_ms, rules.tz)
    count = TaskCount(today, day_count + 1, _month(today), month_count + 1)
    counts = (*tuple((n, c) for n, c in state.counts if n != task.name), (task.name, count))
    new_state = TasksState(_known(rules, counts), _known(rules, started))
    coins, level_coins, bonus = _coins(rules, task, now_ms, level_pct)
    ref = f"task {task.name}"
    if level_coins:
        pct = max(PCT, level_pct)
        ref += f" level x{pct // PCT}.{pct % PCT:02d} +{level_coins}"
    if bonus is not None:
        ref += bonus_note([bonus])
    credit = Credit(credit_id, TASK_SOURCE, coins, expiry_batch(today, rules.expiry))
    return TaskOutcome(
        new_state,
        task.name,
        task.coins,
        level_coins,
        bonus,
        coins,
        credit,
        ref,
        task.growth_event,
        day_count + 1,
        month_count + 1,
    )


def _known(rules: Rules, entries: tuple[tuple[str, T], ...]) -> tuple[tuple[str, T], ...]:
    """Only the tasks the rules still have: a task removed from the rules leaves the state."""
    return tuple((n, v) for n, v in entries if n in rules.tasks.tasks)
