"""The platform API end to end: real HTTP, a real store, the source documents' numbers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from server.clock import FrozenClock
from server.ledger.commit import HOLDS_PENDING_MAX
from server.ledger.verify import verify
from server.store.embedded import EmbeddedStore
from tests.live import Live, serve

KEY = "platform-key-0123456789-abcdefghijklmnop"
ORDERS_ONLY = "orders-key-0123456789-abcdefghijklmnopq"


@pytest.fixture
async def api(
    redis: Redis, redis_server: EmbeddedStore, tmp_path: Path, clock: FrozenClock
) -> AsyncIterator[tuple[Live, httpx.AsyncClient]]:
    async with serve(
        redis_server.url, tmp_path, clock, platform_key=KEY, api_keys=f"shop={ORDERS_ONLY}:orders"
    ) as live:
        headers = {"Authorization": f"Bearer {KEY}"}
        async with httpx.AsyncClient(base_url=live.http, headers=headers) as http:
            yield live, http
    report = await verify(redis)
    assert report.ok, report.problems  # after every scenario the books balance


async def call(http: httpx.AsyncClient, path: str, status: int = 200, **body: Any) -> Any:
    response = await http.post(f"/v1/platform/{path}", json=body)
    assert response.status_code == status, response.text
    return response.json()


async def paid(http: httpx.AsyncClient, player: str, order: str, *fen: int) -> Any:
    items = [{"item_id": f"i{n}", "paid_fen": f} for n, f in enumerate(fen)]
    return await call(http, "orders/paid", player=player, order_id=order, items=items)


@pytest.mark.parametrize(
    ("fen", "coins"),
    [
        ((4999,), 0),  # under the 50-yuan threshold: nothing
        ((5000,), 500),  # 50 yuan: 10% = 5 yuan = 500 coins
        ((9999,), 999),
        ((1_000_000,), 1000),  # 10 000 yuan: capped at 1000 per item
        ((2000, 3000), 500),  # the threshold is the order's total; 10% per item
    ],
)
async def test_order_rewards_follow_the_jd_rules(
    api: tuple[Live, httpx.AsyncClient], fen: tuple[int, ...], coins: int
) -> None:
    _, http = api
    got = await paid(http, "ann", "o1", *fen)
    assert (got["coins"], got["balance"], got["already"]) == (coins, coins, False)
    again = await paid(http, "ann", "o1", *fen)
    assert (again["coins"], again["balance"], again["already"]) == (coins, coins, True)
    other = [{"item_id": "zz", "paid_fen": 9}]
    mismatch = await call(http, "orders/paid", 409, player="ann", order_id="o1", items=other)
    assert mismatch["error"]["code"] == "ORDER_MISMATCH"


async def test_refunds_take_back_proportionally_and_record_debt(
    api: tuple[Live, httpx.AsyncClient],
) -> None:
    _, http = api
    await paid(http, "bob", "o1", 10_000)  # 1000 coins
    half = await call(
        http,
        "orders/refund",
        player="bob",
        order_id="o1",
        refund_id="r1",
        items=[{"item_id": "i0", "refunded_fen": 5000}],
    )
    assert (half["coins"], half["taken"], half["debt"], half["balance"]) == (500, 500, 0, 500)
    replay = await call(
        http,
        "orders/refund",
        player="bob",
        order_id="o1",
        refund_id="r1",
        items=[{"item_id": "i0", "refunded_fen": 5000}],
    )
    assert replay["already"] is True and replay["coins"] == 500
    # The player spends 400 of the 500 at checkout, then the rest is refunded.
    await call(http, "checkout/reserve", player="bob", order_id="c1", order_fen=100_000, coins=400)
    await call(http, "checkout/post", player="bob", order_id="c1")
    rest = await call(
        http,
        "orders/refund",
        player="bob",
        order_id="o1",
        refund_id="r2",
        items=[{"item_id": "i0", "refunded_fen": 5000}],
    )
    assert (rest["coins"], rest["taken"], rest["debt"], rest["balance"]) == (500, 100, 400, 0)
    # The next earnings pay the debt first.
    earned = await paid(http, "bob", "o2", 5000)
    assert earned["coins"] == 500 and earned["balance"] == 100
    too_much = await call(
        http,
        "orders/refund",
        400,
        player="bob",
        order_id="o1",
        refund_id="r3",
        items=[{"item_id": "i0", "refunded_fen": 1}],
    )
    assert too_much["error"]["code"] == "BAD_REFUND"


async def test_checkout_quote_reserve_post_void(
    api: tuple[Live, httpx.AsyncClient], clock: FrozenClock
) -> None:
    _, http = api
    await paid(http, "cat", "o1", 10_000)  # 1000 coins
    quote = await call(http, "checkout/quote", player="cat", order_fen=1_001)
    assert quote["coins_max"] == 500  # 50% of 10.01 yuan, floor to the coin
    big = await call(http, "checkout/quote", player="cat", order_fen=1_000_000)
    assert big["coins_max"] == 1000  # no more than the balance
    over = await call(
        http, "checkout/reserve", 422, player="cat", order_id="c0", order_fen=1_001, coins=501
    )
    assert over["error"]["code"] == "COINS_OVER_CAP"
    held = await call(
        http, "checkout/reserve", player="cat", order_id="c1", order_fen=200_000, coins=800
    )
    assert held["expires_ms"] == clock.now_ms() + 900_000
    spent = await call(
        http, "checkout/reserve", 422, player="cat", order_id="c2", order_fen=200_000, coins=201
    )
    assert spent["error"]["code"] == "INSUFFICIENT_FUNDS"  # held coins cannot be spent twice
    posted = await call(http, "checkout/post", player="cat", order_id="c1")
    assert (posted["state"], posted["balance"]) == ("posted", 200)
    again = await call(http, "checkout/post", player="cat", order_id="c1")
    assert again["already"] is True
    void_after_post = await call(http, "checkout/void", 409, player="cat", order_id="c1")
    assert void_after_post["error"]["code"] == "HOLD_POSTED"
    await call(http, "checkout/reserve", player="cat", order_id="c3", order_fen=1000, coins=100)
    voided = await call(http, "checkout/void", player="cat", order_id="c3")
    assert voided["available"] == 200
    post_after_void = await call(http, "checkout/post", 409, player="cat", order_id="c3")
    assert post_after_void["error"]["code"] == "HOLD_VOIDED"
    missing = await call(http, "checkout/post", 404, player="cat", order_id="nope")
    assert missing["error"]["code"] == "HOLD_NOT_FOUND"


async def test_a_player_with_the_most_pending_holds_is_refused_another_until_one_settles(
    api: tuple[Live, httpx.AsyncClient],
) -> None:
    _, http = api
    await paid(http, "hex", "o1", 10_000)  # 1000 coins
    for n in range(HOLDS_PENDING_MAX):
        await call(
            http, "checkout/reserve", player="hex", order_id=f"c{n}", order_fen=1000, coins=1
        )
    full = await call(
        http, "checkout/reserve", 409, player="hex", order_id="one-more", order_fen=1000, coins=1
    )
    assert full["error"]["code"] == "HOLDS_FULL"
    assert str(HOLDS_PENDING_MAX) in full["error"]["message"]
    await call(http, "checkout/void", player="hex", order_id="c0")
    held = await call(
        http, "checkout/reserve", player="hex", order_id="one-more", order_fen=1000, coins=1
    )
    assert held["available"] == 1000 - HOLDS_PENDING_MAX


async def test_a_hold_not_posted_in_time_is_voided_by_its_timer(
    api: tuple[Live, httpx.AsyncClient], clock: FrozenClock
) -> None:
    live, http = api
    await paid(http, "dan", "o1", 10_000)
    await call(http, "checkout/reserve", player="dan", order_id="c1", order_fen=10_000, coins=300)
    clock.advance(900_000)
    late = await call(http, "checkout/post", 409, player="dan", order_id="c1")
    assert late["error"]["code"] == "HOLD_EXPIRED"
    await call(http, "checkout/reserve", player="dan", order_id="c2", order_fen=10_000, coins=300)
    clock.advance(900_000)
    report = await live.manor.timers.tick(clock.now_ms())
    assert report.fired >= 1 and report.failed == 0
    quote = await call(http, "checkout/quote", player="dan", order_fen=1_000_000)
    assert quote["available"] == 1000


async def test_reviews_and_partner_exchange(api: tuple[Live, httpx.AsyncClient]) -> None:
    _, http = api
    low = await call(http, "reviews", player="eve", review_id="rv1", order_paid_fen=9999)
    high = await call(http, "reviews", player="eve", review_id="rv2", order_paid_fen=10_000)
    assert (low["coins"], high["coins"], high["balance"]) == (10, 20, 30)
    one = await call(http, "exchange", player="eve", partner="china_mobile", txn_id="t1", points=1)
    hundred = await call(
        http, "exchange", player="eve", partner="china_mobile", txn_id="t2", points=100
    )
    assert (one["coins"], hundred["coins"]) == (1, 150)
    replay = await call(
        http, "exchange", player="eve", partner="china_mobile", txn_id="t2", points=100
    )
    assert replay["already"] is True and replay["balance"] == hundred["balance"]
    over = await call(
        http, "exchange", 422, player="eve", partner="china_mobile", txn_id="t3", points=101
    )
    assert over["error"]["code"] == "POINTS_OVER_LIMIT"
    unknown = await call(http, "exchange", 422, player="eve", partner="acme", txn_id="t4", points=5)
    assert unknown["error"]["code"] == "UNKNOWN_PARTNER"


async def test_keys_and_scopes(api: tuple[Live, httpx.AsyncClient]) -> None:
    live, _ = api
    async with httpx.AsyncClient(base_url=live.http) as http:
        url = "/v1/platform/orders/paid"
        body = {"player": "fay", "order_id": "o1", "items": [{"item_id": "a", "paid_fen": 5000}]}
        assert (await http.post(url, json=body)).status_code == 401
        shop = {"Authorization": f"Bearer {ORDERS_ONLY}"}
        assert (await http.post(url, json=body, headers=shop)).status_code == 200
        quote = await http.post(
            "/v1/platform/checkout/quote", headers=shop, json={"player": "fay", "order_fen": 100}
        )
        assert quote.status_code == 403 and quote.json()["error"]["code"] == "FORBIDDEN"
        bad = await http.post(url, headers=shop, json={**body, "extra": 1})
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "BAD_ARGS"
        garbage = await http.post(url, headers=shop, content=b"{not json")
        assert garbage.status_code == 400


async def test_expiry_warns_once_then_sweeps_at_the_boundary(
    api: tuple[Live, httpx.AsyncClient], clock: FrozenClock, redis: Redis
) -> None:
    from server.platform import commerce
    from server.store.keys import PlayerKeys
    from tests.conftest import shanghai_ms

    live, http = api
    await call(http, "reviews", player="gus", review_id="rv1", order_paid_fen=10_000)  # 20
    phone = await live.connect("gus")
    await phone.call("state")
    services = live.manor.dispatcher.services
    clock.advance(shanghai_ms("2027-12-23T10:00:00") - clock.now_ms())
    assert await commerce.warn_expiring(services) == 0  # 8 days left: not yet
    clock.advance(86_400_000)
    assert await commerce.warn_expiring(services) == 1
    push = await phone.next_push()
    assert push["push"] == "coins_expiring"
    assert push["data"] == {"expires": "2027-12-31", "coins": 20, "days_left": 7}
    assert await commerce.warn_expiring(services) == 0  # once per batch
    clock.advance(shanghai_ms("2027-12-31T23:59:59") - clock.now_ms())
    assert await commerce.sweep_expiry(services) == 0
    clock.advance(1000)  # 00:00:00 on 1 January: the batch's last valid day has passed
    assert await commerce.sweep_expiry(services) == 1
    assert await redis.hget(PlayerKeys("gus").state, "bal") == b"0"
    assert await redis.hget(PlayerKeys("gus").sys, "sink:expire") == b"20"
    await phone.close()


async def test_a_timeout_firing_during_a_post_settles_the_hold_once(
    api: tuple[Live, httpx.AsyncClient], clock: FrozenClock, redis: Redis
) -> None:
    import asyncio

    from server.platform import commerce
    from server.store.keys import PlayerKeys

    live, http = api
    services = live.manor.dispatcher.services
    await paid(http, "hal", "o1", 10_000)  # 1000 coins
    outcomes = []
    for n in range(6):
        order = f"c{n}"
        await call(
            http, "checkout/reserve", player="hal", order_id=order, order_fen=10_000, coins=50
        )
        clock.advance(899_999)  # the last ms before the timeout
        post, timer = await asyncio.gather(
            commerce.settle(services, "hal", order, "post"),
            commerce.fire_hold(services, ["hal", order], clock.now_ms(), clock.now_ms()),
            return_exceptions=True,
        )
        assert timer is None  # the timer swallows HOLD_POSTED
        outcomes.append("posted" if isinstance(post, dict) else post.code)  # type: ignore[union-attr]
        state = await redis.hget(PlayerKeys("hal").holds, order)
        assert state is not None and state.split(b"|")[0] in (b"posted", b"voided")
    posted = outcomes.count("posted")
    assert set(outcomes) <= {"posted", "HOLD_VOIDED"}
    wallet = await redis.hgetall(PlayerKeys("hal").state)
    assert int(wallet[b"bal"]) == 1000 - 50 * posted
    assert int(wallet.get(b"held", 0)) == 0
