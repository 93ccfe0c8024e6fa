"""The growth calendar: recompute periods (daily, or monthly on a set day) and month numbers,
all on business days of the rules' time zone."""

from __future__ import annotations

from datetime import date, timedelta

from game_rules.rules import Rules


def period_start(rules: Rules, today: date) -> date:
    """The first business day of the recompute period that `today` is in."""
    if rules.growth.recompute == "daily":
        return today
    day = rules.growth.recompute_day
    if today.day >= day:
        return today.replace(day=day)
    return _month_before(today).replace(day=day)


def next_recompute(rules: Rules, today: date) -> date:
    """The business day of the first recompute after `today`."""
    if rules.growth.recompute == "daily":
        return today + timedelta(days=1)
    start = period_start(rules, today)
    return _month_after(start).replace(day=rules.growth.recompute_day)


def month_number(yyyymm: int) -> int:
    """Months since year 0 of a YYYYMM month: consecutive months differ by 1."""
    return (yyyymm // 100) * 12 + yyyymm % 100 - 1


def _month_before(day: date) -> date:
    return (day.replace(day=1) - timedelta(days=1)).replace(day=1)


def _month_after(day: date) -> date:
    return (day.replace(day=28) + timedelta(days=4)).replace(day=1)
