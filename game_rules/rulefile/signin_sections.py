"""The [signin] and [expiry] sections: the coins paid by streak day, and when coins earned
on a day expire (every credit, from any source, takes its expiry batch from [expiry]).
Each section is a frozen dataclass, whose defaults are the values a file may leave out,
and a `read_*` function that reads it through a `Table` and returns None when any of its
values had a problem (the problems themselves are already on the table's list).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from game_rules.rulefile.limits import REWARD_COINS_MAX
from game_rules.rulefile.table import Table

SIGNIN_REWARDS_LEN_MAX = 31
PERIOD_END_MONTHS_DEFAULT = (6, 12)
EXPIRY_YEARS_LATER_DEFAULT = 1
EXPIRY_YEARS_LATER_MAX = 10
WARN_DAYS_DEFAULT = 7
WARN_DAYS_MAX = 60


@dataclass(frozen=True, slots=True)
class SignInRules:
    """Coins by streak day, as a cycle: day n pays rewards[(n - 1) % len(rewards)]."""

    rewards: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ExpiryRules:
    """Coins earned on day d expire at the end of the first period-end month >= d.month,
    `years_later` years after d.year."""

    period_end_months: tuple[int, ...] = PERIOD_END_MONTHS_DEFAULT
    years_later: int = EXPIRY_YEARS_LATER_DEFAULT
    warn_days: int = WARN_DAYS_DEFAULT  # warn when a batch's last valid day is this close


def read_signin(table: Table) -> SignInRules | None:
    rewards = table.int_list(
        "rewards", len_max=SIGNIN_REWARDS_LEN_MAX, value_min=1, value_max=REWARD_COINS_MAX
    )
    return None if rewards is None else SignInRules(rewards)


def read_expiry(table: Table) -> ExpiryRules | None:
    months = table.int_list(
        "period_end_months",
        default=PERIOD_END_MONTHS_DEFAULT,
        len_max=12,
        value_min=1,
        value_max=12,
    )
    if months is not None:
        if any(a >= b for a, b in itertools.pairwise(months)):
            table.problem("period_end_months", f"must be strictly increasing, got {list(months)}")
            months = None
        elif months[-1] != 12:
            # Every month needs a period end at or after it, so the year must close.
            table.problem("period_end_months", f"must end with 12, got {list(months)}")
            months = None
    years_later = table.integer(
        "years_later",
        default=EXPIRY_YEARS_LATER_DEFAULT,
        value_min=0,
        value_max=EXPIRY_YEARS_LATER_MAX,
    )
    warn_days = table.integer(
        "warn_days", default=WARN_DAYS_DEFAULT, value_min=0, value_max=WARN_DAYS_MAX
    )
    if months is None or years_later is None or warn_days is None:
        return None
    return ExpiryRules(months, years_later, warn_days)
