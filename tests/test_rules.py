"""The rules file parser: shipped files parse, every bad file is reported in full."""

from __future__ import annotations

import hashlib
from importlib.resources import files

import pytest

from game_rules import ExpiryRules, RulesError, SignInRules, parse_rules
from game_rules.rules import REWARD_COINS_MAX, SIGNIN_REWARDS_LEN_MAX

GOOD = """\
version = "test"
timezone = "Asia/Shanghai"
[signin]
rewards = [10, 15, 20, 25, 30, 40, 60]
[expiry]
period_end_months = [6, 12]
years_later = 1
"""


def _shipped(name: str) -> str:
    return files("game_rules").joinpath(name).read_text(encoding="utf-8")


def _problems(text: str) -> list[str]:
    with pytest.raises(RulesError) as caught:
        parse_rules(text, "bad.toml")
    return caught.value.problems


@pytest.mark.parametrize(
    ("name", "version"), [("default.toml", "2026.11-default"), ("demo.toml", "demo")]
)
def test_parse_rules_shipped_file_is_valid(name: str, version: str) -> None:
    rules = parse_rules(_shipped(name), name)
    assert rules.version == version
    assert rules.timezone == "Asia/Shanghai"
    assert rules.tz.key == "Asia/Shanghai"
    assert rules.signin == SignInRules((10, 15, 20, 25, 30, 40, 60))
    assert rules.expiry == ExpiryRules((6, 12), 1)
    assert len(rules.digest) == 12


def test_parse_rules_minimal_file_uses_defaults() -> None:
    rules = parse_rules('version = "v"\n[signin]\nrewards = [5]\n')
    assert rules.timezone == "Asia/Shanghai"
    assert rules.expiry == ExpiryRules((6, 12), 1)
    assert rules.signin.rewards == (5,)


def test_parse_rules_digest_is_sha256_prefix_and_follows_text() -> None:
    rules = parse_rules(GOOD)
    assert rules.digest == hashlib.sha256(GOOD.encode()).hexdigest()[:12]
    assert parse_rules(GOOD + "# a comment\n").digest != rules.digest
    assert parse_rules(GOOD).digest == rules.digest


def test_parse_rules_limits_are_inclusive() -> None:
    rewards = ", ".join([str(REWARD_COINS_MAX)] * SIGNIN_REWARDS_LEN_MAX)
    text = GOOD.replace("[10, 15, 20, 25, 30, 40, 60]", f"[{rewards}]")
    text = text.replace("years_later = 1", "years_later = 0")
    text = text.replace("[6, 12]", "[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]")
    rules = parse_rules(text)
    assert len(rules.signin.rewards) == SIGNIN_REWARDS_LEN_MAX
    assert rules.expiry == ExpiryRules(tuple(range(1, 13)), 0)


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ('version = "test"', "", "version: required, missing"),
        ('version = "test"', 'version = ""', "version: must be a non-empty string, got string ''"),
        ('version = "test"', 'version = "  "', "version: must be a non-empty string"),
        ('version = "test"', "version = 3", "version: must be a non-empty string, got integer 3"),
        ('version = "test"', f'version = "{"v" * 65}"', "version: must be at most 64 characters"),
        ('"Asia/Shanghai"', '"Mars/Olympus"', "timezone: must be an IANA time zone"),
        ('"Asia/Shanghai"', '"../etc/passwd"', "timezone: must be an IANA time zone"),
        ('"Asia/Shanghai"', '"Asia"', "timezone: must be an IANA time zone"),
        ('"Asia/Shanghai"', "8", "timezone: must be a non-empty string, got integer 8"),
        ("rewards = [10, 15, 20, 25, 30, 40, 60]", "", "signin.rewards: required, missing"),
        ("[10, 15, 20, 25, 30, 40, 60]", "[]", "signin.rewards: must have 1..31 entries, got 0"),
        ("[10, 15, 20, 25, 30, 40, 60]", str([1] * 32), "signin.rewards: must have 1..31 entries"),
        ("[10, 15, 20, 25, 30, 40, 60]", "10", "signin.rewards: must be an array of integers"),
        (
            "[10, 15, 20, 25, 30, 40, 60]",
            "[10, 15, -5]",
            "signin.rewards[2]: must be an integer in 1..100000, got -5",
        ),
        (
            "[10, 15, 20, 25, 30, 40, 60]",
            "[0]",
            "signin.rewards[0]: must be an integer in 1..100000",
        ),
        ("[10, 15, 20, 25, 30, 40, 60]", "[100001]", "signin.rewards[0]: must be an integer in"),
        (
            "[10, 15, 20, 25, 30, 40, 60]",
            "[10, 1.5]",
            "signin.rewards[1]: must be an integer, got float",
        ),
        (
            "[10, 15, 20, 25, 30, 40, 60]",
            "[true]",
            "signin.rewards[0]: must be an integer, got boolean",
        ),
        (
            "[10, 15, 20, 25, 30, 40, 60]",
            '["10"]',
            "signin.rewards[0]: must be an integer, got string",
        ),
        ("[6, 12]", "[12, 6]", "expiry.period_end_months: must be strictly increasing"),
        ("[6, 12]", "[6, 6, 12]", "expiry.period_end_months: must be strictly increasing"),
        ("[6, 12]", "[3, 6]", "expiry.period_end_months: must end with 12, got [3, 6]"),
        ("[6, 12]", "[0, 12]", "expiry.period_end_months[0]: must be an integer in 1..12, got 0"),
        ("[6, 12]", "[6, 13]", "expiry.period_end_months[1]: must be an integer in 1..12, got 13"),
        ("[6, 12]", "[]", "expiry.period_end_months: must have 1..12 entries, got 0"),
        ("years_later = 1", "years_later = -1", "expiry.years_later: must be an integer in 0..10"),
        ("years_later = 1", "years_later = 11", "expiry.years_later: must be an integer in 0..10"),
        (
            "years_later = 1",
            'years_later = "1"',
            "expiry.years_later: must be an integer, got string",
        ),
        ("[signin]\n", "signin = 3\n[x]\n", "signin: must be a table, got integer 3"),
    ],
)
def test_parse_rules_bad_value_is_reported(old: str, new: str, expected: str) -> None:
    assert old in GOOD
    problems = _problems(GOOD.replace(old, new, 1))
    assert any(problem.startswith(expected) for problem in problems), problems


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "years_later = 1",
            "years_later = 1\nyears_latter = 2",
            "expiry.years_latter: unknown key",
        ),
        ("rewards = [", "reward = [", "signin.reward: unknown key (did you mean 'rewards'?)"),
        ('timezone = "Asia/Shanghai"', 'time_zone = "UTC"', "time_zone: unknown key"),
        ("[signin]", "[singin]\nrewards = [1]\n[signin]", "singin: unknown key"),
    ],
)
def test_parse_rules_unknown_key_is_reported(old: str, new: str, expected: str) -> None:
    problems = _problems(GOOD.replace(old, new, 1))
    assert any(problem.startswith(expected) for problem in problems), problems


def test_parse_rules_reports_every_problem_at_once() -> None:
    text = """\
version = ""
timezone = "Nowhere/Land"
colour = "red"
[signin]
rewards = [10, -5, 0]
[expiry]
period_end_months = [6, 3]
years_later = 99
"""
    with pytest.raises(RulesError) as caught:
        parse_rules(text, "ops.toml")
    error = caught.value
    assert error.source == "ops.toml"
    assert error.problems == [
        "version: must be a non-empty string, got string ''",
        "timezone: must be an IANA time zone such as 'Asia/Shanghai', got 'Nowhere/Land'",
        "signin.rewards[1]: must be an integer in 1..100000, got -5",
        "signin.rewards[2]: must be an integer in 1..100000, got 0",
        "expiry.period_end_months: must be strictly increasing, got [6, 3]",
        "expiry.years_later: must be an integer in 0..10, got 99",
        "colour: unknown key",
    ]
    assert str(error).splitlines() == [f"ops.toml: {problem}" for problem in error.problems]


def test_parse_rules_section_not_a_table_is_reported() -> None:
    problems = _problems('version = "v"\nexpiry = [1]\n[signin]\nrewards = [1]\n')
    assert problems == ["expiry: must be a table, got array [1]"]


def test_parse_rules_toml_syntax_error_is_one_problem() -> None:
    problems = _problems('version = "unterminated\n')
    assert len(problems) == 1
    assert problems[0].startswith("not valid TOML: ")


def test_rules_error_without_problems_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one problem"):
        RulesError([])
