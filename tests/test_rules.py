"""The rules file parser: shipped files parse, every bad file is reported in full."""

from __future__ import annotations

import hashlib
from datetime import time
from importlib.resources import files

import pytest

from game_rules import (
    CheckoutRules,
    ExchangeRules,
    ExpiryRules,
    FarmRules,
    NotifyRules,
    OrderRewardRules,
    PartnerCatalog,
    PartnerRules,
    ReviewRewardRules,
    RulesError,
    SeedRules,
    SignInRules,
    StealRules,
    WaterRules,
    parse_rules,
)
from game_rules.rules import (
    PARTNERS_DEFAULT,
    REWARD_COINS_MAX,
    SEEDS_DEFAULT,
    SIGNIN_REWARDS_LEN_MAX,
)

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


# --- checkout, rewards, exchange, expiry warnings -----------------------------------------------

COMMERCE = """\
version = "test"
[signin]
rewards = [10]
[expiry]
warn_days = 7
[checkout]
coins_per_yuan = 100
order_share_max_pct = 50
hold_timeout_s = 900
[rewards.order]
paid_fen_min = 5000
reward_pct = 10
item_coins_max = 1000
[rewards.review]
tiers = [[0, 10], [10000, 20]]
[exchange.partners.china_mobile]
coins_per_point_num = 3
coins_per_point_den = 2
points_per_exchange_max = 100
"""
CHINA_MOBILE = PartnerRules("china_mobile", 3, 2, 100)


@pytest.mark.parametrize("name", ["default.toml", "demo.toml"])
def test_parse_rules_shipped_file_commerce_numbers(name: str) -> None:
    rules = parse_rules(_shipped(name))
    hold_ms = 900_000 if name == "default.toml" else 60_000
    assert rules.checkout == CheckoutRules(100, 50, hold_ms)
    assert rules.order_reward == OrderRewardRules(5000, 10, 1000)
    assert rules.review_reward == ReviewRewardRules(((0, 10), (10_000, 20)))
    assert rules.exchange == ExchangeRules(PartnerCatalog((CHINA_MOBILE,)))
    assert rules.expiry.warn_days == 7
    hash(rules)


def test_parse_rules_minimal_file_uses_commerce_defaults() -> None:
    rules = parse_rules('version = "v"\n[signin]\nrewards = [5]\n')
    default = parse_rules(_shipped("default.toml"))
    assert rules.checkout == CheckoutRules() == default.checkout
    assert rules.order_reward == OrderRewardRules() == default.order_reward
    assert rules.review_reward == ReviewRewardRules() == default.review_reward
    assert rules.exchange == ExchangeRules() == default.exchange
    assert rules.exchange.partners == PARTNERS_DEFAULT
    assert rules.expiry == ExpiryRules((6, 12), 1, 7)


def test_parse_rules_partner_catalog_is_an_immutable_mapping() -> None:
    partners = parse_rules(COMMERCE).exchange.partners
    assert dict(partners) == {"china_mobile": CHINA_MOBILE}
    assert partners.get("unicom") is None
    with pytest.raises(KeyError):
        partners["unicom"]
    with pytest.raises(TypeError):
        partners["unicom"] = CHINA_MOBILE  # type: ignore[index]


def test_parse_rules_empty_partner_table_means_no_exchange() -> None:
    text = COMMERCE.split("[exchange.partners.china_mobile]", maxsplit=1)[0]
    rules = parse_rules(text + "[exchange.partners]\n")
    assert len(rules.exchange.partners) == 0
    assert parse_rules(text + "[exchange]\n").exchange.partners == PARTNERS_DEFAULT


@pytest.mark.parametrize(
    ("old", "new", "check"),
    [
        ("warn_days = 7", "warn_days = 0", lambda r: r.expiry.warn_days == 0),
        ("warn_days = 7", "warn_days = 60", lambda r: r.expiry.warn_days == 60),
        ("coins_per_yuan = 100", "coins_per_yuan = 1", lambda r: r.checkout.coins_per_yuan == 1),
        (
            "coins_per_yuan = 100",
            "coins_per_yuan = 10000",
            lambda r: r.checkout.coins_per_yuan == 10_000,
        ),
        ("share_max_pct = 50", "share_max_pct = 0", lambda r: r.checkout.order_share_max_pct == 0),
        (
            "share_max_pct = 50",
            "share_max_pct = 100",
            lambda r: r.checkout.order_share_max_pct == 100,
        ),
        (
            "hold_timeout_s = 900",
            "hold_timeout_s = 1",
            lambda r: r.checkout.hold_timeout_ms == 1000,
        ),
        (
            "hold_timeout_s = 900",
            "hold_timeout_s = 86400",
            lambda r: r.checkout.hold_timeout_ms == 86_400_000,
        ),
        ("paid_fen_min = 5000", "paid_fen_min = 0", lambda r: r.order_reward.paid_fen_min == 0),
        ("reward_pct = 10", "reward_pct = 0", lambda r: r.order_reward.reward_pct == 0),
        ("reward_pct = 10", "reward_pct = 100", lambda r: r.order_reward.reward_pct == 100),
        (
            "item_coins_max = 1000",
            "item_coins_max = 0",
            lambda r: r.order_reward.item_coins_max == 0,
        ),
        ("[[0, 10], [10000, 20]]", "[[0, 1]]", lambda r: r.review_reward.tiers == ((0, 1),)),
        (
            "[[0, 10], [10000, 20]]",
            "[[0, 10], [1, 5], [2, 30]]",
            lambda r: r.review_reward.tiers == ((0, 10), (1, 5), (2, 30)),
        ),
        (
            "coins_per_point_den = 2",
            "coins_per_point_den = 1000",
            lambda r: r.exchange.partners["china_mobile"].coins_per_point_den == 1000,
        ),
        (
            "points_per_exchange_max = 100",
            "points_per_exchange_max = 1",
            lambda r: r.exchange.partners["china_mobile"].points_per_exchange_max == 1,
        ),
        (
            "[exchange.partners.china_mobile]",
            "[exchange.partners.unicom]\ncoins_per_point_num = 1\ncoins_per_point_den = 1\n"
            "points_per_exchange_max = 5\n[exchange.partners.china_mobile]",
            lambda r: list(r.exchange.partners) == ["unicom", "china_mobile"],
        ),
    ],
)
def test_parse_rules_commerce_edges_are_accepted(old: str, new: str, check: object) -> None:
    assert old in COMMERCE
    rules = parse_rules(COMMERCE.replace(old, new, 1))
    assert callable(check) and check(rules)


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "warn_days = 7",
            "warn_days = -1",
            "expiry.warn_days: must be an integer in 0..60, got -1",
        ),
        (
            "warn_days = 7",
            "warn_days = 61",
            "expiry.warn_days: must be an integer in 0..60, got 61",
        ),
        ("warn_days = 7", "warn_days = 7.0", "expiry.warn_days: must be an integer, got float"),
        (
            "coins_per_yuan = 100",
            "coins_per_yuan = 0",
            "checkout.coins_per_yuan: must be an integer in 1..10000, got 0",
        ),
        (
            "coins_per_yuan = 100",
            "coins_per_yuan = 10001",
            "checkout.coins_per_yuan: must be an integer in 1..10000",
        ),
        (
            "coins_per_yuan = 100",
            "coins_per_yuan = 1.5",
            "checkout.coins_per_yuan: must be an integer, got float 1.5",
        ),
        (
            "order_share_max_pct = 50",
            "order_share_max_pct = 101",
            "checkout.order_share_max_pct: must be an integer in 0..100, got 101",
        ),
        (
            "order_share_max_pct = 50",
            "order_share_max_pct = -1",
            "checkout.order_share_max_pct: must be an integer in 0..100",
        ),
        (
            "hold_timeout_s = 900",
            "hold_timeout_s = 0",
            "checkout.hold_timeout_s: must be an integer in 1..86400, got 0",
        ),
        (
            "hold_timeout_s = 900",
            'hold_timeout_s = "15m"',
            "checkout.hold_timeout_s: must be an integer, got string",
        ),
        (
            "paid_fen_min = 5000",
            "paid_fen_min = -1",
            "rewards.order.paid_fen_min: must be an integer in 0..10000000000, got -1",
        ),
        (
            "paid_fen_min = 5000",
            "paid_fen_min = 50.0",
            "rewards.order.paid_fen_min: must be an integer, got float",
        ),
        (
            "reward_pct = 10",
            "reward_pct = 101",
            "rewards.order.reward_pct: must be an integer in 0..100, got 101",
        ),
        (
            "item_coins_max = 1000",
            "item_coins_max = -1",
            "rewards.order.item_coins_max: must be an integer in 0..1000000",
        ),
        (
            "[[0, 10], [10000, 20]]",
            "[[10000, 20], [0, 10]]",
            "rewards.review.tiers: the first tier must start at 0 fen, got [[10000, 20], [0, 10]]",
        ),
        (
            "[[0, 10], [10000, 20]]",
            "[[1, 10], [10000, 20]]",
            "rewards.review.tiers: the first tier must start at 0 fen",
        ),
        (
            "[[0, 10], [10000, 20]]",
            "[[0, 10], [10000, 20], [10000, 30]]",
            "rewards.review.tiers: paid_fen_at_least must be strictly increasing, got",
        ),
        (
            "[[0, 10], [10000, 20]]",
            "[[0, 10], [20000, 20], [10000, 30]]",
            "rewards.review.tiers: paid_fen_at_least must be strictly increasing",
        ),
        ("[[0, 10], [10000, 20]]", "[]", "rewards.review.tiers: must have 1..16 entries, got 0"),
        (
            "[[0, 10], [10000, 20]]",
            str([[n, 1] for n in range(17)]),
            "rewards.review.tiers: must have 1..16 entries, got 17",
        ),
        (
            "[[0, 10], [10000, 20]]",
            "[0, 10]",
            "rewards.review.tiers[0]: must be an [integer, integer] pair, got integer 0",
        ),
        (
            "[[0, 10], [10000, 20]]",
            "[[0, 10, 1]]",
            "rewards.review.tiers[0]: must be an [integer, integer] pair, got array",
        ),
        (
            "[[0, 10], [10000, 20]]",
            "[[0, 0]]",
            "rewards.review.tiers[0][1]: must be an integer in 1..100000, got 0",
        ),
        (
            "[[0, 10], [10000, 20]]",
            "[[0, 10], [-5, 20]]",
            "rewards.review.tiers[1][0]: must be an integer in 0..10000000000, got -5",
        ),
        (
            "[[0, 10], [10000, 20]]",
            '[[0, 10], [10000, "20"]]',
            "rewards.review.tiers[1][1]: must be an integer, got string",
        ),
        (
            "tiers = [[0, 10], [10000, 20]]",
            'tiers = "10-20"',
            "rewards.review.tiers: must be an array of [integer, integer] pairs, got string",
        ),
        (
            "coins_per_point_den = 2",
            "coins_per_point_den = 0",
            "exchange.partners.china_mobile.coins_per_point_den: must be an integer in 1..1000, "
            "got 0",
        ),
        (
            "coins_per_point_num = 3",
            "coins_per_point_num = 0",
            "exchange.partners.china_mobile.coins_per_point_num: must be an integer in 1..1000",
        ),
        (
            "coins_per_point_num = 3",
            "coins_per_point_num = 1.5",
            "exchange.partners.china_mobile.coins_per_point_num: must be an integer, got float",
        ),
        (
            "coins_per_point_num = 3\n",
            "",
            "exchange.partners.china_mobile.coins_per_point_num: required, missing",
        ),
        (
            "points_per_exchange_max = 100",
            "points_per_exchange_max = 0",
            "exchange.partners.china_mobile.points_per_exchange_max: must be an integer in 1..",
        ),
        (
            "[exchange.partners.china_mobile]",
            '[exchange.partners."China-Mobile"]',
            "exchange.partners.China-Mobile: partner names must be 1..24 characters",
        ),
        (
            "[exchange.partners.china_mobile]",
            "[exchange]\npartners = 3\n[x]",
            "exchange.partners: must be a table, got integer 3",
        ),
        ("[rewards.order]", "[rewards]\norder = 5\n[x]", "rewards.order: must be a table"),
    ],
)
def test_parse_rules_commerce_bad_value_is_reported(old: str, new: str, expected: str) -> None:
    assert old in COMMERCE
    problems = _problems(COMMERCE.replace(old, new, 1))
    assert any(problem.startswith(expected) for problem in problems), problems


@pytest.mark.parametrize("section", ["checkout", "rewards", "exchange"])
def test_parse_rules_commerce_section_not_a_table_is_reported(section: str) -> None:
    problems = _problems(f'version = "v"\n{section} = 1\n[signin]\nrewards = [1]\n')
    assert problems == [f"{section}: must be a table, got integer 1"]


def test_parse_rules_too_many_partners_is_reported() -> None:
    body = "coins_per_point_num = 1\ncoins_per_point_den = 1\npoints_per_exchange_max = 1\n"
    partners = "".join(f"[exchange.partners.p{chr(97 + n)}]\n{body}" for n in range(16))
    assert _problems(COMMERCE + partners) == ["exchange.partners: must have 0..16 partners, got 17"]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "warn_days = 7",
            "warn_day = 7",
            "expiry.warn_day: unknown key (did you mean 'warn_days'?)",
        ),
        ("coins_per_yuan = 100", "coin_per_yuan = 100", "checkout.coin_per_yuan: unknown key"),
        ("hold_timeout_s = 900", "hold_timeout_ms = 900", "checkout.hold_timeout_ms: unknown key"),
        ("[rewards.order]", "[rewards.orders]\n[rewards.order]", "rewards.orders: unknown key"),
        ("reward_pct = 10", "reward_pct = 10\nbonus = 1", "rewards.order.bonus: unknown key"),
        ("tiers = ", "tier = ", "rewards.review.tier: unknown key (did you mean 'tiers'?)"),
        (
            "coins_per_point_den = 2",
            "coins_per_point_den = 2\nratio = 1.5",
            "exchange.partners.china_mobile.ratio: unknown key",
        ),
        ("[exchange.partners.", "[exchange]\nlimit = 1\n[exchange.partners.", "exchange.limit"),
    ],
)
def test_parse_rules_commerce_unknown_key_is_reported(old: str, new: str, expected: str) -> None:
    assert old in COMMERCE
    problems = _problems(COMMERCE.replace(old, new, 1))
    assert any(problem.startswith(expected) for problem in problems), problems


def test_parse_rules_reports_every_commerce_problem_at_once() -> None:
    text = COMMERCE.replace("warn_days = 7", "warn_days = 99")
    text = text.replace("coins_per_yuan = 100", "coins_per_yuan = 0")
    text = text.replace("order_share_max_pct = 50", "order_share_max_pct = 150\nshare = 1")
    text = text.replace("reward_pct = 10", "reward_pct = -1")
    text = text.replace("[[0, 10], [10000, 20]]", "[[5, 10], [1, 20]]")
    text = text.replace("coins_per_point_den = 2", "coins_per_point_den = 0")
    assert _problems(text) == [
        "expiry.warn_days: must be an integer in 0..60, got 99",
        "checkout.coins_per_yuan: must be an integer in 1..10000, got 0",
        "checkout.order_share_max_pct: must be an integer in 0..100, got 150",
        "checkout.share: unknown key",
        "rewards.order.reward_pct: must be an integer in 0..100, got -1",
        "rewards.review.tiers: the first tier must start at 0 fen, got [[5, 10], [1, 20]]",
        "exchange.partners.china_mobile.coins_per_point_den: must be an integer in 1..1000, got 0",
    ]
