"""Tasks and campaigns end to end: the platform's reports over real HTTP, the browse timer
over a real WebSocket, a real store, a clock the test moves; the ledger verifies after each."""

from __future__ import annotations

from collections.abc import AsyncIterator
from importlib.resources import files
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from server.client import ManorError
from server.clock import FrozenClock
from server.ledger.finance import Source, flows, ledger_entries
from server.ledger.ledger import Entry
from server.ledger.verify import live_entries, verify
from server.store.embedded import EmbeddedStore
from server.store.keys import PlayerKeys
from tests.conftest import shanghai_ms
from tests.live import Live, serve
from tests.test_platform import call

KEY = "platform-key-0123456789-abcdefghijklmnop"
ORDERS_ONLY = "orders-key-0123456789-abcdefghijklmnopq"
ADMIN = "admin-key-0123456789-abcdefghijklmnopqr"


def set_clock(clock: FrozenClock, wall: str) -> None:
    """Move the clock forward to a Shanghai wall time."""
    clock.advance(shanghai_ms(wall) - clock.now_ms())


@pytest.fixture
def clock() -> FrozenClock:
    """Before Double 11, so that each test can move forward to the instants it needs."""
    return FrozenClock(shanghai_ms("2026-10-30T09:00:00"))


@pytest.fixture
async def api(
    redis: Redis, redis_server: EmbeddedStore, tmp_path: Path, clock: FrozenClock
) -> AsyncIterator[tuple[Live, httpx.AsyncClient]]:
    async with serve(
        redis_server.url,
        tmp_path,
        clock,
        platform_key=KEY,
        api_keys=f"shop={ORDERS_ONLY}:orders",
        admin_key=ADMIN,
    ) as live:
        headers = {"Authorization": f"Bearer {KEY}"}
        async with httpx.AsyncClient(base_url=live.http, headers=headers) as http:
            yield live, http
    report = await verify(redis)
    assert report.ok, report.problems  # after every scenario the books balance


async def done(
    http: httpx.AsyncClient, player: str, task: str, event: str, status: int = 200
) -> Any:
    return await call(http, "tasks/done", status, player=player, task=task, event_id=event)


async def journal(redis: Redis, player: str) -> list[Entry]:
    return await live_entries(redis, PlayerKeys(player))


async def test_a_reported_task_pays_once_per_event_id_and_adds_growth(
    api: tuple[Live, httpx.AsyncClient], redis: Redis
) -> None:
    _, http = api
    first = await done(http, "ann", "photo_review", "ev-1")
    assert (first["coins"], first["already"], first["balance"], first["growth"]) == (
        20,
        False,
        20,
        5,
    )
    assert (first["done_today"], first["done_month"]) == (1, 1)
    again = await done(http, "ann", "photo_review", "ev-1")
    assert (again["coins"], again["already"], again["balance"]) == (20, True, 20)
    entries = await journal(redis, "ann")
    assert [(e.account, e.amount, e.ref) for e in entries] == [
        ("mint:task", 20, "task photo_review")
    ]
    state = await redis.hget(PlayerKeys("ann").state, "growth")
    assert state is not None  # the growth field was written by the same commit
    live, _ = api
    async with httpx.AsyncClient(base_url=live.http) as ops:
        headers = {"Authorization": f"Bearer {ADMIN}"}
        lookup = (await ops.get("/v1/admin/players/ann", headers=headers)).json()
    tasks = {t["task"]: t for t in lookup["tasks"]["tasks"]}
    assert (tasks["photo_review"]["done_today"], tasks["photo_review"]["left_today"]) == (1, 1)
    every = [pair async for pair in ledger_entries(redis, None, Source())]
    rows = {(f.account, f.kind): f.coins for f in flows(every, 0, 2**62)}
    assert rows == {("mint:task", "issued"): 20}  # the finance report's own row


async def test_caps_refuse_with_stable_codes_and_a_new_day_pays_again(
    api: tuple[Live, httpx.AsyncClient], clock: FrozenClock
) -> None:
    _, http = api
    set_clock(clock, "2026-11-23T23:59:58")
    for n in range(3):
        assert (await done(http, "bob", "share", f"s{n}"))["coins"] == 5
    capped = await done(http, "bob", "share", "s3", 422)
    assert capped["error"]["code"] == "TASK_DAY_CAP_REACHED"
    replay = await done(http, "bob", "share", "s2")  # a paid event replayed: already, not capped
    assert replay["already"] is True
    set_clock(clock, "2026-11-24T00:00:00")  # the next business day's first instant
    assert (await done(http, "bob", "share", "s3"))["done_today"] == 1
    assert (await done(http, "bob", "first_order", "o1"))["coins"] == 100
    month = await done(http, "bob", "first_order", "o2", 422)
    assert month["error"]["code"] == "TASK_MONTH_CAP_REACHED"
    set_clock(clock, "2026-12-01T00:00:00")
    assert (await done(http, "bob", "first_order", "o2"))["done_month"] == 1
    unknown = await done(http, "bob", "nope", "x", 422)
    assert unknown["error"]["code"] == "UNKNOWN_TASK"
    browse = await done(http, "bob", "browse", "x", 422)
    assert browse["error"]["code"] == "TASK_NOT_REPORTED"


async def test_the_tasks_scope_is_needed(api: tuple[Live, httpx.AsyncClient]) -> None:
    live, _ = api
    async with httpx.AsyncClient(base_url=live.http) as http:
        headers = {"Authorization": f"Bearer {ORDERS_ONLY}"}
        body = {"player": "cat", "task": "share", "event_id": "e"}
        got = await http.post("/v1/platform/tasks/done", json=body, headers=headers)
        assert (got.status_code, got.json()["error"]["code"]) == (403, "FORBIDDEN")


async def test_racing_reports_never_pay_past_the_cap(api: tuple[Live, httpx.AsyncClient]) -> None:
    import asyncio

    _, http = api
    # invite: 3 a day. Ten different events at once, and each of them twice.
    calls = [
        http.post(
            "/v1/platform/tasks/done",
            json={"player": "dot", "task": "invite", "event_id": f"i{n % 10}"},
        )
        for n in range(20)
    ]
    answers = await asyncio.gather(*calls)
    paid = {a.json()["event_id"] for a in answers if a.status_code == 200}
    assert len(paid) == 3
    codes = {a.json()["error"]["code"] for a in answers if a.status_code != 200}
    assert codes <= {"TASK_DAY_CAP_REACHED", "BUSY"}
    state = await call(http, "checkout/quote", player="dot", order_fen=1_000_000)
    assert state["balance"] == 150


async def test_browse_over_the_websocket_too_early_then_ok(
    api: tuple[Live, httpx.AsyncClient], clock: FrozenClock, redis: Redis
) -> None:
    live, _ = api
    async with await live.connect("eve") as eve:
        listed = await eve.call("tasks")
        browse = next(t for t in listed["tasks"] if t["task"] == "browse")
        assert (browse["browse_s"], browse["claimable"], browse["left_today"]) == (15, False, 3)
        start = await eve.call("task_start", task="browse")
        assert (start["claim_at_ms"] - start["started_ms"], start["already"]) == (15_000, False)
        clock.advance(14_999)
        with pytest.raises(ManorError) as early:
            await eve.call("task_claim", task="browse")
        assert early.value.code == "TASK_TOO_EARLY"
        clock.advance(1)
        claimed = await eve.request("task_claim", {"task": "browse"}, request_id="claim-1")
        assert claimed["ok"] and claimed["result"]["coins"] == 5
        assert claimed["result"]["balance"] == 5
        replayed = await eve.request("task_claim", {"task": "browse"}, request_id="claim-1")
        assert replayed == claimed  # the same request id replays, and pays once
        # The claim's reply carries eve's balance; her socket gets the task_done push only.
        assert claimed["result"]["entry_seq"] == 1
        done = await eve.next_push()
        assert (done["push"], done["data"]["task"]) == ("task_done", "browse")
        with pytest.raises(ManorError) as again:
            await eve.call("task_claim", task="browse")
        assert again.value.code == "TASK_NOT_STARTED"
        listed = await eve.call("tasks")
        browse = next(t for t in listed["tasks"] if t["task"] == "browse")
        assert (browse["done_today"], browse["left_today"], browse["started_ms"]) == (1, 2, None)
        with pytest.raises(ManorError) as platform_task:
            await eve.call("task_start", task="share")
        assert platform_task.value.code == "TASK_NOT_CLAIMABLE"
        with pytest.raises(ManorError) as bad:
            await eve.call("task_claim", task="Share!")
        assert bad.value.code == "BAD_ARGS"
    assert [e.amount for e in await journal(redis, "eve")] == [5]


async def test_double_eleven_doubles_an_order_and_a_refund_takes_it_back(
    api: tuple[Live, httpx.AsyncClient], clock: FrozenClock, redis: Redis
) -> None:
    _, http = api
    set_clock(clock, "2026-11-11T23:59:59.999")  # the campaign's last instant
    items = [{"item_id": "tv", "paid_fen": 10_000}]
    got = await call(http, "orders/paid", player="fay", order_id="d11", items=items)
    assert (got["coins"], got["balance"]) == (2000, 2000)
    set_clock(clock, "2026-11-12T00:00:00")  # the first instant after it
    after = await call(http, "orders/paid", player="fay", order_id="d12", items=items)
    assert after["coins"] == 1000
    refund = await call(
        http,
        "orders/refund",
        player="fay",
        order_id="d11",
        refund_id="r1",
        items=[{"item_id": "tv", "refunded_fen": 5000}],
    )
    assert refund["coins"] == 1000  # half of the doubled reward
    refs = [(e.account, e.amount, e.ref) for e in await journal(redis, "fay")]
    assert refs[0] == ("mint:order", 2000, "order d11 campaign double_eleven x2.00 +1000")
    assert refs[1] == ("mint:order", 1000, "order d12")


async def test_category_bonus_needs_the_category_on_the_line(
    api: tuple[Live, httpx.AsyncClient], clock: FrozenClock
) -> None:
    _, http = api
    set_clock(clock, "2026-12-03T10:00:00")
    lines = [
        {"item_id": "veg", "paid_fen": 10_000, "category": "fresh_food"},
        {"item_id": "pan", "paid_fen": 10_000},
    ]
    got = await call(http, "orders/paid", player="gus", order_id="f1", items=lines)
    assert got["coins"] == 1500 + 1000
    bad = [{"item_id": "veg", "paid_fen": 10_000, "category": "has space"}]
    refused = await call(http, "orders/paid", 400, player="gus", order_id="f2", items=bad)
    assert refused["error"]["code"] == "BAD_ARGS"


async def test_an_operator_reversal_of_a_campaign_reward_counts_the_refunds(
    api: tuple[Live, httpx.AsyncClient], clock: FrozenClock, redis: Redis
) -> None:
    live, http = api
    set_clock(clock, "2026-11-05T10:00:00")
    items = [{"item_id": "tv", "paid_fen": 10_000}]
    await call(http, "orders/paid", player="hal", order_id="o1", items=items)  # 2000 coins
    half = [{"item_id": "tv", "refunded_fen": 5000}]
    await call(http, "orders/refund", player="hal", order_id="o1", refund_id="r1", items=half)
    reward_id = (await journal(redis, "hal"))[0].transfer_id
    admin = {"Authorization": f"Bearer {ADMIN}"}
    body = {"player": "hal", "transfer_id": reward_id, "reason": "fraud"}
    async with httpx.AsyncClient(base_url=live.http, headers=admin) as ops:
        response = await ops.post("/v1/admin/reverse", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["coins"] == 1000  # not 2000: the refund took the other half
    assert response.json()["balance"] == 0


async def test_a_diamond_member_gets_the_level_multiplier(
    redis: Redis, redis_server: EmbeddedStore, tmp_path: Path, clock: FrozenClock
) -> None:
    # Every member starts at 20 000 growth value (diamond, tasks x1.5) with this base score.
    text = (files("game_rules") / "default.toml").read_text("utf-8")
    assert text.count("\nbase_score = 0\n") == 1
    rules = tmp_path / "rules.toml"
    rules.write_text(text.replace("\nbase_score = 0\n", "\nbase_score = 20000\n"), "utf-8")
    async with serve(redis_server.url, tmp_path, clock, platform_key=KEY, rules=str(rules)) as live:
        headers = {"Authorization": f"Bearer {KEY}"}
        async with httpx.AsyncClient(base_url=live.http, headers=headers) as http:
            got = await done(http, "ivy", "photo_review", "r1")
        async with await live.connect("ivy") as ivy:
            listed = {t["task"]: t for t in (await ivy.call("tasks"))["tasks"]}
    assert (got["coins"], got["base_coins"], got["level_coins"]) == (30, 20, 10)
    assert listed["share"]["coins"] == 7  # 5 x1.5, rounded down
    assert [e.ref for e in await journal(redis, "ivy")] == ["task photo_review level x1.50 +10"]
    assert (await verify(redis)).ok
