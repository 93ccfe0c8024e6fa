"""Tasks, pure: the default tasks' caps at their edges (business day and calendar month in
Asia/Shanghai), the browse timer, the level's multiplier, the state's wire form and the
rules file's [tasks] problems."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import date
from importlib.resources import files

import pytest

from game_rules import RulesError, RuleViolation, parse_rules
from game_rules import tasks as rule
from game_rules.rulefile.tasks_sections import TASKS_RULES_DEFAULT, CampaignCatalog, TaskCatalog
from game_rules.rules import CampaignRules, Rules
from game_rules.tasks import TasksState
from tests.conftest import shanghai_ms

RULES = parse_rules(files("game_rules").joinpath("default.toml").read_text(encoding="utf-8"))
LEVEL_1X = 100


def code_of(call: Callable[[], object]) -> str:
    with pytest.raises(RuleViolation) as caught:
        call()
    return caught.value.code


def report_times(state: TasksState, task: str, times: list[int], first: int = 0) -> TasksState:
    """Report `task` once at each instant of `times`; the state after the last."""
    for n, now_ms in enumerate(times):
        state = rule.report(state, RULES, task, f"e{first + n}", now_ms, LEVEL_1X).state
    return state


def test_default_file_holds_the_default_tasks() -> None:
    assert RULES.tasks == TASKS_RULES_DEFAULT
    share = RULES.tasks.tasks["share"]
    assert (share.coins, share.per_day_max, share.per_month_max) == (5, 3, 60)
    assert RULES.tasks.tasks["browse"].browse_ms == 15_000
    first_order = RULES.tasks.tasks["first_order"]
    assert (first_order.per_day_max, first_order.per_month_max) == (1, 1)


@pytest.mark.parametrize(
    ("done_at", "then", "code"),
    [
        # 3 shares a day: the 4th on the same business day is refused...
        (["2026-11-23T00:00:00", "2026-11-23T12:00:00", "2026-11-23T23:59:59"],
         "2026-11-23T23:59:59.999", "TASK_DAY_CAP_REACHED"),
        # ...and the first instant of the next day in Shanghai pays again.
        (["2026-11-23T00:00:00", "2026-11-23T12:00:00", "2026-11-23T23:59:59"],
         "2026-11-24T00:00:00", None),
        # Midnight UTC is 08:00 in Shanghai: still the same business day.
        (["2026-11-23T09:00:00", "2026-11-23T10:00:00", "2026-11-23T11:00:00"],
         "2026-11-24T07:59:59", None),
    ],
)  # fmt: skip
def test_share_day_cap_edges(done_at: list[str], then: str, code: str | None) -> None:
    state = report_times(TasksState(), "share", [shanghai_ms(t) for t in done_at])

    def call() -> rule.TaskOutcome:
        return rule.report(state, RULES, "share", "last", shanghai_ms(then), LEVEL_1X)

    if code is None:
        assert call().done_today == 1
    else:
        assert code_of(call) == code


@pytest.mark.parametrize(
    ("then", "code"),
    [
        ("2026-11-30T23:59:59.999", "TASK_MONTH_CAP_REACHED"),  # the month's last instant
        ("2026-12-01T00:00:00", None),  # the next month's first instant
    ],
)
def test_first_order_month_cap_edges(then: str, code: str | None) -> None:
    state = report_times(TasksState(), "first_order", [shanghai_ms("2026-11-01T00:00:00")])

    def call() -> rule.TaskOutcome:
        return rule.report(state, RULES, "first_order", "o2", shanghai_ms(then), LEVEL_1X)

    if code is None:
        outcome = call()
        assert (outcome.done_today, outcome.done_month, outcome.coins) == (1, 1, 100)
    else:
        assert code_of(call) == code


def test_month_cap_counts_across_days() -> None:
    # invite: 3 a day, 10 a month. 3 + 3 + 3 + 1 over four days, then the month is full.
    days = ["2026-11-02", "2026-11-03", "2026-11-04"]
    times = [shanghai_ms(f"{d}T10:0{n}:00") for d in days for n in range(3)]
    state = report_times(TasksState(), "invite", [*times, shanghai_ms("2026-11-05T10:00:00")])
    later = shanghai_ms("2026-11-06T10:00:00")
    assert code_of(lambda: rule.report(state, RULES, "invite", "x", later, 100)) == (
        "TASK_MONTH_CAP_REACHED"
    )
    view = {v.name: v for v in rule.tasks_view(state, RULES, later, LEVEL_1X)}["invite"]
    assert (view.done_today, view.done_month, view.left_today, view.left_month) == (0, 10, 0, 0)


def test_report_refusals_in_order() -> None:
    now = shanghai_ms("2026-11-23T09:00:00")
    assert code_of(lambda: rule.report(TasksState(), RULES, "nope", "e", now, 100)) == (
        "UNKNOWN_TASK"
    )
    assert code_of(lambda: rule.report(TasksState(), RULES, "browse", "e", now, 100)) == (
        "TASK_NOT_REPORTED"
    )
    assert code_of(lambda: rule.report(TasksState(), RULES, "share", "a b", now, 100)) == (
        "BAD_EVENT"
    )
    done = report_times(TasksState(), "share", [now])
    yesterday = now - 86_400_000
    assert code_of(lambda: rule.report(done, RULES, "share", "e", yesterday, 100)) == "CLOCK_SKEW"


def test_report_pays_with_the_event_id_in_the_transfer_id() -> None:
    now = shanghai_ms("2026-11-23T09:00:00")
    outcome = rule.report(TasksState(), RULES, "photo_review", "ev:1", now, LEVEL_1X)
    assert outcome.credit.transfer_id == rule.report_id("photo_review", "ev:1")
    assert (outcome.credit.amount, outcome.credit.source) == (20, "task")
    assert outcome.growth_event == "photo_review"
    assert outcome.ref == "task photo_review"
    # Two event ids of one task never share a transfer id, whatever they contain.
    assert rule.report_id("share", "a:b") != rule.report_id("share:a", "b")


@pytest.mark.parametrize(
    ("level_pct", "coins", "level_coins", "ref"),
    [
        (100, 20, 0, "task photo_review"),
        (110, 22, 2, "task photo_review level x1.10 +2"),
        (150, 30, 10, "task photo_review level x1.50 +10"),
        (50, 20, 0, "task photo_review"),  # a multiplier never lowers a task's coins
    ],
)
def test_level_multiplier_applies(level_pct: int, coins: int, level_coins: int, ref: str) -> None:
    now = shanghai_ms("2026-11-23T09:00:00")
    outcome = rule.report(TasksState(), RULES, "photo_review", "e", now, level_pct)
    assert (outcome.coins, outcome.level_coins, outcome.ref) == (coins, level_coins, ref)


def test_level_and_campaign_both_apply_to_tasks() -> None:
    campaign = CampaignRules(
        "task_week", "Task week", date(2026, 11, 20), date(2026, 11, 30), 200, "tasks"
    )
    rules = _with_campaigns(RULES, campaign)
    now = shanghai_ms("2026-11-23T09:00:00")
    outcome = rule.report(TasksState(), rules, "share", "e", now, 150)
    # 5 coins x1.5 = 7 (floor), then x2 = 14.
    assert (outcome.coins, outcome.level_coins) == (14, 2)
    assert outcome.bonus is not None and outcome.bonus.coins == 7
    assert outcome.ref == "task share level x1.50 +2 campaign task_week x2.00 +7"


def _with_campaigns(rules: Rules, *campaigns: CampaignRules) -> Rules:
    tasks = dataclasses.replace(rules.tasks, campaigns=CampaignCatalog(campaigns))
    return dataclasses.replace(rules, tasks=tasks)


# --- the browse timer ---------------------------------------------------------------------


def test_browse_claimed_too_early_is_refused_then_pays_at_exactly_browse_s() -> None:
    start_ms = shanghai_ms("2026-11-23T09:00:00")
    started = rule.start(TasksState(), RULES, "browse", start_ms)
    assert (started.started_ms, started.claim_at_ms, started.already) == (
        start_ms,
        start_ms + 15_000,
        False,
    )
    state = started.state
    assert code_of(lambda: rule.claim(state, RULES, "browse", start_ms + 14_999, 100)) == (
        "TASK_TOO_EARLY"
    )
    outcome = rule.claim(state, RULES, "browse", start_ms + 15_000, 100)
    assert (outcome.coins, outcome.done_today) == (5, 1)
    assert outcome.credit.transfer_id == f"browse:browse:{start_ms}"
    assert outcome.state.started_ms("browse") is None  # one claim per start
    assert code_of(lambda: rule.claim(outcome.state, RULES, "browse", start_ms + 20_000, 100)) == (
        "TASK_NOT_STARTED"
    )


def test_browse_start_again_keeps_the_first_start() -> None:
    start_ms = shanghai_ms("2026-11-23T09:00:00")
    first = rule.start(TasksState(), RULES, "browse", start_ms)
    again = rule.start(first.state, RULES, "browse", start_ms + 10_000)
    assert (again.already, again.started_ms, again.state) == (True, start_ms, first.state)


def test_browse_start_refusals() -> None:
    now = shanghai_ms("2026-11-23T09:00:00")
    assert code_of(lambda: rule.start(TasksState(), RULES, "share", now)) == "TASK_NOT_CLAIMABLE"
    assert code_of(lambda: rule.claim(TasksState(), RULES, "share", now, 100)) == (
        "TASK_NOT_CLAIMABLE"
    )
    assert code_of(lambda: rule.start(TasksState(), RULES, "nope", now)) == "UNKNOWN_TASK"
    state = TasksState()
    for n in range(3):
        state = rule.start(state, RULES, "browse", now + n * 60_000).state
        state = rule.claim(state, RULES, "browse", now + n * 60_000 + 15_000, 100).state
    assert code_of(lambda: rule.start(state, RULES, "browse", now + 600_000)) == (
        "TASK_DAY_CAP_REACHED"
    )
    tomorrow = shanghai_ms("2026-11-24T00:00:00")
    assert rule.start(state, RULES, "browse", tomorrow).already is False


def test_view_shows_caps_left_and_claimable() -> None:
    now = shanghai_ms("2026-11-23T09:00:00")
    state = rule.start(TasksState(), RULES, "browse", now).state
    state = report_times(state, "share", [now, now])
    views = {v.name: v for v in rule.tasks_view(state, RULES, now + 15_000, 110)}
    assert list(views) == ["share", "photo_review", "browse", "invite", "first_order"]
    share = views["share"]
    assert (share.coins, share.done_today, share.left_today, share.left_month) == (5, 2, 1, 58)
    assert share.claimable is False  # the platform reports it
    browse = views["browse"]
    assert (browse.claimable, browse.claim_at_ms, browse.coins) == (True, now + 15_000, 5)
    assert views["photo_review"].coins == 22  # 20 x1.10
    assert rule.tasks_view(state, RULES, now + 14_999, 100)[2].claimable is False


def test_state_wire_round_trip_and_garbage() -> None:
    now = shanghai_ms("2026-11-23T09:00:00")
    state = report_times(rule.start(TasksState(), RULES, "browse", now).state, "invite", [now])
    assert TasksState.from_wire(state.to_wire()) == state
    for bad in (None, {}, {"c": [], "s": [], "x": 1}, {"c": [["a", "nope", 1, "x", 1]], "s": []}):
        with pytest.raises(ValueError):
            TasksState.from_wire(bad)


def test_a_task_removed_from_the_rules_leaves_the_state() -> None:
    now = shanghai_ms("2026-11-23T09:00:00")
    state = report_times(TasksState(), "invite", [now])
    fewer = TaskCatalog(tuple(t for t in RULES.tasks.tasks.values() if t.name != "invite"))
    rules = dataclasses.replace(RULES, tasks=dataclasses.replace(RULES.tasks, tasks=fewer))
    after = rule.report(state, rules, "share", "e", now, 100).state
    assert [n for n, _ in after.counts] == ["share"]


# --- the rules file -----------------------------------------------------------------------

BASE = 'version = "v"\n[signin]\nrewards = [5]\n'


def test_no_tasks_table_means_the_defaults_and_an_empty_one_means_none() -> None:
    assert parse_rules(BASE).tasks == TASKS_RULES_DEFAULT
    empty = parse_rules(BASE + "[tasks]\n[campaigns]\n").tasks
    assert (len(empty.tasks), len(empty.campaigns)) == (0, 0)


def test_bad_tasks_and_campaigns_report_every_problem() -> None:
    text = BASE + "\n".join(
        [
            "[tasks.share]",
            'source = "platform"',
            "coins = 0",
            "per_day_max = 5",
            "per_month_max = 4",
            "browse_s = 3",
            "[tasks.look]",
            'source = "browse"',
            "coins = 1",
            "per_day_max = 1",
            "per_month_max = 1",
            'growth_event = "no_such_event"',
            "[campaigns.big]",
            'first_day = "2026-11-11"',
            'last_day = "2026-11-01"',
            "coins_pct = 200",
            "[campaigns.cat]",
            'first_day = "2026-13-01"',
            'last_day = "2026-12-01"',
            "coins_pct = 99",
            'applies_to = "tasks"',
            'category = "x"',
        ]
    )
    with pytest.raises(RulesError) as caught:
        parse_rules(text)
    problems = "\n".join(caught.value.problems)
    for expected in (
        "tasks.share.coins: must be an integer in 1..100000, got 0",
        'tasks.share.browse_s: only a task with source = "browse" has a browse time',
        "tasks.look.browse_s: required, missing",
        "campaigns.big.last_day: must be on or after first_day (2026-11-11), got 2026-11-01",
        "campaigns.cat.first_day: must be a date \"YYYY-MM-DD\", got '2026-13-01'",
        "campaigns.cat.coins_pct: must be an integer in 100..1000, got 99",
        'campaigns.cat.category: only a campaign with applies_to = "orders" has a category',
    ):
        assert expected in problems, problems


def test_a_task_growth_event_must_exist() -> None:
    text = BASE + "\n".join(
        [
            "[tasks.share]",
            'source = "platform"',
            "coins = 1",
            "per_day_max = 1",
            "per_month_max = 1",
            'growth_event = "no_such_event"',
        ]
    )
    with pytest.raises(RulesError) as caught:
        parse_rules(text)
    assert caught.value.problems == [
        "tasks.share.growth_event: no growth event 'no_such_event' in [growth.events]"
    ]


def test_month_cap_below_day_cap_is_a_problem() -> None:
    text = BASE + '[tasks.a]\nsource = "platform"\ncoins = 1\nper_day_max = 5\nper_month_max = 4\n'
    with pytest.raises(RulesError) as caught:
        parse_rules(text)
    assert caught.value.problems == [
        "tasks.a.per_month_max: must be at least per_day_max (5), got 4"
    ]
