"""Growth value and member levels: a second score beside the coins, never spent.

Events (a review, a share, real-name verification...) add points, each capped per day,
calendar month, calendar year or ever, all in the rules' time zone. Points count for
`window_months` calendar months: those of month M count while M is one of the last
window_months months including the current one, so points earned in January 2026 (12
months) are out on 1 January 2027. Standing ("ever") events never age out.

The value a player sees changes only at a recompute: at the start of every business day
("daily", JD) or on `recompute_day` of every month ("monthly", Taobao's 8th). The value
shown for a period is the base score plus everything earned before the period began, over
the window as of its first day; points earned since are `pending`. A recompute is taken at
the first touch of the state in a new period (an event, the recompute job); until then
reading computes the same value, since nothing was added in between. The level shown is
the last level whose threshold is <= the value shown.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date

from game_rules.calendar import business_day
from game_rules.errors import RuleViolation
from game_rules.growth_calendar import month_number, next_recompute, period_start
from game_rules.growth_state import RECENT_MAX, GrowthState, Sums, month_of
from game_rules.ids import ID_RE
from game_rules.rules import CheckoutRules, GrowthEventRules, Level, Rules

PCT = 100

# GrowthState and Level are re-exported: the other parts import the whole interface from here.
__all__ = [
    "GrowthOutcome",
    "GrowthState",
    "GrowthView",
    "Level",
    "Raise",
    "add_growth",
    "checkout_for",
    "growth_value",
    "growth_view",
    "level_for",
    "level_of",
    "month_of",
    "next_recompute",
    "period_start",
    "recompute",
    "rules_at_level",
    "task_coins",
]


@dataclass(frozen=True, slots=True)
class GrowthOutcome:
    """added: points this event counted (0 when capped); capped: None, the cap's period
    ("day", "month", "year", "ever") or "reports" (the day's reports_per_day_max: the
    report was not counted at all). level_before/after: the level shown before and after
    (they differ only when this touch was the first of a new recompute period)."""

    state: GrowthState
    added: int
    level_before: Level
    level_after: Level
    capped: str | None = None
    event: str = ""

    @property
    def level_changed(self) -> bool:
        return self.level_before.index != self.level_after.index


@dataclass(frozen=True, slots=True)
class Raise:
    """One way to raise the value: `points` each, `left` more times in the current period."""

    event: str
    points: int
    per: str
    times_max: int
    left: int


@dataclass(frozen=True, slots=True)
class GrowthView:
    value: int
    level: Level
    next_level: Level | None
    pending: int  # points earned since the last recompute, shown at the next
    next_recompute: date  # the business day the next recompute happens
    raises: tuple[Raise, ...]


# --- reading ----------------------------------------------------------------------------------


def level_for(rules: Rules, value: int) -> Level:
    """The last level whose threshold is <= value (the first level's threshold is 0)."""
    levels = rules.growth.levels
    return next(level for level in reversed(levels) if level.threshold <= value)


def growth_value(state: GrowthState, rules: Rules, now_ms: int) -> int:
    """The value shown at now_ms: as of the start of the current recompute period."""
    return _recomputed(state, rules, business_day(now_ms, rules.tz)).shown


def level_of(state: GrowthState, rules: Rules, now_ms: int) -> Level:
    """The level shown at now_ms: the one whose perks apply (checkout, tasks, mall)."""
    return level_for(rules, growth_value(state, rules, now_ms))


def checkout_for(rules: Rules, level: Level) -> CheckoutRules:
    """[checkout] with the level's ratio and cap where the level sets them."""
    perks = level.perks
    return replace(
        rules.checkout,
        coins_per_yuan=perks.coins_per_yuan or rules.checkout.coins_per_yuan,
        order_share_max_pct=(
            rules.checkout.order_share_max_pct
            if perks.order_share_max_pct is None
            else perks.order_share_max_pct
        ),
    )


def rules_at_level(rules: Rules, state: GrowthState, now_ms: int) -> Rules:
    """The rules as checkout applies them to this player: [checkout] with the ratio and cap
    of the level shown at now_ms (game_rules.commerce reads rules.checkout)."""
    return replace(rules, checkout=checkout_for(rules, level_of(state, rules, now_ms)))


def task_coins(level: Level, coins: int) -> int:
    """A task's coins with the level's multiplier, rounded down (the player gains whole
    coins the percentage covers)."""
    if coins < 0:
        raise ValueError(f"coins must be >= 0, got {coins}")
    return coins * level.perks.task_coin_multiplier_pct // PCT


def growth_view(state: GrowthState, rules: Rules, now_ms: int) -> GrowthView:
    today = business_day(now_ms, rules.tz)
    current = _on_day(_recomputed(state, rules, today), today)
    level = level_for(rules, current.shown)
    levels = rules.growth.levels
    next_level = levels[level.index + 1] if level.index + 1 < len(levels) else None
    raises = tuple(
        Raise(e.name, e.points, e.per, e.times_max, max(0, e.times_max - _count(current, e, today)))
        for e in rules.growth.events.values()
    )
    return GrowthView(
        current.shown, level, next_level, current.pending, next_recompute(rules, today), raises
    )


# --- changing ---------------------------------------------------------------------------------


def add_growth(
    state: GrowthState, rules: Rules, event: str, now_ms: int, ref: str
) -> GrowthOutcome:
    """Count one growth event at now_ms; `ref` names it in the operators' history (the
    caller keeps events idempotent: the platform's event id, a task's transfer id).

    Checks, in order: event known (UNKNOWN_GROWTH_EVENT), ref 1..128 printable ASCII
    without spaces (BAD_GROWTH_REF). Then: the state is recomputed if a new period began;
    a report past the day's reports_per_day_max is not counted (capped "reports"); an
    event whose cap for its period is reached counts 0 points (capped: the period).
    """
    rule = rules.growth.events.get(event)
    if rule is None:
        raise RuleViolation("UNKNOWN_GROWTH_EVENT", f"no growth event {event!r}")
    if not ID_RE.fullmatch(ref):
        raise RuleViolation("BAD_GROWTH_REF", "ref must be 1..128 printable ASCII characters")
    today = business_day(now_ms, rules.tz)
    current = _on_day(_recomputed(state, rules, today), today)
    before, after = _levels(state, current, rules)
    if current.day_reports >= rules.growth.reports_per_day_max:
        return GrowthOutcome(current, 0, before, after, "reports", event)
    capped = rule.per if _count(current, rule, today) >= rule.times_max else None
    added = 0 if capped else rule.points
    counts = dict(current.day_counts)
    if added:
        counts[event] = counts.get(event, 0) + 1
    new = replace(
        current,
        pending=current.pending + added,
        months=_kept(
            current.months if rule.per == "ever" else _add_month(current, today, event, added),
            rules,
            today,
        ),
        ever=_add(current.ever, event, added) if rule.per == "ever" else current.ever,
        day_counts=tuple(sorted(counts.items())),
        day_reports=current.day_reports + 1,
        recent=(*current.recent, (now_ms, event, added, ref))[-RECENT_MAX:],
    )
    return GrowthOutcome(new, added, before, after, capped, event)


def recompute(state: GrowthState, rules: Rules, now_ms: int) -> GrowthOutcome:
    """The recompute job's step: take the period's value if a new period began."""
    today = business_day(now_ms, rules.tz)
    current = _recomputed(state, rules, today)
    current = replace(current, months=_kept(current.months, rules, today))
    before, after = _levels(state, current, rules)
    return GrowthOutcome(current, 0, before, after)


# --- helpers ----------------------------------------------------------------------------------


def _recomputed(state: GrowthState, rules: Rules, today: date) -> GrowthState:
    start = period_start(rules, today)
    if state.period is not None and state.period >= start:
        return state  # this period's value is taken (or the clock went back: keep it)
    last = month_number(month_of(start))
    first = last - rules.growth.window_months + 1
    earned = sum(
        points
        for month, sums in state.months
        if first <= month_number(month) <= last
        for _, _, points in sums
    )
    shown = rules.growth.base_score + earned + sum(points for _, _, points in state.ever)
    level = level_for(rules, shown).index
    return replace(state, shown=shown, level=level, period=start, pending=0)


def _levels(before: GrowthState, after: GrowthState, rules: Rules) -> tuple[Level, Level]:
    levels = rules.growth.levels
    level_after = levels[min(after.level, len(levels) - 1)]
    if before.period is None:
        return level_after, level_after  # a new player starts at a level: no change to show
    return levels[min(before.level, len(levels) - 1)], level_after


def _on_day(state: GrowthState, today: date) -> GrowthState:
    """Today's counts start fresh on a later day; a clock gone back keeps counting on."""
    if state.day is None or today > state.day:
        return replace(state, day=today, day_counts=(), day_reports=0)
    return state


def _count(state: GrowthState, rule: GrowthEventRules, today: date) -> int:
    """How many times `rule`'s event counted in its current period."""
    if rule.per == "ever":
        return _find(state.ever, rule.name)
    if rule.per == "day":
        return dict(state.day_counts).get(rule.name, 0) if state.day == today else 0
    wanted = month_of(today)
    return sum(
        _find(sums, rule.name)
        for month, sums in state.months
        if month == wanted or (rule.per == "year" and month // 100 == today.year)
    )


def _find(sums: Sums, event: str) -> int:
    return next((count for name, count, _ in sums if name == event), 0)


def _add(sums: Sums, event: str, points: int) -> Sums:
    if not points:
        return sums
    table = {name: (count, total) for name, count, total in sums}
    count, total = table.get(event, (0, 0))
    table[event] = (count + 1, total + points)
    return tuple((name, c, t) for name, (c, t) in sorted(table.items()))


def _add_month(
    state: GrowthState, today: date, event: str, points: int
) -> tuple[tuple[int, Sums], ...]:
    months = dict(state.months)
    month = month_of(today)
    months[month] = _add(months.get(month, ()), event, points)
    return tuple(sorted((m, s) for m, s in months.items() if s))


def _kept(
    months: tuple[tuple[int, Sums], ...], rules: Rules, today: date
) -> tuple[tuple[int, Sums], ...]:
    """Months a window or a yearly cap may still read: the window of a period that began
    last month, and this calendar year."""
    now = month_number(month_of(today))
    first = min(now - rules.growth.window_months, now - (today.month - 1))
    return tuple((m, s) for m, s in months if month_number(m) >= first)
