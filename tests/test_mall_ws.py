"""The coin mall end to end: a real server, real sockets, the payment endpoint, the repair
of stock by touch and by sweep, idempotent replays and limits at their edges."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date
from importlib.resources import files
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from server.client import ManorClient, ManorError
from server.clock import FrozenClock
from server.ledger.commit import HOLDS_PENDING_MAX, Commit, HoldOp, apply
from server.ledger.ledger import Transfer
from server.ledger.verify import verify
from server.ops.mall_repair import sweep
from server.store.embedded import EmbeddedStore
from server.store.keys import PlayerKeys
from server.store.stock import StockKeys
from tests.conftest import calls, shanghai_ms
from tests.live import Live, serve

KEY = "platform-key-0123456789-abcdefghijklmnop"
ADMIN = "admin-key-0123456789-abcdefghijklmnopqrs"
BATCH = date(2027, 12, 31)
MALL = """
[mall]
orders_per_day_max = 3
pending_payments_max = 2
reserve_timeout_s = 30
payment_timeout_s = 900

[mall.items.lancome]
kind = "goods"
title = "Lancome sample set"
coins = 3000
cash_fen = 990
stock = 2
per_player_max = 1

[mall.items.coupon]
kind = "coupon"
title = "5 yuan off"
coins = 500
stock = 100
per_day_max = 2

[mall.items.vip_right]
kind = "right"
title = "Members only"
coins = 100
stock = 10
level_min = 2

[mall.items.flash]
kind = "goods"
title = "Flash sale"
coins = 1000
stock = 1
per_player_max = 1
starts_at = "2026-11-23T10:00:00"
ends_at = "2026-11-23T11:00:00"
"""


def rules_with(mall: str) -> str:
    """The shipped rules with their [mall] tables replaced by `mall`."""
    kept, skipping = [], False
    for line in (files("game_rules") / "default.toml").read_text("utf-8").splitlines():
        if line.startswith("["):
            skipping = line.startswith(("[mall]", "[mall."))
        if not skipping:
            kept.append(line)
    return "\n".join(kept) + "\n" + mall


@pytest.fixture
async def mall(
    redis: Redis, redis_server: EmbeddedStore, tmp_path: Path, clock: FrozenClock
) -> AsyncIterator[tuple[Live, httpx.AsyncClient]]:
    rules = tmp_path / "rules.toml"
    rules.write_text(rules_with(MALL))
    async with serve(
        redis_server.url, tmp_path, clock, platform_key=KEY, admin_key=ADMIN, rules=str(rules)
    ) as live:
        headers = {"Authorization": f"Bearer {KEY}"}
        async with httpx.AsyncClient(base_url=live.http, headers=headers) as http:
            yield live, http
    report = await verify(redis)
    assert report.ok, report.problems  # after every scenario the books balance


async def grant(live: Live, player: str, coins: int) -> None:
    transfer = Transfer(f"grant:{player}:{coins}", "c", coins, "mint:grant", BATCH)
    done = await apply(
        live.manor.store,
        PlayerKeys(player),
        Commit(transfers=[transfer]),
        live.manor.clock.now_ms(),
    )
    assert done.status == "ok"


async def pay(
    http: httpx.AsyncClient,
    player: str,
    order_id: str,
    result: str,
    status: int = 200,
    payment_id: str = "pay-1",
) -> Any:
    response = await http.post(
        "/v1/platform/mall/payment",
        json={"player": player, "order_id": order_id, "payment_id": payment_id, "result": result},
    )
    assert response.status_code == status, response.text
    return response.json()


def item(view: dict[str, Any], name: str) -> dict[str, Any]:
    return next(i for i in view["items"] if i["item"] == name)


async def code_of(client: ManorClient, op: str, request_id: str | None = None, **args: Any) -> str:
    with pytest.raises(ManorError) as caught:
        await client.call(op, request_id=request_id, **args)
    return caught.value.code


async def test_coins_only_buy_is_delivered_and_replays(
    mall: tuple[Live, httpx.AsyncClient],
) -> None:
    live, _ = mall
    await grant(live, "ana", 2000)
    client = await live.connect("ana")
    bought = await client.call("mall_buy", request_id="buy-1", item="coupon")
    assert bought["order"]["state"] == "delivered" and bought["order"]["coins"] == 500
    # The reply is the buyer's balance (its debit: entry 2); no `balance` push to this socket.
    assert (bought["already"], bought["balance"], bought["entry_seq"]) == (False, 1500, 2)
    pushes = [await client.next_push() for _ in range(2)]
    kinds = [(p["push"], p["data"].get("state")) for p in pushes]
    assert kinds == [("mall_order", "paid"), ("mall_order", "delivered")]
    again = await client.call("mall_buy", request_id="buy-1", item="coupon")
    assert again["already"] and again["order"] == bought["order"] and again["balance"] == 1500
    view = await client.call("mall")
    coupon = item(view, "coupon")
    assert (coupon["stock_left"], coupon["limit_left"], coupon["locked"]) == (99, 1, False)
    assert [o["order_id"] for o in view["orders"]] == [bought["order"]["order_id"]]
    await client.close()


async def test_a_buy_from_the_players_only_socket_publishes_no_balance_push(
    mall: tuple[Live, httpx.AsyncClient], redis: Redis
) -> None:
    """The buy's reply carries the balance; with no other socket of the player open, its
    commit publishes its `mall_order` pushes but no `balance` push (asked_by_socket)."""
    live, _ = mall
    await grant(live, "ida", 2000)
    client = await live.connect("ida")
    await client.call("state")
    before = await calls(redis, "publish") + await calls(redis, "spublish")
    bought = await client.call("mall_buy", item="coupon")
    assert (bought["balance"], bought["order"]["state"]) == (1500, "delivered")
    pushes = [await client.next_push() for _ in range(2)]
    assert [p["push"] for p in pushes] == ["mall_order", "mall_order"]
    assert await calls(redis, "publish") + await calls(redis, "spublish") == before + 2
    await client.close()


async def test_limits_at_their_edges(
    mall: tuple[Live, httpx.AsyncClient], clock: FrozenClock
) -> None:
    live, _ = mall
    await grant(live, "bo", 10_000)
    client = await live.connect("bo")
    await client.call("mall_buy", item="coupon")
    await client.call("mall_buy", item="coupon")  # per_day_max = 2: the second is the last
    assert await code_of(client, "mall_buy", item="coupon") == "LIMIT_REACHED"
    assert item(await client.call("mall"), "coupon")["limit_left"] == 0
    # Level-only: a level-0 player sees it locked and cannot buy it.
    assert item(await client.call("mall"), "vip_right")["locked"] is True
    assert await code_of(client, "mall_buy", item="vip_right") == "LEVEL_TOO_LOW"
    assert await code_of(client, "mall_buy", item="nothing") == "UNKNOWN_ITEM"
    # The sale window: 10:00 inclusive to 11:00 exclusive, Asia/Shanghai (the clock is 09:00).
    assert await code_of(client, "mall_buy", item="flash") == "NOT_ON_SALE"
    clock.advance(shanghai_ms("2026-11-23T10:00:00") - clock.now_ms())
    await client.call("mall_buy", item="flash")  # the third order of the day
    assert await code_of(client, "mall_buy", item="lancome") == "DAILY_ORDERS_MAX"
    clock.advance(shanghai_ms("2026-11-23T11:00:00") - clock.now_ms())
    await grant(live, "cy", 5000)
    other = await live.connect("cy")
    assert await code_of(other, "mall_buy", item="flash") == "SALE_ENDED"
    # A new business day: the daily counts start again.
    clock.advance(shanghai_ms("2026-11-24T00:00:00") - clock.now_ms())
    assert item(await client.call("mall"), "coupon")["limit_left"] == 2
    await client.call("mall_buy", item="coupon")
    await client.close()
    await other.close()


async def test_flash_stock_of_one_and_per_player_limit(
    mall: tuple[Live, httpx.AsyncClient], clock: FrozenClock
) -> None:
    live, _ = mall
    clock.advance(shanghai_ms("2026-11-23T10:00:00") - clock.now_ms())
    for name in ("di", "ed"):
        await grant(live, name, 5000)
    di, ed = await live.connect("di"), await live.connect("ed")
    await di.call("mall_buy", item="flash")
    assert await code_of(ed, "mall_buy", item="flash") == "SOLD_OUT"
    assert await code_of(di, "mall_buy", item="flash") == "LIMIT_REACHED"
    assert item(await ed.call("mall"), "flash")["stock_left"] == 0
    # Insufficient coins: refused before any stock is taken.
    await grant(live, "fa", 100)
    fa = await live.connect("fa")
    assert await code_of(fa, "mall_buy", item="coupon") == "INSUFFICIENT_FUNDS"
    assert item(await fa.call("mall"), "coupon")["stock_left"] == 100
    for client in (di, ed, fa):
        await client.close()


async def test_cash_payment_failing_after_the_hold_gives_both_back(
    mall: tuple[Live, httpx.AsyncClient], redis: Redis
) -> None:
    """The 004 case: 3 000 coins + 9.90 yuan; the payment fails; nothing is lost."""
    live, http = mall
    await grant(live, "gu", 3500)
    client = await live.connect("gu")
    bought = await client.call("mall_buy", request_id="l-1", item="lancome")
    order = bought["order"]
    assert (order["state"], order["coins"], order["cash_fen"]) == ("pending_payment", 3000, 990)
    view = await client.call("mall")
    assert (view["balance"], view["available"]) == (3500, 500)  # held, not taken
    assert item(view, "lancome")["stock_left"] == 1
    failed = await pay(http, "gu", order["order_id"], "failed")
    assert (failed["state"], failed["already"]) == ("cancelled", False)
    assert (await pay(http, "gu", order["order_id"], "failed"))["already"] is True
    view = await client.call("mall")
    assert (view["balance"], view["available"]) == (3500, 3500)
    assert item(view, "lancome")["stock_left"] == 2 and item(view, "lancome")["limit_left"] == 1
    assert (await pay(http, "gu", order["order_id"], "paid", 409))["error"]["code"] == (
        "ORDER_CANCELLED"
    )
    # A new request pays: coins posted to sink:mall, the unit sold, the order delivered.
    second = (await client.call("mall_buy", request_id="l-2", item="lancome"))["order"]
    paid = await pay(http, "gu", second["order_id"], "paid", payment_id="pay-2")
    assert (paid["state"], paid["already"]) == ("delivered", False)
    again = await pay(http, "gu", second["order_id"], "paid", payment_id="pay-2")
    assert (again["state"], again["already"]) == ("delivered", True)
    mismatch = await pay(http, "gu", second["order_id"], "paid", 409, payment_id="pay-3")
    assert mismatch["error"]["code"] == "PAYMENT_MISMATCH"
    assert (await pay(http, "gu", second["order_id"], "failed", 409))["error"]["code"] == (
        "ORDER_PAID"
    )
    view = await client.call("mall")
    assert (view["balance"], view["available"]) == (500, 500)
    assert item(view, "lancome")["stock_left"] == 1 and item(view, "lancome")["limit_left"] == 0
    assert int(await redis.hget(StockKeys("lancome").stock, "sold")) == 1
    unknown = await pay(http, "gu", "mo-unknown", "paid", 404)
    assert unknown["error"]["code"] == "ORDER_NOT_FOUND"
    await client.close()


async def test_a_cash_order_past_the_pending_holds_limit_is_closed_unplaced(
    mall: tuple[Live, httpx.AsyncClient], redis: Redis
) -> None:
    """A player at HOLDS_PENDING_MAX pending holds (the shop's checkouts): a mall order with a
    cash part cannot hold its coins, so it is closed unplaced with HOLDS_FULL, its unit
    released and nothing held; its request id answers the same; a hold freed makes room."""
    live, _ = mall
    await grant(live, "hy", 5000)
    keys, now_ms = PlayerKeys("hy"), live.manor.clock.now_ms()
    for n in range(HOLDS_PENDING_MAX):
        hold = HoldOp("reserve", f"checkout-{n}", 1, now_ms + 3_600_000)
        assert (await apply(live.manor.store, keys, Commit(holds=[hold]), now_ms)).written
    client = await live.connect("hy")
    assert await code_of(client, "mall_buy", "l-1", item="lancome") == "HOLDS_FULL"
    assert await code_of(client, "mall_buy", "l-1", item="lancome") == "HOLDS_FULL"
    view = await client.call("mall")
    assert (view["balance"], view["available"]) == (5000, 5000 - HOLDS_PENDING_MAX)
    assert item(view, "lancome")["stock_left"] == 2 and item(view, "lancome")["limit_left"] == 1
    void = HoldOp("void", "checkout-0")
    assert (await apply(live.manor.store, keys, Commit(holds=[void]), now_ms)).written
    order = (await client.call("mall_buy", request_id="l-2", item="lancome"))["order"]
    assert (order["state"], order["coins"]) == ("pending_payment", 3000)
    assert int(await redis.hget(StockKeys("lancome").stock, "sold") or 0) == 0
    await client.close()


async def test_timeout_without_payment_comes_back_by_touch(
    mall: tuple[Live, httpx.AsyncClient], clock: FrozenClock
) -> None:
    live, http = mall
    await grant(live, "hu", 3000)
    client = await live.connect("hu")
    order = (await client.call("mall_buy", item="lancome"))["order"]
    clock.advance(900_000)  # the deadline: no timer fires (jobs are off in these tests)
    view = await client.call("mall")  # the player's touch
    assert (view["balance"], view["available"]) == (3000, 3000)
    assert item(view, "lancome")["stock_left"] == 2
    assert view["orders"][0]["state"] == "expired"
    late = await pay(http, "hu", order["order_id"], "paid", 409)
    assert late["error"]["code"] == "ORDER_EXPIRED"
    await client.close()


async def test_timeout_without_payment_comes_back_by_stock_touch_and_sweep(
    mall: tuple[Live, httpx.AsyncClient], clock: FrozenClock, redis: Redis
) -> None:
    live, _ = mall
    for name in ("ivy", "jo", "ka"):
        await grant(live, name, 3000)
    ivy, jo, ka = [await live.connect(n) for n in ("ivy", "jo", "ka")]
    await ivy.call("mall_buy", item="lancome")
    await jo.call("mall_buy", item="lancome")
    assert await code_of(ka, "mall_buy", item="lancome") == "SOLD_OUT"
    clock.advance(900_000)
    # Another player's buy touches the stock key: the overdue reservations it is handed are
    # repaired (the orders expire, the holds are voided) and the unit is sold to ka.
    assert (await ka.call("mall_buy", item="lancome"))["order"]["state"] == "pending_payment"
    states = {(await c.call("mall"))["orders"][0]["state"] for c in (ivy, jo)}
    assert states == {"expired"}
    # ka's order lapses too; nobody touches anything: the sweep job repairs it.
    clock.advance(900_000)
    assert await sweep(live.manor.dispatcher.services) == 1
    assert int(await redis.hget(StockKeys("lancome").stock, "reserved")) == 0
    view = await ka.call("mall")
    assert (view["available"], view["orders"][0]["state"]) == (3000, "expired")
    for client in (ivy, jo, ka):
        await client.close()


async def test_crash_between_reservation_and_commit_is_repaired(
    mall: tuple[Live, httpx.AsyncClient], clock: FrozenClock, redis: Redis
) -> None:
    """A process died after taking the unit and before the player's commit: the sweep
    closes the order (so a late commit cannot happen) and puts the unit back on sale."""
    from server.store import stock

    live, _ = mall
    services = live.manor.dispatcher.services
    now_ms = clock.now_ms()
    got = await stock.reserve(
        services.store, "coupon", "mo-crashed", "lu", now_ms + 30_000, 100, 0, (0, 0), now_ms
    )
    assert (got.status, got.left) == ("ok", 99)
    assert await sweep(services) == 0  # not overdue yet
    clock.advance(30_000)
    assert await sweep(services) == 1
    assert int(await redis.hget(StockKeys("coupon").stock, "reserved")) == 0
    again = await stock.reserve(
        services.store, "coupon", "mo-crashed", "lu", now_ms + 60_000, 100, 0, (0, 0), now_ms
    )
    assert again.status == "done"  # a late retry of the same order takes no second unit


async def test_retry_after_a_crash_before_the_commit_finishes_the_order(
    mall: tuple[Live, httpx.AsyncClient], clock: FrozenClock, redis: Redis
) -> None:
    """The unit was reserved, then the process died: the retry (same request id) finds its
    reservation, commits and confirms, taking no second unit."""
    from game_rules.mall import order_id_for
    from server.store import stock

    live, _ = mall
    await grant(live, "mo", 1000)
    now_ms = clock.now_ms()
    order_id = order_id_for("mo", "s:retry-1")
    services = live.manor.dispatcher.services
    got = await stock.reserve(
        services.store, "coupon", order_id, "mo", now_ms + 30_000, 100, 0, (0, 0), now_ms
    )
    assert got.status == "ok"
    client = await live.connect("mo")
    done = await client.call("mall_buy", request_id="retry-1", item="coupon")
    assert (done["order"]["order_id"], done["order"]["state"]) == (order_id, "delivered")
    figures = await redis.hgetall(StockKeys("coupon").stock)
    assert (figures[b"sold"], figures[b"reserved"]) == (b"1", b"0")
    await client.close()


async def test_crash_after_the_commit_is_confirmed_by_the_sweep(
    mall: tuple[Live, httpx.AsyncClient],
    clock: FrozenClock,
    redis: Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Coins taken, then the process lost the store before confirming the unit: the sweep
    confirms it (the record says paid) and delivers, never releasing a unit that was paid."""
    from redis.exceptions import ConnectionError as RedisConnectionError

    from server.ops import mall_repair

    live, _ = mall
    await grant(live, "ny", 1000)
    real_settle = mall_repair.stock.settle

    async def lost(*args: Any) -> str:
        raise RedisConnectionError("the store went away")

    monkeypatch.setattr(mall_repair.stock, "settle", lost)
    client = await live.connect("ny")
    assert await code_of(client, "mall_buy", item="coupon") == "STORE_UNAVAILABLE"
    monkeypatch.setattr(mall_repair.stock, "settle", real_settle)
    view = await client.call("mall")
    assert (view["balance"], view["orders"][0]["state"]) == (500, "paid")
    clock.advance(30_000)
    assert await sweep(live.manor.dispatcher.services) == 1
    view = await client.call("mall")
    assert view["orders"][0]["state"] == "delivered"
    assert item(view, "coupon")["stock_left"] == 99
    figures = await redis.hgetall(StockKeys("coupon").stock)
    assert (figures[b"sold"], figures[b"reserved"]) == (b"1", b"0")
    await client.close()


async def test_operators_lookup_shows_the_mall(mall: tuple[Live, httpx.AsyncClient]) -> None:
    live, _ = mall
    await grant(live, "ole", 4000)
    client = await live.connect("ole")
    cash = (await client.call("mall_buy", item="lancome"))["order"]
    await client.call("mall_buy", item="coupon")
    headers = {"Authorization": f"Bearer {ADMIN}"}
    async with httpx.AsyncClient(base_url=live.http, headers=headers) as admin:
        looked = (await admin.get("/v1/admin/players/ole")).json()
    panel = looked["mall"]
    assert (panel["day_orders"], panel["ever"]) == (2, {"lancome": 1, "coupon": 1})
    assert panel["pending"] == {
        cash["order_id"]: {"item": "lancome", "expires_ms": cash["expires_ms"]}
    }
    assert [o["state"] for o in panel["orders"]] == ["delivered", "pending_payment"]
    assert (looked["held"], looked["balance"]) == (3000, 3500)
    await client.close()
