"""Growth value and member levels end to end: the platform endpoint, `state`, the recompute
job, the `level_up` push on a live socket, per-level checkout and the operators' lookup."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from importlib.resources import files
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from server.clock import FrozenClock
from server.ledger.verify import verify
from server.ops.growth import recompute_levels
from server.store.embedded import EmbeddedStore
from server.store.keys import PlayerKeys, growth_players
from tests.live import Live, serve

KEY = "platform-key-0123456789-abcdefghijklmnop"
ORDERS_ONLY = "orders-key-0123456789-abcdefghijklmnopq"
ADMIN = "admin-key-0123456789-abcdefghijklmnopqrs"
DAY_MS = 86_400_000
# Silver (200+) pays 80 coins a yuan and may cover 60 % of an order.
SILVER_PERKS = "coins_per_yuan = 80\norder_share_max_pct = 60\n"
# 205 points on one day, every cap respected: silver at the next recompute.
SILVER_DAY = [
    ("real_name", 1),
    ("profile", 1),
    ("month_three_days", 1),
    ("shopping_year", 1),
    ("photo_review", 3),
    ("review", 5),
    ("share", 5),
]


@pytest.fixture
async def api(
    redis: Redis, redis_server: EmbeddedStore, tmp_path: Path, clock: FrozenClock
) -> AsyncIterator[tuple[Live, httpx.AsyncClient]]:
    text = files("game_rules").joinpath("default.toml").read_text(encoding="utf-8")
    marker = "[growth.levels.silver]  # 200-500: PLUS offers, fee and freight reductions\n"
    assert marker in text
    rules = tmp_path / "rules.toml"
    rules.write_text(text.replace(marker, marker + SILVER_PERKS), encoding="utf-8")
    async with serve(
        redis_server.url,
        tmp_path,
        clock,
        platform_key=KEY,
        admin_key=ADMIN,
        rules=str(rules),
        api_keys=f"shop={ORDERS_ONLY}:orders",
    ) as live:
        headers = {"Authorization": f"Bearer {KEY}"}
        async with httpx.AsyncClient(base_url=live.http, headers=headers) as http:
            yield live, http
    report = await verify(redis)
    assert report.ok, report.problems


async def call(http: httpx.AsyncClient, path: str, status: int = 200, **body: Any) -> Any:
    response = await http.post(f"/v1/platform/{path}", json=body)
    assert response.status_code == status, response.text
    return response.json()


async def grow(http: httpx.AsyncClient, player: str, event: str, event_id: str) -> Any:
    return await call(http, "growth", player=player, event=event, event_id=event_id)


async def silver_day(http: httpx.AsyncClient, player: str) -> None:
    for event, times in SILVER_DAY:
        for n in range(times):
            got = await grow(http, player, event, f"{player}-{event}-{n}")
            assert got["added"] > 0 and "capped" not in got


async def test_growth_event_is_idempotent_under_replay(
    api: tuple[Live, httpx.AsyncClient], redis: Redis
) -> None:
    _, http = api
    first = await grow(http, "ann", "real_name", "ev-1")
    assert (first["added"], first["already"], first["pending"], first["value"]) == (
        100,
        False,
        100,
        0,
    )
    assert first["level"]["name"] == "bronze"
    replays = await asyncio.gather(*[grow(http, "ann", "real_name", "ev-1") for _ in range(5)])
    for again in replays:
        assert again == {**first, "already": True}
    # A second real-name event is capped (ever), and answered so on replay too.
    capped = await grow(http, "ann", "real_name", "ev-2")
    assert (capped["added"], capped["capped"]) == (0, "ever")
    assert (await grow(http, "ann", "real_name", "ev-2"))["capped"] == "ever"
    mismatch = await call(http, "growth", 409, player="ann", event="share", event_id="ev-1")
    assert mismatch["error"]["code"] == "GROWTH_EVENT_MISMATCH"
    unknown = await call(http, "growth", 422, player="ann", event="donation", event_id="ev-3")
    assert unknown["error"]["code"] == "UNKNOWN_GROWTH_EVENT"
    bad = await call(http, "growth", 400, player="ann", event="share")
    assert bad["error"]["code"] == "BAD_ARGS"
    forbidden = await http.post(
        "/v1/platform/growth",
        json={"player": "ann", "event": "share", "event_id": "x"},
        headers={"Authorization": f"Bearer {ORDERS_ONLY}"},
    )
    assert forbidden.status_code == 403
    assert await redis.sismember(growth_players(PlayerKeys("ann").bucket), "ann")


async def test_reports_per_day_max_refuses_and_writes_nothing(
    api: tuple[Live, httpx.AsyncClient], redis: Redis, clock: FrozenClock
) -> None:
    live, http = api
    reports_max = live.manor.dispatcher.services.rulebook.rules.growth.reports_per_day_max
    for n in range(reports_max):
        await grow(http, "cat", "share", f"s{n}")
    keys = PlayerKeys("cat")
    records_before = await redis.hlen(keys.records)
    over = await call(http, "growth", 422, player="cat", event="share", event_id="one-more")
    assert over["error"]["code"] == "GROWTH_REPORTS_OVER_LIMIT"
    assert await redis.hlen(keys.records) == records_before == reports_max
    clock.advance(DAY_MS)
    assert (await grow(http, "cat", "share", "one-more"))["added"] == 2


async def test_state_shows_value_level_next_threshold_and_what_raises_it(
    api: tuple[Live, httpx.AsyncClient], clock: FrozenClock
) -> None:
    live, http = api
    await silver_day(http, "dan")
    async with await live.connect("dan") as socket:
        today = (await socket.call("state"))["growth"]
        assert (today["value"], today["pending"], today["level"]["name"]) == (0, 205, "bronze")
        assert (today["next_threshold"], today["to_next"]) == (200, 200)
        raises = {r["event"]: r for r in today["raises"]}
        assert raises["review"] == {
            "event": "review",
            "points": 2,
            "per": "day",
            "times_max": 5,
            "left": 0,
        }
        assert raises["real_name"]["left"] == 0 and raises["group_buy"]["left"] == 2
        clock.advance(DAY_MS)
        tomorrow = (await socket.call("state"))["growth"]
        assert (tomorrow["value"], tomorrow["pending"]) == (205, 0)
        assert tomorrow["level"]["name"] == "silver" and tomorrow["level"]["index"] == 1
        assert (tomorrow["next_threshold"], tomorrow["to_next"]) == (500, 295)
        assert {r["event"]: r["left"] for r in tomorrow["raises"]}["review"] == 5
        panel = await socket.call("growth")
        assert panel["value"] == 205 and len(panel["recent"]) == 10


async def test_recompute_job_pushes_level_up_to_a_live_socket(
    api: tuple[Live, httpx.AsyncClient], clock: FrozenClock, redis: Redis
) -> None:
    live, http = api
    services = live.manor.dispatcher.services
    await silver_day(http, "eve")
    await grow(http, "fay", "review", "f1")  # fay stays bronze: recomputed, not pushed
    async with await live.connect("eve") as eve, await live.connect("fay") as fay:
        assert await recompute_levels(services) == 0  # same day: nothing to take
        clock.advance(DAY_MS)
        assert await recompute_levels(services) == 2
        push = await eve.next_push()
        assert push["push"] == "level_up"
        assert push["data"] == {"level": 1, "name": "silver", "level_before": 0, "value": 205}
        assert fay.pushes.empty()
        assert await recompute_levels(services) == 0  # once per period
        # A year on, the points aged out: the fall is written, not pushed.
        clock.advance(365 * DAY_MS)
        assert await recompute_levels(services) == 2
        state = (await eve.call("state"))["growth"]
        assert (state["value"], state["level"]["name"]) == (120, "bronze")  # standing events
        await asyncio.sleep(0.2)
        assert eve.pushes.empty()


async def test_the_first_event_of_a_new_day_takes_the_recompute_and_pushes(
    api: tuple[Live, httpx.AsyncClient], clock: FrozenClock
) -> None:
    live, http = api
    await silver_day(http, "gus")
    async with await live.connect("gus") as socket:
        clock.advance(DAY_MS)
        got = await grow(http, "gus", "group_buy", "g1")
        assert (got["value"], got["level"]["name"], got["pending"]) == (205, "silver", 5)
        push = await socket.next_push()
        assert (push["push"], push["data"]["level"]) == ("level_up", 1)


async def test_checkout_ratio_and_cap_follow_the_level(
    api: tuple[Live, httpx.AsyncClient], clock: FrozenClock
) -> None:
    _, http = api
    await call(
        http,
        "orders/paid",
        player="hal",
        order_id="o1",
        items=[{"item_id": "i", "paid_fen": 1_000_000}],
    )
    bronze = await call(http, "checkout/quote", player="hal", order_fen=1000)
    assert bronze["coins_max"] == 500  # 50 % of 10 yuan at 100 coins a yuan
    over = await call(
        http, "checkout/reserve", 422, player="hal", order_id="c1", order_fen=1000, coins=501
    )
    assert over["error"]["code"] == "COINS_OVER_CAP"
    await silver_day(http, "hal")
    clock.advance(DAY_MS)
    silver = await call(http, "checkout/quote", player="hal", order_fen=1000)
    # 60 % of 10 yuan = 6 yuan at 80 coins a yuan = 480 coins, worth 600 fen.
    assert (silver["coins_max"], silver["value_fen"]) == (480, 600)
    held = await call(
        http, "checkout/reserve", player="hal", order_id="c2", order_fen=1000, coins=480
    )
    assert held["coins"] == 480


async def test_operators_lookup_shows_growth_history(
    api: tuple[Live, httpx.AsyncClient], clock: FrozenClock
) -> None:
    _, http = api
    await grow(http, "ivy", "review", "r1")
    await grow(http, "ivy", "profile", "p1")
    clock.advance(40 * DAY_MS)
    await grow(http, "ivy", "share", "s1")
    admin = {"Authorization": f"Bearer {ADMIN}"}
    response = await http.get("/v1/admin/players/ivy", headers=admin)
    assert response.status_code == 200, response.text
    growth = response.json()["growth"]
    assert growth["value"] == 22 and growth["pending"] == 2
    history = growth["history"]
    assert [m["month"] for m in history["months"]] == ["2026-11", "2027-01"]
    assert history["months"][0]["events"] == [{"event": "review", "count": 1, "points": 2}]
    assert history["standing"] == [{"event": "profile", "count": 1, "points": 20}]
    assert [r["ref"] for r in history["recent"]] == ["r1", "p1", "s1"]
