"""Campaign multipliers: Double 11's x2 on orders, a category bonus, a campaign on tasks.

A campaign runs from the first instant of its first_day to the last instant of its
last_day in the rules' time zone ([start, end) in epoch ms). Campaigns do not stack: where
several apply, the one with the highest coins_pct does (ties: the first in the file), so
two overlapping campaigns can never multiply each other into a cost nobody planned.
The bonus is floor(coins * coins_pct / 100) - coins: the player gains whole coins only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from game_rules.calendar import day_start_ms
from game_rules.commerce import Item, Reward
from game_rules.rules import CampaignRules, Rules

PCT = 100
_ONE_DAY = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Bonus:
    """Coins a campaign added: `coins` more than the base, by campaign `campaign`."""

    campaign: str
    coins_pct: int
    coins: int


def window_ms(campaign: CampaignRules, rules: Rules) -> tuple[int, int]:
    """[start, end) epoch ms of the campaign in the rules' time zone (DST-safe)."""
    start_ms = day_start_ms(campaign.first_day, rules.tz)
    end_ms = day_start_ms(campaign.last_day + _ONE_DAY, rules.tz)
    return start_ms, end_ms


def is_running(campaign: CampaignRules, rules: Rules, now_ms: int) -> bool:
    start_ms, end_ms = window_ms(campaign, rules)
    return start_ms <= now_ms < end_ms


def best_campaign(
    rules: Rules, target: str, now_ms: int, category: str = ""
) -> CampaignRules | None:
    """The running campaign with the highest coins_pct for `target` ("orders" or "tasks");
    for an order item of `category`, campaigns of another category do not apply."""
    if target not in ("orders", "tasks"):
        raise ValueError(f"target must be 'orders' or 'tasks', got {target!r}")
    best: CampaignRules | None = None
    for campaign in rules.tasks.campaigns.values():
        if campaign.applies_to not in (target, "both"):
            continue
        if campaign.category and campaign.category != category:
            continue
        if not is_running(campaign, rules, now_ms):
            continue
        if best is None or campaign.coins_pct > best.coins_pct:
            best = campaign
    return best


def bonus_coins(coins: int, campaign: CampaignRules | None) -> int:
    """What `campaign` adds to `coins` (0 without one): floor(coins * pct / 100) - coins."""
    if coins < 0:
        raise ValueError(f"coins must be >= 0, got {coins}")
    if campaign is None:
        return 0
    return coins * campaign.coins_pct // PCT - coins


def boost_order(
    rules: Rules, reward: Reward, items: Sequence[Item], now_ms: int
) -> tuple[Reward, tuple[Bonus, ...]]:
    """An order's reward with each item's coins raised by its best campaign (the cap of
    item_coins_max applies to the base, then the campaign multiplies it: Double 11 doubles
    what the order would earn). The credit keeps its id; the bonuses say which campaign
    added how much, for the journal entry's ref. The order record keeps the boosted coins per
    item, so a refund takes the campaign's coins back in proportion too."""
    if len(items) != len(reward.per_item):
        raise ValueError("items and reward.per_item must match")
    per_item: list[tuple[str, int]] = []
    added: dict[str, Bonus] = {}
    for item, (item_id, coins) in zip(items, reward.per_item, strict=True):
        campaign = best_campaign(rules, "orders", now_ms, item.category)
        extra = bonus_coins(coins, campaign)
        per_item.append((item_id, coins + extra))
        if campaign is not None and extra > 0:
            seen = added.get(campaign.name)
            total = extra + (seen.coins if seen else 0)
            added[campaign.name] = Bonus(campaign.name, campaign.coins_pct, total)
    if not added:
        return reward, ()
    assert reward.credit is not None  # a bonus > 0 needs base coins > 0
    coins = sum(coins for _, coins in per_item)
    boosted = Reward(coins, tuple(per_item), reward.credit._replace(amount=coins))
    return boosted, tuple(added.values())


def bonus_note(bonuses: Sequence[Bonus]) -> str:
    """The journal ref's tail: ` campaign double_eleven x2.00 +500` per campaign."""
    return "".join(
        f" campaign {b.campaign} x{b.coins_pct // PCT}.{b.coins_pct % PCT:02d} +{b.coins}"
        for b in bonuses
    )
