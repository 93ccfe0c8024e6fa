"""The pure rules core: no I/O, no clock, no randomness. Time comes in as `now_ms`."""

from game_rules.calendar import batch_expires_at_ms, business_day, day_start_ms, expiry_batch
from game_rules.errors import RulesError, RuleViolation
from game_rules.rules import ExpiryRules, Rules, SignInRules, parse_rules
from game_rules.signin import (
    Credit,
    SignInOutcome,
    SignInState,
    SignInView,
    reward_coins,
    sign_in,
    sign_in_view,
)

__all__ = [
    "Credit",
    "ExpiryRules",
    "RuleViolation",
    "Rules",
    "RulesError",
    "SignInOutcome",
    "SignInRules",
    "SignInState",
    "SignInView",
    "batch_expires_at_ms",
    "business_day",
    "day_start_ms",
    "expiry_batch",
    "parse_rules",
    "reward_coins",
    "sign_in",
    "sign_in_view",
]
