"""Coins and money: the seeds' numbers at their edges, rounding, refusals and clawback."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from importlib.resources import files
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from game_rules import (
    CheckoutRules,
    Credit,
    ExchangeRules,
    Item,
    PartnerCatalog,
    PartnerRules,
    Quote,
    Rules,
    RuleViolation,
    check_reserve,
    clawback_split,
    clawback_step,
    coins_value_fen,
    days_until,
    debt_repayment,
    exchange,
    expired_batches,
    expiring_batches,
    hold_expires_ms,
    order_coins_max,
    order_reward,
    parse_rules,
    quote,
    refund_clawback,
    review_reward,
)
from game_rules.commerce import refund_net

RULES = parse_rules(files("game_rules").joinpath("default.toml").read_text(encoding="utf-8"))
SHANGHAI = ZoneInfo("Asia/Shanghai")
BIG = 10**12  # a balance larger than any cap
FEN_MAX = 10**10


def at(year: int, month: int, day: int, hour: int = 12, minute: int = 0, second: int = 0) -> int:
    """Epoch ms of a Shanghai wall time."""
    moment = datetime(year, month, day, hour, minute, second, tzinfo=SHANGHAI)
    return (moment.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


NOW = at(2026, 3, 1)


def code_of(call: Callable[[], object]) -> str:
    with pytest.raises(RuleViolation) as caught:
        call()
    return caught.value.code


def with_checkout(coins_per_yuan: int, share_pct: int = 50) -> Rules:
    return dataclasses.replace(RULES, checkout=CheckoutRules(coins_per_yuan, share_pct, 900_000))


# --- quote and reserve: 100 coins = 1 yuan, at most 50 % of an order ------------------------


@pytest.mark.parametrize(
    ("order_fen", "balance_coins", "coins_max", "value_fen"),
    [
        (10_000, BIG, 5000, 5000),  # 100 yuan: 50 yuan in coins, 5000 coins
        (9999, BIG, 4999, 4999),  # 4999.5 floored: coins never pay more than half
        (10_001, BIG, 5000, 5000),
        (1, BIG, 0, 0),
        (2, BIG, 1, 1),
        (3, BIG, 1, 1),
        (10_000, 1234, 1234, 1234),  # the balance is smaller than the cap
        (10_000, 5000, 5000, 5000),
        (10_000, 0, 0, 0),
        (FEN_MAX, BIG, FEN_MAX // 2, FEN_MAX // 2),
    ],
)
def test_quote_default_rules_table(
    order_fen: int, balance_coins: int, coins_max: int, value_fen: int
) -> None:
    assert quote(RULES, order_fen, balance_coins) == Quote(coins_max, value_fen)


@pytest.mark.parametrize(
    ("coins_per_yuan", "share_pct", "order_fen", "coins_max", "value_fen"),
    [
        (1000, 50, 9999, 49_995, 4999),  # 1 coin = 0.1 fen: 49 995 coins pay 4999.5 -> 4999 fen
        (1, 50, 9999, 49, 4900),  # 1 coin = 1 yuan: 49.995 -> 49 coins
        (100, 0, 10_000, 0, 0),  # coins cannot pay at all
        (100, 100, 9999, 9999, 9999),
    ],
)
def test_quote_other_ratios_floor_coins_and_value(
    coins_per_yuan: int, share_pct: int, order_fen: int, coins_max: int, value_fen: int
) -> None:
    rules = with_checkout(coins_per_yuan, share_pct)
    assert quote(rules, order_fen, BIG) == Quote(coins_max, value_fen)
    assert coins_value_fen(rules, coins_max) == value_fen


@pytest.mark.parametrize("order_fen", [0, -1, FEN_MAX + 1, True, 1.5, "100"])
def test_quote_bad_order_amount_is_refused(order_fen: object) -> None:
    assert code_of(lambda: quote(RULES, order_fen, 100)) == "BAD_ORDER"  # type: ignore[arg-type]


def test_quote_negative_balance_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="balance_coins"):
        quote(RULES, 100, -1)


@pytest.mark.parametrize(
    ("order_fen", "coins", "available_coins", "code"),
    [
        (10_000, 5000, 5000, None),  # exactly the cap and exactly the balance
        (10_000, 1, 1, None),
        (9999, 4999, BIG, None),
        (9999, 5000, BIG, "COINS_OVER_CAP"),  # 50 % of 9999 fen is 4999.5: 5000 is over
        (10_000, 5001, BIG, "COINS_OVER_CAP"),
        (10_000, 5001, 0, "COINS_OVER_CAP"),  # the cap is checked before the balance
        (10_000, 4000, 3999, "INSUFFICIENT_FUNDS"),
        (10_000, 0, BIG, "BAD_COINS"),
        (10_000, -5, BIG, "BAD_COINS"),
        (10_000, True, BIG, "BAD_COINS"),
        (0, 1, BIG, "BAD_ORDER"),  # the order is checked first
        (FEN_MAX + 1, 0, 0, "BAD_ORDER"),
        (1, 1, BIG, "COINS_OVER_CAP"),  # half a fen is no coin
    ],
)
def test_check_reserve_table(
    order_fen: int, coins: int, available_coins: int, code: str | None
) -> None:
    def call() -> None:
        check_reserve(RULES, order_fen, coins, available_coins)

    if code is None:
        call()
    else:
        assert code_of(call) == code


def test_check_reserve_share_zero_refuses_any_coins() -> None:
    rules = with_checkout(100, share_pct=0)
    assert code_of(lambda: check_reserve(rules, 10_000, 1, BIG)) == "COINS_OVER_CAP"


def test_hold_expires_ms_adds_the_hold_timeout() -> None:
    assert hold_expires_ms(RULES, NOW) == NOW + 900_000


def test_order_coins_max_ignores_the_balance() -> None:
    assert order_coins_max(RULES, 9999) == 4999


# --- order rewards: 50 yuan threshold, 10 %, 1000 per item -------------------------------------


def items(*paid_fen: int) -> list[Item]:
    return [Item(f"i{n}", fen) for n, fen in enumerate(paid_fen)]


@pytest.mark.parametrize(
    ("paid_fen", "per_item"),
    [
        ((4999,), (0,)),  # below 50 yuan: nothing
        ((5000,), (500,)),  # 50 yuan: 10 % = 5 yuan = 500 coins
        ((2500, 2499), (0, 0)),  # the order's total counts: 4999
        ((2500, 2500), (250, 250)),
        ((5005,), (500,)),  # 500.5 floored
        ((5009,), (500,)),
        ((9999,), (999,)),  # 999.9 floored
        ((10_000,), (1000,)),
        ((10_001,), (1000,)),  # 1000.1: the cap and the floor agree
        ((1_000_000,), (1000,)),  # an item of 10 000 yuan: capped at 1000
        ((1_000_000, 1_000_000, 9), (1000, 1000, 0)),  # the cap is per item
        ((5000, 0), (500, 0)),  # a free item earns nothing
        ((FEN_MAX,), (1000,)),
    ],
)
def test_order_reward_threshold_pct_and_item_cap(
    paid_fen: tuple[int, ...], per_item: tuple[int, ...]
) -> None:
    reward = order_reward(RULES, items(*paid_fen), "o1", "p1", NOW)
    assert reward.per_item == tuple((f"i{n}", coins) for n, coins in enumerate(per_item))
    assert reward.coins == sum(per_item)
    if reward.coins == 0:
        assert reward.credit is None
    else:
        assert reward.credit == Credit("order:o1:reward", "order", sum(per_item), date(2027, 6, 30))


@pytest.mark.parametrize(
    ("now_ms", "batch"),
    [
        (at(2026, 6, 30, 23, 59, 59), date(2027, 6, 30)),
        (at(2026, 7, 1, 0, 0, 0), date(2027, 12, 31)),
    ],
)
def test_order_reward_batch_is_expiry_batch_of_the_business_day(now_ms: int, batch: date) -> None:
    credit = order_reward(RULES, items(5000), "o1", "p1", now_ms).credit
    assert credit is not None and credit.batch == batch


def test_order_reward_other_coin_ratio_scales_coins() -> None:
    # 1000 coins = 1 yuan: 10 % of 50 yuan = 5 yuan = 5000 coins, then the item cap.
    rules = with_checkout(1000)
    assert order_reward(rules, items(5000), "o", "p", NOW).coins == 1000
    assert order_reward(rules, items(9999), "o", "p", NOW).coins == 1000
    assert order_reward(with_checkout(1), items(9999), "o", "p", NOW).coins == 9  # 9.999


def test_order_reward_accepts_two_hundred_items() -> None:
    reward = order_reward(RULES, items(*[100] * 200), "o", "p", NOW)
    assert reward.coins == 200 * 10


@pytest.mark.parametrize(
    ("order_items", "order_id"),
    [
        ([], "o1"),
        (items(*[100] * 201), "o1"),
        ([Item("a", 5000), Item("a", 5000)], "o1"),
        ([Item("", 5000)], "o1"),
        ([Item("a b", 5000)], "o1"),
        ([Item("x" * 129, 5000)], "o1"),
        ([Item("a", -1)], "o1"),
        ([Item("a", FEN_MAX + 1)], "o1"),
        ([Item("a", True)], "o1"),
        ([Item("a", 50.0)], "o1"),  # type: ignore[arg-type]
        (items(5000), ""),
        (items(5000), "o 1"),
        (items(5000), "订单"),
    ],
)
def test_order_reward_bad_order_is_refused(order_items: list[Item], order_id: str) -> None:
    assert code_of(lambda: order_reward(RULES, order_items, order_id, "p", NOW)) == "BAD_ORDER"


def test_order_reward_needs_a_player() -> None:
    with pytest.raises(ValueError, match="player_id"):
        order_reward(RULES, items(5000), "o1", "", NOW)


# --- review rewards: 10-20 coins by order amount -------------------------------------------------


@pytest.mark.parametrize(
    ("paid_fen", "coins"),
    [(0, 10), (1, 10), (9999, 10), (10_000, 20), (10_001, 20), (FEN_MAX, 20)],
)
def test_review_reward_tiers_at_their_edges(paid_fen: int, coins: int) -> None:
    assert review_reward(RULES, "r1", paid_fen, NOW) == Credit(
        "review:r1", "review", coins, date(2027, 6, 30)
    )


@pytest.mark.parametrize(
    ("review_id", "paid_fen"), [("r1", -1), ("r1", FEN_MAX + 1), ("r1", True), ("", 100)]
)
def test_review_reward_bad_input_is_refused(review_id: str, paid_fen: int) -> None:
    assert code_of(lambda: review_reward(RULES, review_id, paid_fen, NOW)) == "BAD_REVIEW"


# --- partner exchange: China Mobile 1:1.5, 100 points per exchange --------------------------------


@pytest.mark.parametrize(("points", "coins"), [(1, 1), (2, 3), (3, 4), (99, 148), (100, 150)])
def test_exchange_ratio_floors_odd_points(points: int, coins: int) -> None:
    assert exchange(RULES, "china_mobile", points, "t1", NOW) == Credit(
        "exchange:china_mobile:t1", "exchange", coins, date(2027, 6, 30)
    )


@pytest.mark.parametrize(
    ("partner", "points", "txn_id", "code"),
    [
        ("china_mobile", 101, "t1", "POINTS_OVER_LIMIT"),
        ("china_mobile", 10**9, "t1", "POINTS_OVER_LIMIT"),
        ("china_mobile", 0, "t1", "BAD_POINTS"),
        ("china_mobile", -1, "t1", "BAD_POINTS"),
        ("china_mobile", True, "t1", "BAD_POINTS"),
        ("china_mobile", 1.5, "t1", "BAD_POINTS"),
        ("china_mobile", 10, "", "BAD_TXN"),
        ("china_mobile", 0, "t 1", "BAD_TXN"),  # the txn id before the points
        ("unicom", 10, "t1", "UNKNOWN_PARTNER"),
        ("unicom", 101, "", "UNKNOWN_PARTNER"),  # the partner first
        ("", 10, "t1", "UNKNOWN_PARTNER"),
    ],
)
def test_exchange_refusal_table(partner: str, points: int, txn_id: str, code: str) -> None:
    assert code_of(lambda: exchange(RULES, partner, points, txn_id, NOW)) == code


def test_exchange_ratio_below_one_refuses_points_worth_no_coin() -> None:
    half = PartnerCatalog((PartnerRules("half", 1, 2, 100),))
    rules = dataclasses.replace(RULES, exchange=ExchangeRules(half))
    assert code_of(lambda: exchange(rules, "half", 1, "t", NOW)) == "POINTS_TOO_FEW"
    assert exchange(rules, "half", 3, "t", NOW).amount == 1


def test_exchange_with_no_partners_refuses_all() -> None:
    rules = dataclasses.replace(RULES, exchange=ExchangeRules(PartnerCatalog(())))
    assert code_of(lambda: exchange(rules, "china_mobile", 1, "t", NOW)) == "UNKNOWN_PARTNER"


# --- refunds: proportional clawback, rounded up --------------------------------------------------

REWARDED = [("a", 9999, 999), ("b", 1_000_000, 1000), ("c", 4000, 400), ("free", 0, 0)]


@pytest.mark.parametrize(
    ("refunds", "claw"),
    [
        ([], 0),
        ([("a", 1)], 1),  # 1 fen of an item that earned coins takes a coin back (ceil)
        ([("a", 0)], 0),
        ([("a", 5000)], 500),  # 499.55 -> 500
        ([("a", 9998)], 999),  # 998.9 -> 999: capped at the item's coins
        ([("a", 9999)], 999),  # a full refund takes all
        ([("a", 1), ("a", 1)], 1),  # refunds of one item add up: ceil(999 * 2 / 9999)
        ([("a", 5000), ("a", 4999)], 999),
        ([("b", 1)], 1),
        ([("b", 500_000)], 500),
        ([("b", 1_000_000)], 1000),
        ([("c", 1)], 1),
        ([("free", 0)], 0),
        ([("a", 9999), ("b", 1_000_000), ("c", 4000), ("free", 0)], 2399),
    ],
)
def test_refund_clawback_is_proportional_and_rounds_up(
    refunds: list[tuple[str, int]], claw: int
) -> None:
    assert refund_clawback(REWARDED, refunds) == claw


@pytest.mark.parametrize(
    "refunds",
    [
        [("zz", 1)],  # not in the order
        [("a", 10_000)],  # more than paid
        [("a", 5000), ("a", 5000)],  # together more than paid
        [("free", 1)],
        [("a", -1)],
        [("a", True)],
        [("a", 1.0)],
    ],
)
def test_refund_clawback_bad_refund_is_refused(refunds: list[tuple[str, int]]) -> None:
    assert code_of(lambda: refund_clawback(REWARDED, refunds)) == "BAD_REFUND"


@pytest.mark.parametrize(
    "reward_items",
    [[("a", 100, 1), ("a", 100, 1)], [("a", -1, 0)], [("a", 100, -1)], [("a", FEN_MAX + 1, 0)]],
)
def test_refund_clawback_bad_reward_record_is_a_programming_error(
    reward_items: list[tuple[str, int, int]],
) -> None:
    with pytest.raises(ValueError, match="reward item"):
        refund_clawback(reward_items, [])


def test_clawback_step_takes_only_what_the_new_refund_adds() -> None:
    assert clawback_step(REWARDED, [], [("a", 1)]) == 1
    assert clawback_step(REWARDED, [("a", 1)], [("a", 1)]) == 0  # still ceil(0.19...) = 1
    assert clawback_step(REWARDED, [("a", 1), ("a", 1)], [("a", 9997)]) == 998
    assert code_of(lambda: clawback_step(REWARDED, [("a", 9999)], [("a", 1)])) == "BAD_REFUND"


@pytest.mark.parametrize(
    ("claw_coins", "available_coins", "split"),
    [
        (100, 300, (100, 0)),
        (100, 100, (100, 0)),
        (100, 40, (40, 60)),  # the coins were spent: the rest is debt
        (100, 0, (0, 100)),
        (0, 5, (0, 0)),
    ],
)
def test_clawback_split_never_goes_negative(
    claw_coins: int, available_coins: int, split: tuple[int, int]
) -> None:
    assert clawback_split(claw_coins, available_coins) == split


@pytest.mark.parametrize(
    ("debt", "credit_coins", "repaid"), [(0, 10, 0), (60, 10, 10), (60, 60, 60), (60, 100, 60)]
)
def test_debt_repayment_comes_first_from_new_credits(
    debt: int, credit_coins: int, repaid: int
) -> None:
    assert debt_repayment(debt, credit_coins) == repaid


@pytest.mark.parametrize(
    "call",
    [
        lambda: clawback_split(-1, 5),
        lambda: clawback_split(5, -1),
        lambda: debt_repayment(-1, 5),
        lambda: debt_repayment(5, -1),
        lambda: coins_value_fen(RULES, -1),
    ],
)
def test_negative_coins_are_a_programming_error(call: Callable[[], object]) -> None:
    with pytest.raises(ValueError, match="must be >= 0"):
        call()


@st.composite
def order_and_refunds(
    draw: st.DrawFn,
) -> tuple[list[tuple[str, int, int]], list[tuple[str, int]], list[tuple[str, int]]]:
    """An order rewarded by the default rules, a sequence of partial refunds whose sum per
    item stays within what was paid, and the remaining refunds that complete it."""
    paid = draw(st.lists(st.integers(0, 2_000_000), min_size=1, max_size=6))
    reward = order_reward(RULES, items(*paid), "o", "p", NOW)
    reward_items = [
        (item_id, fen, coins) for (item_id, coins), fen in zip(reward.per_item, paid, strict=True)
    ]
    left = dict(enumerate(paid))
    partial: list[tuple[str, int]] = []
    for _ in range(draw(st.integers(0, 12))):
        index = draw(st.sampled_from(sorted(left)))
        fen = draw(st.integers(0, left[index]))
        left[index] -= fen
        partial.append((f"i{index}", fen))
    rest = [(f"i{index}", fen) for index, fen in left.items()]
    return reward_items, partial, rest


@given(order_and_refunds())
def test_refund_clawback_never_exceeds_the_reward_and_a_full_refund_takes_all(
    case: tuple[list[tuple[str, int, int]], list[tuple[str, int]], list[tuple[str, int]]],
) -> None:
    reward_items, partial, rest = case
    coins = sum(item_coins for _, _, item_coins in reward_items)
    steps = [
        clawback_step(reward_items, partial[:n], partial[n : n + 1]) for n in range(len(partial))
    ]
    assert all(step >= 0 for step in steps)
    assert sum(steps) == refund_clawback(reward_items, partial) <= coins
    assert refund_clawback(reward_items, partial + rest) == coins
    assert sum(steps) + clawback_step(reward_items, partial, rest) == coins


# --- expiry: warnings and expired batches in the rules' time zone -----------------------------

BATCHES = {
    date(2025, 12, 31): 7,
    date(2026, 6, 30): 100,
    date(2026, 7, 7): 0,  # spent: never reported
    date(2026, 12, 31): 50,
}


@pytest.mark.parametrize(
    ("now_ms", "expired"),
    [
        (at(2026, 6, 30, 23, 59, 59), [(date(2025, 12, 31), 7)]),
        (at(2026, 7, 1, 0, 0, 0), [(date(2025, 12, 31), 7), (date(2026, 6, 30), 100)]),
        (at(2025, 12, 31, 23, 59, 59), []),
        (
            at(2027, 1, 1, 0, 0, 0),
            [(date(2025, 12, 31), 7), (date(2026, 6, 30), 100), (date(2026, 12, 31), 50)],
        ),
    ],
)
def test_expired_batches_at_midnight_in_shanghai(
    now_ms: int, expired: list[tuple[date, int]]
) -> None:
    assert expired_batches(BATCHES, RULES, now_ms) == expired


@pytest.mark.parametrize(
    ("now_ms", "warn_days", "expiring"),
    [
        (at(2026, 6, 30, 23, 59, 59), 7, [(date(2026, 6, 30), 100, 0)]),
        (at(2026, 7, 1, 0, 0, 0), 7, []),  # expired, no longer expiring; 7 July holds 0
        (at(2026, 6, 23, 0, 0, 0), 7, [(date(2026, 6, 30), 100, 7)]),
        (at(2026, 6, 22, 23, 59, 59), 7, []),  # 8 days left
        (at(2026, 6, 30, 0, 0, 0), 0, [(date(2026, 6, 30), 100, 0)]),
        (at(2026, 6, 29, 23, 59, 59), 0, []),
        (at(2026, 12, 24), 7, [(date(2026, 12, 31), 50, 7)]),
        (at(2026, 5, 1), 60, [(date(2026, 6, 30), 100, 60)]),
    ],
)
def test_expiring_batches_warn_days_edges(
    now_ms: int, warn_days: int, expiring: list[tuple[date, int, int]]
) -> None:
    rules = dataclasses.replace(
        RULES, expiry=dataclasses.replace(RULES.expiry, warn_days=warn_days)
    )
    assert expiring_batches(BATCHES, rules, now_ms) == expiring


def test_expiry_batches_with_negative_coins_are_a_programming_error() -> None:
    with pytest.raises(ValueError, match="batch coins"):
        expired_batches({date(2026, 6, 30): -1}, RULES, NOW)


def test_days_until_counts_business_days_in_the_time_zone() -> None:
    # 16:00 UTC on 29 June is midnight of 30 June in Shanghai.
    assert days_until(date(2026, 6, 30), at(2026, 6, 29, 23, 59, 59), SHANGHAI) == 1
    assert days_until(date(2026, 6, 30), at(2026, 6, 30, 0, 0, 0), SHANGHAI) == 0
    assert days_until(date(2026, 6, 30), at(2026, 7, 1, 0, 0, 0), SHANGHAI) == -1


@pytest.mark.parametrize(
    ("claw", "earned", "taken_back", "net"),
    [
        (500, 1000, 0, 500),  # no reversal: the refund's step
        (1000, 1000, 1000, 0),  # reversed in full: nothing more
        (500, 1000, 700, 300),  # the rest only
        (0, 1000, 0, 0),
    ],
)
def test_refund_net_takes_an_order_back_once(
    claw: int, earned: int, taken_back: int, net: int
) -> None:
    assert refund_net(claw, earned, taken_back) == net
