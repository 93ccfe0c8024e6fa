"""The [tasks.<name>] and [campaigns.<name>] sections: tasks that pay coins (and growth
value) with caps per business day and per month, and campaigns that multiply the coins of
orders or tasks between two local dates. Each entry is a frozen dataclass read through a
`Table`; the rules that use them live in game_rules/tasks.py and game_rules/campaign.py.

No [tasks] table at all: the default tasks (TASKS_DEFAULT); an empty [tasks] table: no
tasks. The same for [campaigns].
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import date

from game_rules.rulefile.catalog import NAME_RE, Catalog, read_catalog
from game_rules.rulefile.limits import REWARD_COINS_MAX
from game_rules.rulefile.table import Table

TASKS_LEN_MAX = 32
CAMPAIGNS_LEN_MAX = 16
TASK_NAME_RE = NAME_RE
TITLE_LEN_MAX = 64
GROWTH_EVENT_LEN_MAX = 32
CATEGORY_LEN_MAX = 64
TASK_PER_DAY_MAX_CEILING = 1000
TASK_PER_MONTH_MAX_CEILING = 31_000
BROWSE_S_MAX = 3600
COINS_PCT_MIN = 100  # 100: x1, no bonus
COINS_PCT_MAX = 1000  # x10
TASK_SOURCES = ("platform", "browse")
CAMPAIGN_TARGETS = ("orders", "tasks", "both")


@dataclass(frozen=True, slots=True)
class TaskRules:
    """One task. `source` "platform": the platform reports each completion (idempotent by
    its event id); "browse": the player starts it and claims it at least browse_ms later by
    the server clock. Each completion pays `coins` (times the level's task multiplier and a
    campaign's) and the growth event `growth_event` ("" for none), at most per_day_max
    times a business day and per_month_max times a calendar month (rules' time zone)."""

    name: str
    title: str
    source: str
    coins: int
    per_day_max: int
    per_month_max: int
    growth_event: str = ""
    browse_ms: int = 0  # "browse" tasks only: > 0


@dataclass(frozen=True, slots=True)
class CampaignRules:
    """Coins times coins_pct / 100 (floor) for what `applies_to` names ("orders", "tasks"
    or "both") from the first instant of first_day to the last instant of last_day in the
    rules' time zone; with a `category`, only order items of that category."""

    name: str
    title: str
    first_day: date
    last_day: date
    coins_pct: int
    applies_to: str = "orders"
    category: str = ""  # "" every item; else orders only


TaskCatalog = Catalog[TaskRules]
CampaignCatalog = Catalog[CampaignRules]

# The source documents' earning tasks (seeds/004: sharing, showing an order with photos,
# browsing, inviting; seeds/000: the JD bean numbers a share or a review earns).
TASKS_DEFAULT = TaskCatalog(
    (
        TaskRules("share", "Share a product", "platform", 5, 3, 60, "share"),
        TaskRules(
            "photo_review", "Show your order with photos", "platform", 20, 2, 20, "photo_review"
        ),
        TaskRules("browse", "Browse the sale page for 15 s", "browse", 5, 3, 90, "", 15_000),
        TaskRules("invite", "Invite a friend", "platform", 50, 3, 10, ""),
        TaskRules("first_order", "First order of the month", "platform", 100, 1, 1, ""),
    )
)
# Double 11 (双十一): x2 coins on orders from 1 to 11 November; a category bonus in December.
CAMPAIGNS_DEFAULT = CampaignCatalog(
    (
        CampaignRules("double_eleven", "Double 11", date(2026, 11, 1), date(2026, 11, 11), 200),
        CampaignRules(
            "fresh_food",
            "Fresh food week",
            date(2026, 12, 1),
            date(2026, 12, 7),
            150,
            "orders",
            "fresh_food",
        ),
    )
)


@dataclass(frozen=True, slots=True)
class TasksRules:
    tasks: TaskCatalog = TASKS_DEFAULT
    campaigns: CampaignCatalog = CAMPAIGNS_DEFAULT


TASKS_RULES_DEFAULT = TasksRules()


def read_tasks_part(root: Table) -> TasksRules | None:
    """[tasks.*] and [campaigns.*] from the file's root: each absent table keeps its default."""
    tasks = root.section("tasks", _tasks) if root.has("tasks") else TASKS_DEFAULT
    campaigns = (
        root.section("campaigns", _campaigns) if root.has("campaigns") else CAMPAIGNS_DEFAULT
    )
    if tasks is None or campaigns is None:
        return None
    return TasksRules(tasks, campaigns)


def growth_event_problems(rules: TasksRules, growth_events: Collection[str]) -> list[str]:
    """A task's growth_event must name an event of [growth.events] (read by another part)."""
    return [
        f"tasks.{task.name}.growth_event: no growth event {task.growth_event!r} in [growth.events]"
        for task in rules.tasks.values()
        if task.growth_event and task.growth_event not in growth_events
    ]


def _tasks(table: Table) -> TaskCatalog | None:
    return read_catalog(table, "task", _task, 0, TASKS_LEN_MAX, TASK_NAME_RE)


def _task(table: Table) -> TaskRules | None:
    title = table.string("title", default=table.name, len_max=TITLE_LEN_MAX)
    source = table.choice("source", TASK_SOURCES)
    coins = table.integer("coins", value_min=1, value_max=REWARD_COINS_MAX)
    per_day = table.integer("per_day_max", value_min=1, value_max=TASK_PER_DAY_MAX_CEILING)
    per_month = table.integer("per_month_max", value_min=1, value_max=TASK_PER_MONTH_MAX_CEILING)
    growth_event = ""
    if table.has("growth_event"):
        growth_event = table.string("growth_event", len_max=GROWTH_EVENT_LEN_MAX) or ""
        if growth_event and not NAME_RE.fullmatch(growth_event):
            table.problem("growth_event", "must be 1..24 characters of a-z and '_'")
            return None
    browse_s = 0
    if source == "browse":
        browse_s = table.integer("browse_s", value_min=1, value_max=BROWSE_S_MAX) or 0
    elif table.has("browse_s"):
        table.problem("browse_s", 'only a task with source = "browse" has a browse time')
        return None
    if per_day is not None and per_month is not None and per_month < per_day:
        table.problem("per_month_max", f"must be at least per_day_max ({per_day}), got {per_month}")
        return None
    if title is None or source is None or coins is None or per_day is None or per_month is None:
        return None
    if source == "browse" and not browse_s:
        return None
    return TaskRules(
        table.name, title, source, coins, per_day, per_month, growth_event, browse_s * 1000
    )


def _campaigns(table: Table) -> CampaignCatalog | None:
    return read_catalog(table, "campaign", _campaign, 0, CAMPAIGNS_LEN_MAX, NAME_RE)


def _campaign(table: Table) -> CampaignRules | None:
    title = table.string("title", default=table.name, len_max=TITLE_LEN_MAX)
    first_day = _day(table, "first_day")
    last_day = _day(table, "last_day")
    coins_pct = table.integer("coins_pct", value_min=COINS_PCT_MIN, value_max=COINS_PCT_MAX)
    applies_to = table.choice("applies_to", CAMPAIGN_TARGETS, default="orders")
    category = ""
    if table.has("category"):
        category = table.string("category", len_max=CATEGORY_LEN_MAX) or ""
        if applies_to != "orders":
            table.problem("category", 'only a campaign with applies_to = "orders" has a category')
            return None
    if first_day is not None and last_day is not None and last_day < first_day:
        table.problem("last_day", f"must be on or after first_day ({first_day}), got {last_day}")
        return None
    if title is None or first_day is None or last_day is None:
        return None
    if coins_pct is None or applies_to is None:
        return None
    return CampaignRules(table.name, title, first_day, last_day, coins_pct, applies_to, category)


def _day(table: Table, key: str) -> date | None:
    """A local date: a TOML string "YYYY-MM-DD" (the rules' time zone gives it its instants)."""
    text = table.string(key, len_max=10)
    if text is None:
        return None
    try:
        day = date.fromisoformat(text)
    except ValueError:
        day = None
    if day is None or day.isoformat() != text:
        table.problem(key, f'must be a date "YYYY-MM-DD", got {text!r}')
        return None
    return day
