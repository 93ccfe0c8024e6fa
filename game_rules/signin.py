"""The daily sign-in: one paid sign-in per business day, streak rewards as a cycle."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import NamedTuple

from game_rules.calendar import business_day, expiry_batch, iso_day
from game_rules.errors import RuleViolation
from game_rules.rules import Rules, SignInRules

SIGNIN_SOURCE = "signin"
_ONE_DAY = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class SignInState:
    """What the shell stores per player. Never signed in: (None, 0)."""

    last_day: date | None = None
    streak: int = 0

    def __post_init__(self) -> None:
        if self.last_day is None and self.streak != 0:
            raise ValueError(f"streak must be 0 without a last sign-in day, got {self.streak}")
        if self.last_day is not None and self.streak < 1:
            raise ValueError(f"streak must be >= 1 after a sign-in, got {self.streak}")

    def to_wire(self) -> dict[str, object]:
        """Plain msgpack-able form: {"d": "YYYY-MM-DD" | None, "s": int}."""
        return {"d": None if self.last_day is None else iso_day(self.last_day), "s": self.streak}

    @classmethod
    def from_wire(cls, data: object) -> SignInState:
        """Inverse of to_wire; anything else raises ValueError (the store is not trusted)."""
        if not isinstance(data, dict) or set(data) != {"d", "s"}:
            raise ValueError(f"sign-in state must be a map with keys 'd' and 's', got {data!r}")
        raw_day, streak = data["d"], data["s"]
        if isinstance(streak, bool) or not isinstance(streak, int):
            raise ValueError(f"sign-in state 's' must be an integer, got {streak!r}")
        if raw_day is None:
            return cls(None, streak)
        if not isinstance(raw_day, str):
            raise ValueError(f"sign-in state 'd' must be a date string or nil, got {raw_day!r}")
        last_day = date.fromisoformat(raw_day)  # ValueError on garbage
        if last_day.isoformat() != raw_day:
            # fromisoformat also takes "20260301"; only the form to_wire writes is valid.
            raise ValueError(f"sign-in state 'd' must be YYYY-MM-DD, got {raw_day!r}")
        return cls(last_day, streak)


class Credit(NamedTuple):
    """Coins a rule wants minted to the player, from mint account `source`. Immutable; a
    NamedTuple, as the outcome below, not a frozen dataclass: every credit builds both, and
    a frozen dataclass sets each field through object.__setattr__ (sign_in: 33k -> 22.5k
    instructions, callgrind)."""

    transfer_id: str
    source: str
    amount: int
    batch: date  # expiry batch: last valid day of these coins


class SignInOutcome(NamedTuple):
    state: SignInState
    day: date
    streak: int
    coins: int
    already: bool
    credit: Credit | None


@dataclass(frozen=True, slots=True)
class SignInView:
    signed_today: bool
    streak: int  # as the player sees it now: 0 once the streak is broken
    next_coins: int  # what the next paid sign-in would pay if it keeps the streak
    day: date


def reward_coins(signin: SignInRules, streak_day: int) -> int:
    """Coins for day `streak_day` (1-based) of a streak. The modulo keeps a long streak
    inside a table that a new rules file may have made shorter."""
    if streak_day < 1:
        raise ValueError(f"streak_day must be >= 1, got {streak_day}")
    return signin.rewards[(streak_day - 1) % len(signin.rewards)]


def sign_in(state: SignInState, rules: Rules, now_ms: int, player_id: str) -> SignInOutcome:
    """Sign in at `now_ms`. Idempotent within a business day: the repeat pays nothing."""
    if not player_id:
        raise ValueError("player_id must be non-empty")
    today = business_day(now_ms, rules.tz)
    last_day = state.last_day
    if last_day is not None and last_day > today:
        # The clock went back or the rules' time zone moved west: paying now could pay a
        # day twice, so refuse until the business day catches up.
        raise RuleViolation(
            "CLOCK_SKEW", f"last sign-in was on {last_day}, but the business day is {today}"
        )
    if last_day == today:
        coins = reward_coins(rules.signin, state.streak)
        return SignInOutcome(state, today, state.streak, coins, already=True, credit=None)

    streak = state.streak + 1 if last_day == today - _ONE_DAY else 1
    coins = reward_coins(rules.signin, streak)
    credit = Credit(
        transfer_id=f"signin:{player_id}:{iso_day(today)}",
        source=SIGNIN_SOURCE,
        amount=coins,
        batch=expiry_batch(today, rules.expiry),
    )
    new_state = SignInState(today, streak)
    return SignInOutcome(new_state, today, streak, coins, already=False, credit=credit)


def sign_in_view(state: SignInState, rules: Rules, now_ms: int) -> SignInView:
    """The sign-in panel at `now_ms`, without changing anything."""
    today = business_day(now_ms, rules.tz)
    last_day = state.last_day
    if last_day is not None and last_day >= today:
        # Signed today (or, after clock skew, "later"): sign_in would not pay now.
        return SignInView(True, state.streak, reward_coins(rules.signin, state.streak + 1), today)
    if last_day == today - _ONE_DAY:
        return SignInView(False, state.streak, reward_coins(rules.signin, state.streak + 1), today)
    return SignInView(False, 0, reward_coins(rules.signin, 1), today)


def streak_at_risk(state: SignInState, rules: Rules, now_ms: int) -> bool:
    """Signed in yesterday but not yet today: the streak breaks at the end of today."""
    return state.last_day == business_day(now_ms, rules.tz) - _ONE_DAY
