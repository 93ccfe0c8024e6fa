"""The coin mall's pure rules and its rules-file sections: defaults, every problem at once,
limits and windows at their edges, and the counters an order moves."""

from __future__ import annotations

from datetime import datetime
from importlib.resources import files

import pytest

from game_rules import RulesError, RuleViolation, parse_rules
from game_rules.mall import (
    DELIVERED,
    PAID,
    PENDING_PAYMENT,
    MallOrder,
    MallState,
    check_buy,
    closed_unplaced,
    item_view,
    limit_left,
    new_order,
    order_id_for,
    placed,
    settled,
    unplaced,
    window_ms,
)
from game_rules.rulefile.mall_sections import MALL_ITEMS_DEFAULT, MallRules
from tests.conftest import SHANGHAI, shanghai_ms

DEFAULT_TEXT = files("game_rules").joinpath("default.toml").read_text(encoding="utf-8")
RULES = parse_rules(DEFAULT_TEXT)
MALL = RULES.mall
NOW = shanghai_ms("2026-11-23T09:00:00")
RICH = 10**9


def buy(state: MallState, item: str, now_ms: int = NOW, level: int = 0, coins: int = RICH) -> str:
    try:
        check_buy(state, MALL, SHANGHAI, item, now_ms, level, coins)
    except RuleViolation as exc:
        return exc.code
    return "ok"


def place(state: MallState, item: str, n: int, now_ms: int = NOW) -> MallState:
    order = new_order(MALL.items[item], f"o{n}", MALL, SHANGHAI, now_ms)
    return placed(state, MALL, order)


def test_default_file_matches_the_dataclass_defaults() -> None:
    assert MallRules() == MALL
    assert MALL.items == MALL_ITEMS_DEFAULT
    lancome = MALL.items["lancome_sample"]
    assert (lancome.coins, lancome.cash_fen, lancome.per_player_max) == (3000, 990, 1)  # 004
    assert MALL.payment_timeout_ms == RULES.checkout.hold_timeout_ms


def test_a_bad_mall_reports_every_problem() -> None:
    text = (
        DEFAULT_TEXT.split("[mall]")[0]
        + """
[mall]
orders_per_day_max = 0
payment_timeout_s = "soon"
colour = "red"

[mall.items.bad_one]
kind = "car"
coins = 0
stock = -1
starts_at = "2026-11-11T00:00:00"
ends_at = "2026-11-10 00:00"

[mall.items.Bad]
kind = "coupon"
title = "x"
coins = 1
stock = 1
"""
    )
    with pytest.raises(RulesError) as caught:
        parse_rules(text)
    problems = "\n".join(caught.value.problems)
    for expected in (
        "mall.orders_per_day_max: must be an integer in 1..1000, got 0",
        "mall.payment_timeout_s: must be an integer",
        "mall.colour: unknown key",
        "mall.items.bad_one.kind: must be one of 'coupon', 'goods', 'right'",
        "mall.items.bad_one.title: required, missing",
        "mall.items.bad_one.coins: must be an integer in 1..",
        "mall.items.bad_one.stock: must be an integer in 0..",
        'mall.items.bad_one.ends_at: must be a local time "YYYY-MM-DDTHH:MM:SS"',
        "mall.items.Bad: item names must be",
    ):
        assert expected in problems, problems


def test_a_window_that_ends_before_it_starts_is_refused() -> None:
    text = (
        DEFAULT_TEXT.split("[mall]")[0]
        + """
[mall.items.flash]
kind = "goods"
title = "x"
coins = 1
stock = 1
starts_at = "2026-11-11T00:00:00"
ends_at = "2026-11-11T00:00:00"
"""
    )
    with pytest.raises(RulesError, match=r"mall\.items\.flash\.ends_at: must be after starts_at"):
        parse_rules(text)


def test_window_in_the_rules_time_zone_edges() -> None:
    opens, closes = window_ms(MALL.items["double_eleven_flash"], SHANGHAI)
    assert opens == shanghai_ms("2026-11-11T00:00:00")
    assert closes == shanghai_ms("2026-11-12T00:00:00")
    state = MallState()
    assert buy(state, "double_eleven_flash", opens - 1) == "NOT_ON_SALE"
    assert buy(state, "double_eleven_flash", opens) == "ok"
    assert buy(state, "double_eleven_flash", closes - 1) == "ok"
    assert buy(state, "double_eleven_flash", closes) == "SALE_ENDED"
    assert window_ms(MALL.items["coupon_five"], SHANGHAI) == (0, 0)


@pytest.mark.parametrize(("level", "code"), [(0, "LEVEL_TOO_LOW"), (1, "LEVEL_TOO_LOW"), (2, "ok")])
def test_level_gate_edges(level: int, code: str) -> None:
    assert buy(MallState(), "free_shipping", level=level) == code


def test_coins_needed_edge() -> None:
    assert buy(MallState(), "coupon_five", coins=499) == "INSUFFICIENT_FUNDS"
    assert buy(MallState(), "coupon_five", coins=500) == "ok"
    assert buy(MallState(), "no_such_item") == "UNKNOWN_ITEM"


def test_per_day_limit_resets_on_the_next_business_day() -> None:
    state = place(MallState(), "coupon_five", 1)
    assert buy(state, "coupon_five") == "LIMIT_REACHED"
    assert buy(state, "coupon_five", shanghai_ms("2026-11-23T23:59:59")) == "LIMIT_REACHED"
    assert buy(state, "coupon_five", shanghai_ms("2026-11-24T00:00:00")) == "ok"


def test_per_player_limit_ever_and_a_cancel_gives_it_back() -> None:
    order = new_order(MALL.items["lancome_sample"], "o1", MALL, SHANGHAI, NOW)
    assert (order.state, order.expires_ms) == (PENDING_PAYMENT, NOW + 900_000)
    state = placed(MallState(), MALL, order)
    assert state.pending == {"o1": ("lancome_sample", NOW + 900_000)}
    later = shanghai_ms("2027-01-01T12:00:00")
    assert buy(state, "lancome_sample", later) == "LIMIT_REACHED"
    back = unplaced(state.on_day(20270101), order)
    assert back.pending == {} and limit_left(MALL.items["lancome_sample"], back) == 1
    assert back.today == {} and back.day_orders == 0  # the order's day was another day
    assert settled(state, "o1").pending == {}


def test_orders_per_day_and_pending_payments_max() -> None:
    state = MallState()
    for n in range(MALL.orders_per_day_max):
        state = placed(
            state, MALL, new_order(MALL.items["coupon_five"], f"o{n}", MALL, SHANGHAI, NOW)
        )
    assert state.day_orders == 20 and len(state.recent) == MALL.recent_orders_max
    assert buy(state, "free_shipping", level=2) == "DAILY_ORDERS_MAX"
    pending = MallState(pending={f"p{n}": ("lancome_sample", NOW) for n in range(3)})
    assert buy(pending, "lancome_sample") == "PENDING_PAYMENTS_MAX"
    assert buy(pending, "coupon_five") == "ok"  # coins only: nothing to await


def test_wire_round_trips_and_order_ids() -> None:
    state = place(place(MallState(), "coupon_five", 1), "lancome_sample", 2)
    assert MallState.from_wire(state.to_wire()) == state
    order = new_order(MALL.items["coupon_five"], "o1", MALL, SHANGHAI, NOW)
    assert order.state == PAID and MallOrder.from_wire(order.to_wire()) == order
    assert order.moved(DELIVERED, NOW + 1).changed_ms == NOW + 1
    closed = closed_unplaced("o2", "coupon_five", "INSUFFICIENT_FUNDS", SHANGHAI, NOW)
    assert closed.never_placed and closed.coins == 0
    assert order_id_for("ann", "s:1") == order_id_for("ann", "s:1")
    assert order_id_for("ann", "s:1") != order_id_for("ann", "i:1")
    assert order_id_for("an", "n:s:1") != order_id_for("ann", "s:1")


def test_item_view() -> None:
    view = item_view(MALL.items["free_shipping"], MallState(), SHANGHAI, NOW, 0, 7)
    assert view == {
        "item": "free_shipping",
        "kind": "right",
        "title": "Free shipping for a month",
        "coins": 800,
        "cash_fen": 0,
        "stock_left": 7,
        "limit_left": 1,
        "locked": True,
        "level_min": 2,
        "starts_ms": 0,
        "ends_ms": 0,
        "on_sale": True,
    }
    flash = item_view(MALL.items["double_eleven_flash"], MallState(), SHANGHAI, NOW, 0, -1)
    assert (flash["on_sale"], flash["stock_left"]) == (False, 0)
    assert datetime(2026, 11, 11) == MALL.items["double_eleven_flash"].starts_at
