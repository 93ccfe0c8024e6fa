"""Campaigns, pure: Double 11's first and last instant in Asia/Shanghai, the category bonus,
no stacking, and an order's reward raised per item."""

from __future__ import annotations

import dataclasses
from datetime import date
from importlib.resources import files

import pytest

from game_rules import Item, order_reward, parse_rules
from game_rules.campaign import best_campaign, bonus_coins, bonus_note, boost_order, window_ms
from game_rules.rulefile.tasks_sections import CampaignCatalog
from game_rules.rules import CampaignRules, Rules
from tests.conftest import shanghai_ms

RULES = parse_rules(files("game_rules").joinpath("default.toml").read_text(encoding="utf-8"))


def with_campaigns(*campaigns: CampaignRules) -> Rules:
    tasks = dataclasses.replace(RULES.tasks, campaigns=CampaignCatalog(campaigns))
    return dataclasses.replace(RULES, tasks=tasks)


@pytest.mark.parametrize(
    ("wall", "running"),
    [
        ("2026-10-31T23:59:59.999", False),  # the instant before the first
        ("2026-11-01T00:00:00", True),  # the first instant, Shanghai time
        ("2026-11-11T23:59:59.999", True),  # the last instant
        ("2026-11-12T00:00:00", False),  # the instant after
    ],
)
def test_double_eleven_first_and_last_instant(wall: str, running: bool) -> None:
    found = best_campaign(RULES, "orders", shanghai_ms(wall))
    assert (found is not None and found.name == "double_eleven") is running
    reward = order_reward(RULES, [Item("a", 10_000)], "o1", "p", shanghai_ms(wall))
    boosted, bonuses = boost_order(RULES, reward, [Item("a", 10_000)], shanghai_ms(wall))
    assert boosted.coins == (2000 if running else 1000)
    assert [b.coins for b in bonuses] == ([1000] if running else [])


def test_window_is_local_midnight_to_local_midnight() -> None:
    campaign = RULES.tasks.campaigns["double_eleven"]
    start_ms, end_ms = window_ms(campaign, RULES)
    assert start_ms == shanghai_ms("2026-11-01T00:00:00")
    assert end_ms == shanghai_ms("2026-11-12T00:00:00")
    assert end_ms - start_ms == 11 * 86_400_000


def test_double_eleven_is_for_orders_not_tasks() -> None:
    now = shanghai_ms("2026-11-11T12:00:00")
    assert best_campaign(RULES, "tasks", now) is None


def test_category_bonus_applies_to_its_items_only() -> None:
    now = shanghai_ms("2026-12-03T12:00:00")
    items = [Item("veg", 10_000, "fresh_food"), Item("tv", 10_000, "electronics"), Item("x", 5000)]
    reward = order_reward(RULES, items, "o1", "p", now)
    boosted, bonuses = boost_order(RULES, reward, items, now)
    assert boosted.per_item == (("veg", 1500), ("tv", 1000), ("x", 500))
    assert boosted.coins == 3000
    assert boosted.credit is not None and boosted.credit.amount == 3000
    assert reward.credit is not None and boosted.credit.transfer_id == reward.credit.transfer_id
    assert bonus_note(bonuses) == " campaign fresh_food x1.50 +500"


def test_campaigns_do_not_stack_the_highest_applies() -> None:
    day = date(2026, 11, 11)
    rules = with_campaigns(
        CampaignRules("all", "All", day, day, 200, "orders"),
        CampaignRules("shoes", "Shoes", day, day, 300, "orders", "shoes"),
        CampaignRules("both", "Both", day, day, 150, "both"),
    )
    now = shanghai_ms("2026-11-11T08:00:00")
    assert (c := best_campaign(rules, "orders", now, "shoes")) and c.name == "shoes"
    assert (c := best_campaign(rules, "orders", now, "hats")) and c.name == "all"
    assert (c := best_campaign(rules, "tasks", now)) and c.name == "both"
    items = [Item("s", 10_000, "shoes"), Item("h", 10_000, "hats")]
    boosted, bonuses = boost_order(rules, order_reward(rules, items, "o", "p", now), items, now)
    assert boosted.per_item == (("s", 3000), ("h", 2000))
    assert bonus_note(bonuses) == " campaign shoes x3.00 +2000 campaign all x2.00 +1000"


def test_the_item_cap_applies_before_the_campaign_multiplies() -> None:
    now = shanghai_ms("2026-11-11T12:00:00")
    items = [Item("big", 1_000_000)]  # 10 000 yuan: 1000 coins, the per-item cap
    boosted, _ = boost_order(RULES, order_reward(RULES, items, "o", "p", now), items, now)
    assert boosted.coins == 2000


def test_an_order_under_the_threshold_earns_nothing_in_a_campaign_too() -> None:
    now = shanghai_ms("2026-11-11T12:00:00")
    items = [Item("small", 4999)]
    reward = order_reward(RULES, items, "o", "p", now)
    boosted, bonuses = boost_order(RULES, reward, items, now)
    assert (boosted, bonuses) == (reward, ())


@pytest.mark.parametrize(
    ("coins", "pct", "bonus"), [(0, 200, 0), (1, 150, 0), (3, 150, 1), (7, 200, 7)]
)
def test_bonus_is_floored(coins: int, pct: int, bonus: int) -> None:
    day = date(2026, 1, 1)
    assert bonus_coins(coins, CampaignRules("c", "C", day, day, pct)) == bonus
    assert bonus_coins(coins, None) == 0
