"""Money safety at the ledger's seams: refunds against reversals, transfer ids built from
platform ids, long ids, concurrent reserves, holds whose timer was lost, and the outbox audit
after a reversal. Real HTTP, a real store, the books checked after each scenario."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import msgpack
import pytest
from redis.asyncio import Redis

from server.clock import FrozenClock
from server.ledger.commit import Commit, HoldOp, apply
from server.ledger.ledger import TRANSFER_ID_BYTES_MAX, Transfer
from server.ledger.outbox import Order, audit, complete
from server.ledger.verify import live_entries, verify
from server.store.embedded import EmbeddedStore
from server.store.keys import PlayerKeys
from server.store.store import Store
from tests.live import Live, serve

ADMIN = "admin-key-0123456789-abcdefghijklmnopqr"
PLATFORM = "platform-key-0123456789-abcdefghijklmnop"
NOW_MS = 1_790_000_000_000
JUNE = date(2027, 6, 30)


class TickingClock(FrozenClock):
    """Moves 1 ms on every read: two calls in flight never see the same time."""

    def now_ms(self) -> int:
        self.advance(1)
        return super().now_ms()


@pytest.fixture
async def api(
    redis: Redis, redis_server: EmbeddedStore, tmp_path: Path, clock: FrozenClock
) -> AsyncIterator[tuple[Live, httpx.AsyncClient]]:
    keys = {"admin_key": ADMIN, "platform_key": PLATFORM}
    async with (
        serve(redis_server.url, tmp_path, clock, **keys) as live,
        httpx.AsyncClient(base_url=live.http) as http,
    ):
        yield live, http
    report = await verify(redis)
    assert report.ok, report.problems  # after every scenario the books balance
    assert (await audit(redis)).problems == []


async def call(http: httpx.AsyncClient, path: str, status: int = 200, **body: Any) -> Any:
    key = ADMIN if path.startswith("admin/") else PLATFORM
    response = await http.post(f"/v1/{path}", json=body, headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == status, response.text
    return response.json()


async def paid(http: httpx.AsyncClient, player: str, order: str, fen: int) -> Any:
    items = [{"item_id": "i0", "paid_fen": fen}]
    return await call(http, "platform/orders/paid", player=player, order_id=order, items=items)


async def refund(
    http: httpx.AsyncClient, player: str, order: str, refund_id: str, fen: int, status: int = 200
) -> Any:
    items = [{"item_id": "i0", "refunded_fen": fen}]
    return await call(
        http,
        "platform/orders/refund",
        status,
        player=player,
        order_id=order,
        refund_id=refund_id,
        items=items,
    )


async def reverse(http: httpx.AsyncClient, player: str, transfer_id: str) -> Any:
    return await call(
        http, "admin/reverse", player=player, transfer_id=transfer_id, reason="ticket"
    )


async def look(http: httpx.AsyncClient, player: str) -> Any:
    response = await http.get(
        f"/v1/admin/players/{player}",
        params={"limit": 100},
        headers={"Authorization": f"Bearer {ADMIN}"},
    )
    assert response.status_code == 200, response.text
    return response.json()


async def journal_ids(redis: Redis, player: str) -> list[str]:
    return [e.transfer_id for e in await live_entries(redis, PlayerKeys(player))]


# --- 1. a reversal and a refund never take the same coins back twice --------------------------


async def test_a_refund_after_a_reversal_of_the_reward_takes_nothing_more(
    api: tuple[Live, httpx.AsyncClient],
) -> None:
    _, http = api
    reward = await paid(http, "ann", "O", 100_000)
    assert reward["coins"] == 1000
    await call(http, "platform/reviews", player="ann", review_id="rv", order_paid_fen=9999)
    undone = await reverse(http, "ann", "order:O:reward")
    assert (undone["moved"], undone["debt_added"], undone["balance"]) == (1000, 0, 10)
    back = await refund(http, "ann", "O", "r1", 100_000)
    assert (back["coins"], back["taken"], back["debt_added"]) == (0, 0, 0)
    assert (back["balance"], back["debt"]) == (10, 0)
    again = await refund(http, "ann", "O", "r1", 100_000)
    assert (again["already"], again["coins"]) == (True, 0)


async def test_a_reversal_after_a_refund_takes_only_what_the_refund_left(
    api: tuple[Live, httpx.AsyncClient],
) -> None:
    _, http = api
    await paid(http, "bob", "O", 10_000)  # 1000 coins
    half = await refund(http, "bob", "O", "r1", 5000)
    assert (half["coins"], half["balance"]) == (500, 500)
    undone = await reverse(http, "bob", "order:O:reward")
    assert (undone["coins"], undone["moved"], undone["debt_added"]) == (500, 500, 0)
    assert (undone["balance"], undone["debt"]) == (0, 0)
    rest = await refund(http, "bob", "O", "r2", 5000)
    assert (rest["coins"], rest["balance"], rest["debt"]) == (0, 0, 0)
    replay = await reverse(http, "bob", "order:O:reward")
    assert (replay["already"], replay["coins"]) == (True, 500)


async def test_a_reversal_after_a_full_refund_moves_nothing(
    api: tuple[Live, httpx.AsyncClient],
) -> None:
    _, http = api
    await paid(http, "cat", "O", 10_000)
    await refund(http, "cat", "O", "r1", 10_000)
    undone = await reverse(http, "cat", "order:O:reward")
    assert (undone["coins"], undone["moved"], undone["debt_added"]) == (0, 0, 0)
    assert (undone["balance"], undone["debt"]) == (0, 0)


async def test_a_reversal_racing_a_refund_takes_the_reward_back_once(
    api: tuple[Live, httpx.AsyncClient],
) -> None:
    _, http = api
    players = [f"race{n}" for n in range(8)]
    for player in players:
        await paid(http, player, "O", 10_000)  # 1000 coins each
        await call(http, "platform/reviews", player=player, review_id="rv", order_paid_fen=1)
    await asyncio.gather(
        *(reverse(http, p, "order:O:reward") for p in players),
        *(refund(http, p, "O", "r1", 10_000) for p in players),
    )
    for player in players:
        view = await look(http, player)
        # 1010 earned, 1000 of it taken back once: by the reversal or by the refund.
        assert (view["balance"], view["debt"]) == (10, 0), player


# --- 2. transfer ids are unambiguous -------------------------------------------------------


async def test_refund_ids_with_the_separator_do_not_collide(
    api: tuple[Live, httpx.AsyncClient],
) -> None:
    _, http = api
    await paid(http, "dan", "A:B", 10_000)
    await paid(http, "dan", "A", 10_000)
    first = await refund(http, "dan", "A:B", "C", 10_000)
    assert (first["taken"], first["balance"]) == (1000, 1000)
    second = await refund(http, "dan", "A", "B:C", 10_000)
    assert (second["already"], second["taken"], second["balance"]) == (False, 1000, 0)


async def test_a_review_id_ending_in_debt_is_not_a_debt_repayment(
    api: tuple[Live, httpx.AsyncClient], redis: Redis
) -> None:
    _, http = api
    await paid(http, "eve", "O", 10_000)  # 1000 coins
    reserved = {"player": "eve", "order_id": "c1", "order_fen": 1_000_000, "coins": 1000}
    await call(http, "platform/checkout/reserve", **reserved)
    await call(http, "platform/checkout/post", player="eve", order_id="c1")
    owed = await refund(http, "eve", "O", "r1", 10_000)
    assert owed["debt"] == 1000
    # Review "R:debt" first, then review "R", whose debt repayment once had the id
    # "review:R:debt" and overwrote the first review's transfer id.
    one = await call(http, "platform/reviews", player="eve", review_id="R:debt", order_paid_fen=1)
    two = await call(http, "platform/reviews", player="eve", review_id="R", order_paid_fen=1)
    assert (one["already"], two["already"]) == (False, False)
    retry = await call(http, "platform/reviews", player="eve", review_id="R:debt", order_paid_fen=1)
    assert retry["already"] is True
    ids = await journal_ids(redis, "eve")
    assert len(ids) == len(set(ids)) == await redis.hlen(PlayerKeys("eve").txids)
    assert (await look(http, "eve"))["debt"] == 980


async def test_ids_commit_lua_makes_are_checked_and_never_overwrite(
    store: Store, redis: Redis
) -> None:
    keys = PlayerKeys("fay")
    await apply(store, keys, Commit(transfers=[Transfer("seed", "c", 30, "mint:x", JUNE)]), NOW_MS)
    await apply(store, keys, Commit(holds=[HoldOp("reserve", "c1", 20, NOW_MS + 10**12)]), NOW_MS)
    store.today_of = lambda now_ms: 20270701  # JUNE has passed: 10 unheld coins expire
    assert (await apply(store, keys, Commit(), NOW_MS)).balance == 20
    assert (await apply(store, keys, Commit(holds=[HoldOp("void", "c1")]), NOW_MS)).held == 0
    assert (await apply(store, keys, Commit(), NOW_MS)).balance == 0  # same ms, same batch
    ids = await journal_ids(redis, "fay")
    assert len(ids) == 3 and len(set(ids)) == 3 == await redis.hlen(keys.txids)
    # A platform id cannot take a name commit.lua makes for itself...
    for made in (ids[1], "debt:seed", "expire:x"):
        clash = Commit(transfers=[Transfer(made, "c", 1, "mint:x", JUNE)])
        assert (await apply(store, keys, clash, NOW_MS)).status == "BAD_TRANSFER"
    # ...and a name commit.lua makes that is taken already is refused, never overwritten.
    await apply(store, keys, Commit(debt_add=5), NOW_MS)
    await redis.hset(keys.txids, "debt:late", "d|5|clawback|99")
    before = await redis.hgetall(keys.txids)
    late = Commit(transfers=[Transfer("late", "c", 7, "mint:x", JUNE)])
    assert (await apply(store, keys, late, NOW_MS)).status == "TRANSFER_MISMATCH"
    assert await redis.hgetall(keys.txids) == before
    await redis.hdel(keys.txids, "debt:late")


# --- 3. long ids ---------------------------------------------------------------------------


async def test_the_longest_ids_make_transfer_ids_within_the_ledger_limit(
    api: tuple[Live, httpx.AsyncClient], redis: Redis
) -> None:
    _, http = api
    order, refund_id = "o" * 128, "r" * 128
    await paid(http, "gus", order, 10_000)
    back = await refund(http, "gus", order, refund_id, 5000)
    assert (back["taken"], back["balance"]) == (500, 500)
    exchanged = await call(
        http, "platform/exchange", player="gus", partner="china_mobile", txn_id="t" * 128, points=2
    )
    assert exchanged["coins"] == 3
    granted = await call(http, "admin/grant", player="gus", coins=5, reason="r", grant_id="g" * 128)
    for transfer_id in [*await journal_ids(redis, "gus"), granted["transfer_id"]]:
        assert len(transfer_id.encode()) <= TRANSFER_ID_BYTES_MAX
    # The longest id a transfer can have still names its reversal.
    await paid(http, "gus", "p" * 96, 10_000)
    await refund(http, "gus", "p" * 96, "q" * 96, 1)
    longest = next(i for i in await journal_ids(redis, "gus") if i.startswith("refund:p"))
    assert len(longest) == TRANSFER_ID_BYTES_MAX
    undone = await reverse(http, "gus", longest)
    assert undone["moved"] == 1 and len(undone["reversal_id"]) <= TRANSFER_ID_BYTES_MAX


PAID_LINE = {"item_id": "i", "paid_fen": 1}
REFUND = {"item_id": "i", "refunded_fen": 1}


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("platform/orders/paid", {"order_id": "o" * 129, "items": [PAID_LINE]}),
        ("platform/orders/paid", {"order_id": "o", "items": [{**PAID_LINE, "item_id": "i" * 129}]}),
        ("platform/orders/refund", {"order_id": "o", "refund_id": "r" * 129, "items": [REFUND]}),
        ("platform/reviews", {"review_id": "v" * 129, "order_paid_fen": 1}),
        ("platform/exchange", {"partner": "china_mobile", "txn_id": "t" * 129, "points": 1}),
        ("platform/checkout/reserve", {"order_id": "c" * 129, "order_fen": 100, "coins": 1}),
        ("platform/checkout/post", {"order_id": "c" * 129}),
        ("admin/grant", {"coins": 1, "reason": "r", "grant_id": "g" * 129}),
        ("admin/reverse", {"reason": "r", "transfer_id": "t" * (TRANSFER_ID_BYTES_MAX + 1)}),
    ],
)
async def test_ids_over_their_documented_limit_are_refused_at_the_edge(
    api: tuple[Live, httpx.AsyncClient], path: str, body: dict[str, Any]
) -> None:
    _, http = api
    refused = await call(http, path, 400, player="hal", **body)
    assert refused["error"]["code"] == "BAD_ARGS"
    too_long_player = await call(http, path, 400, **{**body, "player": "p" * 65})
    assert too_long_player["error"]["code"] == "BAD_ARGS"


# --- 4. a reserve retried while the first is in flight -----------------------------------------


async def test_identical_reserves_in_flight_hold_once_and_answer_one_expiry(
    redis: Redis, redis_server: EmbeddedStore, tmp_path: Path
) -> None:
    clock = TickingClock(NOW_MS)
    async with (
        serve(redis_server.url, tmp_path, clock, platform_key=PLATFORM) as live,
        httpx.AsyncClient(base_url=live.http) as http,
    ):
        await paid(http, "ida", "O", 10_000)  # 1000 coins
        body = {"player": "ida", "order_fen": 10_000, "coins": 100}
        for n in range(5):
            order = {"order_id": f"c{n}", **body}
            answers = await asyncio.gather(
                *(call(http, "platform/checkout/reserve", **order) for _ in range(8))
            )
            assert sorted(a["already"] for a in answers) == [False] + [True] * 7
            assert len({a["expires_ms"] for a in answers}) == 1
        quote = await call(http, "platform/checkout/quote", player="ida", order_fen=10_000)
        assert quote["available"] == 500
    assert (await verify(redis)).ok


async def test_a_repeated_reserve_keeps_the_first_expiry(store: Store, redis: Redis) -> None:
    keys = PlayerKeys("jan")
    await apply(store, keys, Commit(transfers=[Transfer("seed", "c", 30, "mint:x", JUNE)]), NOW_MS)
    first = Commit(holds=[HoldOp("reserve", "c1", 20, NOW_MS + 900_000)])
    assert (await apply(store, keys, first, NOW_MS)).status == "ok"
    later = Commit(holds=[HoldOp("reserve", "c1", 20, NOW_MS + 900_001)])
    assert (await apply(store, keys, later, NOW_MS + 1)).status == "exists"
    assert await redis.hget(keys.holds, "c1") == f"pending|20|{NOW_MS + 900_000}".encode()
    other = Commit(holds=[HoldOp("reserve", "c1", 21, NOW_MS + 900_000)])
    assert (await apply(store, keys, other, NOW_MS + 1)).status == "HOLD_MISMATCH"


# --- 5. a hold expires whether or not its timer fires ----------------------------------------


async def test_a_hold_whose_timer_was_lost_is_released_on_the_next_touch(
    api: tuple[Live, httpx.AsyncClient], clock: FrozenClock, redis: Redis
) -> None:
    live, http = api
    await paid(http, "kai", "O", 10_000)  # 1000 coins
    held = await call(
        http, "platform/checkout/reserve", player="kai", order_id="c1", order_fen=10_000, coins=400
    )
    clock.advance(900_000)
    # A process claims the due timer and dies before firing it.
    claimed = await live.manor.timers.claim(clock.now_ms())
    assert [name for name, _ in claimed] == ["hold|kai|c1"]
    # Reads already count the hold as void.
    quote = await call(http, "platform/checkout/quote", player="kai", order_fen=1_000_000)
    assert (quote["balance"], quote["available"]) == (1000, 1000)
    again = await call(
        http,
        "platform/checkout/reserve",
        409,
        player="kai",
        order_id="c1",
        order_fen=10_000,
        coins=400,
    )
    assert again["error"]["code"] == "HOLD_VOIDED"
    # Any commit for the player writes the void; the coins are available to a new hold.
    other = await call(
        http, "platform/checkout/reserve", player="kai", order_id="c2", order_fen=10_000, coins=900
    )
    assert (other["already"], other["available"]) == (False, 100)
    assert (await redis.hget(PlayerKeys("kai").holds, "c1") or b"").startswith(b"voided|")
    view = await look(http, "kai")
    assert (view["held"], view["available"]) == (900, 100)
    late = await call(http, "platform/checkout/post", 409, player="kai", order_id="c1")
    assert late["error"]["code"] in ("HOLD_EXPIRED", "HOLD_VOIDED")
    # The claimed timer comes back (at least once) and its handler is idempotent.
    clock.advance(120_000)
    report = await live.manor.timers.tick(clock.now_ms())
    assert (report.fired, report.failed) == (1, 0)
    assert held["expires_ms"] < clock.now_ms()
    assert await live.manor.timers.pending() == 1  # c2's
    assert (await look(http, "kai"))["held"] == 900


async def test_an_expired_hold_is_void_in_the_commit_that_touches_it(
    store: Store, redis: Redis
) -> None:
    keys = PlayerKeys("lou")
    await apply(store, keys, Commit(transfers=[Transfer("seed", "c", 30, "mint:x", JUNE)]), NOW_MS)
    await apply(store, keys, Commit(holds=[HoldOp("reserve", "c1", 25, NOW_MS + 10)]), NOW_MS)
    spend = Commit(transfers=[Transfer("spend", "d", 30, "sink:redeem")])
    assert (await apply(store, keys, spend, NOW_MS + 9)).status == "INSUFFICIENT_FUNDS"
    done = await apply(store, keys, spend, NOW_MS + 10)
    assert (done.status, done.balance, done.held) == ("ok", 0, 0)
    assert await redis.hget(keys.holds, "c1") == f"voided|{NOW_MS + 10}".encode()
    post = Commit(
        holds=[HoldOp("post", "c1", 25)], transfers=[Transfer("redeem:c1", "d", 25, "sink:redeem")]
    )
    assert (await apply(store, keys, post, NOW_MS + 11)).status == "HOLD_VOIDED"
    assert (await verify(redis)).ok


# --- 6. the outbox audit after reversals of steal and water credits --------------------------


async def test_reversing_outbox_credits_keeps_the_audit_clean(
    api: tuple[Live, httpx.AsyncClient], redis: Redis
) -> None:
    live, http = api
    store = live.manor.store
    now_ms = live.manor.dispatcher.services.clock.now_ms()
    orders = [
        Order("steal:owner:0:1:mia", "mia", 5, "steal", JUNE, now_ms),
        Order("water:owner:0:1:mia", "mia", 3, "water", JUNE, now_ms),
        Order("steal:owner:1:1:ned", "ned", 4, "steal", JUNE, now_ms),
    ]
    commit = Commit(orders=[o.commit_entry() for o in orders])
    assert (await apply(store, PlayerKeys("owner"), commit, now_ms)).status == "ok"
    bucket = PlayerKeys("owner").bucket
    for order in orders:
        await complete(store, bucket, order.encode(), now_ms)
    assert (await audit(redis)).problems == []
    # ned spends 3 of his 4 before the reversal: 1 moved back to the mint, 3 owed.
    await call(
        http, "platform/checkout/reserve", player="ned", order_id="c", order_fen=100, coins=3
    )
    await call(http, "platform/checkout/post", player="ned", order_id="c")
    for player, transfer_id in [
        ("mia", "steal:owner:0:1:mia"),
        ("mia", "water:owner:0:1:mia"),
        ("ned", "steal:owner:1:1:ned"),
    ]:
        await reverse(http, player, transfer_id)
    report = await audit(redis)
    assert report.problems == []
    assert report.ordered == {"steal": 9, "water": 3}
    # A credit that never arrived still shows.
    lost = Order("steal:owner:2:1:ned", "ned", 2, "steal", JUNE, now_ms)
    await apply(store, PlayerKeys("owner"), Commit(orders=[lost.commit_entry()]), now_ms)
    await redis.lrem(PlayerKeys("owner").outbox, 1, lost.encode())
    assert (await audit(redis)).problems == ["outbox steal: ordered 11 != credited 9 + in flight 0"]
    await redis.hincrby(PlayerKeys("owner").stats, "steal:ordered", -2)  # for the fixture


async def test_holds_reserved_before_the_wallet_index_lapse_too(store: Store, redis: Redis) -> None:
    """A pending hold written before the wallet's hold index existed: the next commit reads
    the holds hash once, voids what is past its time and indexes the rest."""
    keys = PlayerKeys("max")
    await apply(store, keys, Commit(transfers=[Transfer("seed", "c", 50, "mint:x", JUNE)]), NOW_MS)
    legacy = {"old": f"pending|20|{NOW_MS + 5}", "new": f"pending|10|{NOW_MS + 10**9}"}
    await redis.hset(keys.holds, mapping=legacy)
    await redis.hset(keys.state, "held", 30)
    touched = await apply(store, keys, Commit(), NOW_MS + 5)
    assert (touched.status, touched.held) == ("ok", 10)
    assert await redis.hget(keys.holds, "old") == f"voided|{NOW_MS + 5}".encode()
    index = msgpack.unpackb(await redis.hget(keys.state, "hx"), raw=False)
    assert index == {"new": [10, NOW_MS + 10**9]}


async def test_the_sweep_voids_holds_of_wallets_nobody_touches(
    api: tuple[Live, httpx.AsyncClient], clock: FrozenClock
) -> None:
    from server.platform import commerce

    live, http = api
    await paid(http, "ned", "O", 10_000)
    await call(
        http, "platform/checkout/reserve", player="ned", order_id="c1", order_fen=10_000, coins=400
    )
    await live.manor.timers.claim(clock.now_ms() + 900_000)  # lost
    clock.advance(900_000)
    assert await commerce.sweep_expiry(live.manor.dispatcher.services) == 1
    assert (await look(http, "ned"))["held"] == 0


async def test_the_lookup_counts_a_hold_past_its_expiry_as_void_before_any_touch(
    api: tuple[Live, httpx.AsyncClient], clock: FrozenClock
) -> None:
    _, http = api
    await paid(http, "lia", "O", 10_000)  # 1000 coins
    await call(
        http, "platform/checkout/reserve", player="lia", order_id="c1", order_fen=10_000, coins=400
    )
    assert ((view := await look(http, "lia"))["held"], view["available"]) == (400, 600)
    clock.advance(900_000)  # past the hold's timeout; no timer fired, no commit touched her
    view = await look(http, "lia")
    assert (view["balance"], view["held"], view["available"]) == (1000, 0, 1000)
