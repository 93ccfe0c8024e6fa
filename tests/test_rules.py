"""The rules file parser: shipped files parse, every bad file is reported in full."""

from __future__ import annotations

import hashlib
from datetime import time
from importlib.resources import files

import pytest

from game_rules import (
    ExpiryRules,
    FarmRules,
    NotifyRules,
    RulesError,
    SeedRules,
    SignInRules,
    StealRules,
    WaterRules,
    parse_rules,
)
from game_rules.rules import REWARD_COINS_MAX, SEEDS_DEFAULT, SIGNIN_REWARDS_LEN_MAX

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


# --- farm, seeds, notify ------------------------------------------------------------------------

FARM = """\
version = "test"
[signin]
rewards = [10]
[farm]
plots = 6
friends_max = 200
friendship_cooldown_s = 86400
[farm.water]
mode = "share"
share_pct = 10
fixed_s = 1800
reward_coins = 2
paid_per_day_max = 10
[farm.steal]
count_per_day_max = 10
coins_per_day_max = 200
[seeds.turnip]
grow_s = 14400
yield_coins = 20
steal_share_pct = 10
steal_cap_pct = 30
[notify]
quiet_hours = ["22:00", "08:00"]
triggers_per_day_max = 5
streak_reminder_at = "20:00"
"""


def test_parse_rules_default_file_farm_numbers() -> None:
    rules = parse_rules(_shipped("default.toml"))
    assert rules.farm == FarmRules(6, 200, 86_400_000, WaterRules("share", 10, 1_800_000, 2, 10))
    assert rules.farm.steal == StealRules(10, 200)
    assert list(rules.seeds) == ["turnip", "pumpkin", "golden_pear"]
    assert rules.seeds["turnip"] == SeedRules("turnip", 4 * 3_600_000, 20, 10, 30)
    assert rules.seeds["pumpkin"] == SeedRules("pumpkin", 8 * 3_600_000, 45, 10, 30)
    assert rules.seeds["golden_pear"] == SeedRules("golden_pear", 24 * 3_600_000, 150, 10, 30)
    assert rules.notify == NotifyRules(time(22), time(8), 5, time(20))
    hash(rules)  # the whole rules value stays hashable


def test_parse_rules_demo_file_has_short_times() -> None:
    rules = parse_rules(_shipped("demo.toml"))
    grow_s = {name: seed.grow_ms // 1000 for name, seed in rules.seeds.items()}
    assert grow_s == {"turnip": 60, "pumpkin": 120, "golden_pear": 300}
    assert rules.farm.friendship_cooldown_ms == 30_000
    assert rules.farm.water.fixed_ms == 10_000
    default = parse_rules(_shipped("default.toml"))
    assert [s.yield_coins for s in rules.seeds.values()] == [
        s.yield_coins for s in default.seeds.values()
    ]


def test_parse_rules_minimal_file_uses_farm_defaults() -> None:
    rules = parse_rules('version = "v"\n[signin]\nrewards = [5]\n')
    assert rules.farm == FarmRules()
    assert rules.seeds == SEEDS_DEFAULT
    assert rules.notify == NotifyRules()
    assert rules.farm == parse_rules(_shipped("default.toml")).farm
    assert rules.seeds == parse_rules(_shipped("default.toml")).seeds


def test_parse_rules_seed_catalog_is_an_immutable_mapping() -> None:
    seeds = parse_rules(FARM).seeds
    assert len(seeds) == 1
    assert "turnip" in seeds and "carrot" not in seeds
    assert seeds.get("carrot") is None
    with pytest.raises(KeyError):
        seeds["carrot"]
    with pytest.raises(TypeError):
        seeds["carrot"] = seeds["turnip"]  # type: ignore[index]


@pytest.mark.parametrize(
    ("old", "new", "check"),
    [
        ('mode = "share"', 'mode = "fixed"', lambda r: r.farm.water.mode == "fixed"),
        ("plots = 6", "plots = 24", lambda r: r.farm.plots == 24),
        ("plots = 6", "plots = 1", lambda r: r.farm.plots == 1),
        ("friends_max = 200", "friends_max = 5000", lambda r: r.farm.friends_max == 5000),
        ("cooldown_s = 86400", "cooldown_s = 0", lambda r: r.farm.friendship_cooldown_ms == 0),
        ("share_pct = 10\n", "share_pct = 90\n", lambda r: r.farm.water.share_pct == 90),
        (
            "steal_share_pct = 10",
            "steal_share_pct = 30",
            lambda r: r.seeds["turnip"].steal_share_pct == 30,
        ),
        (
            "steal_cap_pct = 30",
            "steal_cap_pct = 99",
            lambda r: r.seeds["turnip"].steal_cap_pct == 99,
        ),
        ('"22:00", "08:00"', '"00:00", "23:59"', lambda r: r.notify.quiet_end == time(23, 59)),
        ('"22:00", "08:00"', '"09:00", "09:00"', lambda r: r.notify.quiet_start == time(9)),
        ('"22:00", "08:00"', "22:00:00, 08:00:00", lambda r: r.notify.quiet_start == time(22)),
        ("[seeds.turnip]", "[seeds.a_b]", lambda r: list(r.seeds) == ["a_b"]),
    ],
)
def test_parse_rules_farm_edges_are_accepted(old: str, new: str, check: object) -> None:
    assert old in FARM
    rules = parse_rules(FARM.replace(old, new, 1))
    assert callable(check) and check(rules)


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("plots = 6", "plots = 0", "farm.plots: must be an integer in 1..24, got 0"),
        ("plots = 6", "plots = 25", "farm.plots: must be an integer in 1..24, got 25"),
        ("friends_max = 200", "friends_max = 0", "farm.friends_max: must be an integer in 1..5000"),
        ("friends_max = 200", "friends_max = 5001", "farm.friends_max: must be an integer in"),
        ("cooldown_s = 86400", "cooldown_s = -1", "farm.friendship_cooldown_s: must be an integer"),
        (
            "cooldown_s = 86400",
            "cooldown_s = 1.5",
            "farm.friendship_cooldown_s: must be an integer, got float",
        ),
        (
            'mode = "share"',
            'mode = "half"',
            "farm.water.mode: must be one of 'share', 'fixed', got string 'half'",
        ),
        (
            'mode = "share"',
            "mode = 1",
            "farm.water.mode: must be one of 'share', 'fixed', got integer 1",
        ),
        (
            "share_pct = 10\n",
            "share_pct = 0\n",
            "farm.water.share_pct: must be an integer in 1..90, got 0",
        ),
        (
            "share_pct = 10\n",
            "share_pct = 91\n",
            "farm.water.share_pct: must be an integer in 1..90, got 91",
        ),
        ("fixed_s = 1800", "fixed_s = 0", "farm.water.fixed_s: must be an integer in 1..604800"),
        (
            "reward_coins = 2",
            "reward_coins = -2",
            "farm.water.reward_coins: must be an integer in 0..",
        ),
        (
            "paid_per_day_max = 10",
            "paid_per_day_max = true",
            "farm.water.paid_per_day_max: must be an integer, got boolean",
        ),
        (
            "count_per_day_max = 10",
            "count_per_day_max = 1001",
            "farm.steal.count_per_day_max: must be an integer in 0..1000",
        ),
        (
            "coins_per_day_max = 200",
            "coins_per_day_max = -1",
            "farm.steal.coins_per_day_max: must be an integer in",
        ),
        ("[farm.water]", "water = 3\n[farm.x]", "farm.water: must be a table, got integer 3"),
        (
            "grow_s = 14400",
            "grow_s = 0",
            "seeds.turnip.grow_s: must be an integer in 1..2592000, got 0",
        ),
        ("grow_s = 14400", "", "seeds.turnip.grow_s: required, missing"),
        (
            "yield_coins = 20",
            "yield_coins = 0",
            "seeds.turnip.yield_coins: must be an integer in 1..100000",
        ),
        (
            "steal_share_pct = 10",
            "steal_share_pct = 0",
            "seeds.turnip.steal_share_pct: must be an integer in 1..99",
        ),
        (
            "steal_cap_pct = 30",
            "steal_cap_pct = 100",
            "seeds.turnip.steal_cap_pct: must be an integer in 1..99, got 100",
        ),
        (
            "steal_share_pct = 10",
            "steal_share_pct = 31",
            "seeds.turnip.steal_share_pct: must be at most steal_cap_pct (30), got 31",
        ),
        ("[seeds.turnip]", "[seeds.Turnip]", "seeds.Turnip: seed names must be 1..24 characters"),
        ("[seeds.turnip]", f"[seeds.{'a' * 25}]", f"seeds.{'a' * 25}: seed names must be"),
        ("[seeds.turnip]", '[seeds."tur-nip"]', "seeds.tur-nip: seed names must be"),
        (
            "[seeds.turnip]",
            "[seeds]\nturnip = 3\n[x]",
            "seeds.turnip: must be a table, got integer 3",
        ),
        ('"22:00", "08:00"', '"22:00"', "notify.quiet_hours: must have exactly 2 entries, got 1"),
        (
            '"22:00", "08:00"',
            '"22:00", "08:00", "09:00"',
            "notify.quiet_hours: must have exactly 2",
        ),
        (
            '"22:00", "08:00"',
            '"24:00", "08:00"',
            'notify.quiet_hours[0]: must be a local time "HH:MM"',
        ),
        (
            '"22:00", "08:00"',
            '"22:00", "8:00"',
            'notify.quiet_hours[1]: must be a local time "HH:MM"',
        ),
        (
            '"22:00", "08:00"',
            '"22:00", 8',
            'notify.quiet_hours[1]: must be a local time "HH:MM" (00:00..23:59), got integer 8',
        ),
        ('"22:00", "08:00"', "22:00:30, 08:00:00", "notify.quiet_hours[0]: must be a local time"),
        (
            'quiet_hours = ["22:00", "08:00"]',
            'quiet_hours = "22:00-08:00"',
            "notify.quiet_hours: must be an array",
        ),
        (
            "triggers_per_day_max = 5",
            "triggers_per_day_max = 101",
            "notify.triggers_per_day_max: must be an integer in 0..100",
        ),
        (
            'streak_reminder_at = "20:00"',
            'streak_reminder_at = "20:60"',
            "notify.streak_reminder_at: must be a local time",
        ),
        (
            'streak_reminder_at = "20:00"',
            'streak_reminder_at = "8pm"',
            "notify.streak_reminder_at: must be a local time",
        ),
    ],
)
def test_parse_rules_farm_bad_value_is_reported(old: str, new: str, expected: str) -> None:
    assert old in FARM
    problems = _problems(FARM.replace(old, new, 1))
    assert any(problem.startswith(expected) for problem in problems), problems


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("plots = 6", "plot = 6", "farm.plot: unknown key (did you mean 'plots'?)"),
        ("fixed_s = 1800", "fixed_ms = 1800", "farm.water.fixed_ms: unknown key"),
        ("[farm.steal]", "[farm.steel]\n[farm.steal]", "farm.steel: unknown key"),
        ("count_per_day_max = 10", "count_per_day = 10", "farm.steal.count_per_day: unknown key"),
        ("grow_s = 14400", "grow_s = 14400\ngrow_ms = 1", "seeds.turnip.grow_ms: unknown key"),
        (
            "triggers_per_day_max = 5",
            "trigger_per_day_max = 5",
            "notify.trigger_per_day_max: unknown key",
        ),
    ],
)
def test_parse_rules_farm_unknown_key_is_reported(old: str, new: str, expected: str) -> None:
    problems = _problems(FARM.replace(old, new, 1))
    assert any(problem.startswith(expected) for problem in problems), problems


def test_parse_rules_empty_seed_table_is_reported() -> None:
    problems = _problems(FARM.split("[seeds.turnip]", maxsplit=1)[0] + "[seeds]\n")
    assert problems == ["seeds: must have 1..32 seeds, got 0"]


SEED_BODY = "grow_s = 1\nyield_coins = 1\nsteal_share_pct = 1\nsteal_cap_pct = 1\n"


def test_parse_rules_too_many_seeds_is_reported() -> None:
    seeds = "".join(
        f"[seeds.s{chr(97 + n // 26)}{chr(97 + n % 26)}]\n{SEED_BODY}" for n in range(33)
    )
    assert _problems(FARM.replace("[seeds.turnip]", seeds + "[seeds.turnip]")) == [
        "seeds: must have 1..32 seeds, got 34"
    ]


def test_parse_rules_reports_every_farm_problem_at_once() -> None:
    text = FARM.replace("plots = 6", "plots = 0").replace('mode = "share"', 'mode = "x"')
    text = text.replace("steal_share_pct = 10", "steal_share_pct = 50")
    text = text.replace('"22:00", "08:00"', '"25:00", "08:61"')
    text += f"[seeds.Bad]\n{SEED_BODY}"
    assert _problems(text) == [
        "farm.plots: must be an integer in 1..24, got 0",
        "farm.water.mode: must be one of 'share', 'fixed', got string 'x'",
        "seeds.turnip.steal_share_pct: must be at most steal_cap_pct (30), got 50",
        "seeds.Bad: seed names must be 1..24 characters of a-z and '_'",
        "notify.quiet_hours[0]: must be a local time \"HH:MM\" (00:00..23:59), got string '25:00'",
        "notify.quiet_hours[1]: must be a local time \"HH:MM\" (00:00..23:59), got string '08:61'",
    ]
