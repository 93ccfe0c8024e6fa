"""/metrics: request counts per op and outcome, sockets, and coin sums that match the ledger."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from server.client import ManorError
from server.clock import FrozenClock
from server.ledger.ledger import Entry
from server.ledger.verify import verify
from server.metrics import UNKNOWN_OP, Metrics, coin_flows, http_op
from server.store.embedded import EmbeddedStore
from server.store.keys import BUCKETS, PlayerKeys, outbox, players_index
from tests.live import Live, serve

ADMIN = "admin-key-0123456789-abcdefghijklmnopqr"
PLATFORM = "platform-key-0123456789-abcdefghijklmnop"
SCRAPER = "metrics-key-0123456789-abcdefghijklmnop"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
async def api(
    redis: Redis, redis_server: EmbeddedStore, tmp_path: Path, clock: FrozenClock
) -> AsyncIterator[tuple[Live, httpx.AsyncClient]]:
    async with (
        serve(redis_server.url, tmp_path, clock, admin_key=ADMIN, platform_key=PLATFORM) as live,
        httpx.AsyncClient(base_url=live.http) as http,
    ):
        yield live, http
    report = await verify(redis)
    assert report.ok, report.problems


async def scrape(http: httpx.AsyncClient, **headers: str) -> Samples:
    response = await http.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


async def platform(http: httpx.AsyncClient, path: str, status: int = 200, **body: Any) -> Any:
    response = await http.post(
        f"/v1/platform/{path}", json=body, headers={"Authorization": f"Bearer {PLATFORM}"}
    )
    assert response.status_code == status, response.text
    return response.json()


async def admin(http: httpx.AsyncClient, path: str, **body: Any) -> Any:
    response = await http.post(
        f"/v1/admin/{path}", json=body, headers={"Authorization": f"Bearer {ADMIN}"}
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_observe_bounds_op_labels_and_keeps_apps_apart() -> None:
    one, two = Metrics(["sign_in"]), Metrics(["sign_in"])
    one.observe("sign_in", "ok", 0.002)
    one.observe("sign_in", "ok", 0.003)
    one.observe("no_such_op_1", "UNKNOWN_OP", 0.001)
    one.observe("no_such_op_2", "UNKNOWN_OP", 0.001)
    got = one.registry.get_sample_value
    assert got("manor_requests_total", {"op": "sign_in", "outcome": "ok"}) == 2
    assert got("manor_requests_total", {"op": UNKNOWN_OP, "outcome": "UNKNOWN_OP"}) == 2
    assert got("manor_request_seconds_count", {"op": "sign_in"}) == 2
    assert got("manor_requests_total", {"op": "no_such_op_1", "outcome": "UNKNOWN_OP"}) is None
    assert (
        two.registry.get_sample_value("manor_requests_total", {"op": "sign_in", "outcome": "ok"})
        is None
    )
    assert http_op("/v1/admin/players/{player}") == "admin.players"


def test_coin_flows_sign_mints_and_sinks() -> None:
    minted, burned = coin_flows(
        [
            {b"mint:signin": b"-30", b"sink:redeem": b"10", b"clawback": b"5"},
            {b"mint:signin": b"-20", b"mint:grant": b"-7", b"sink:expire": b"3"},
        ]
    )
    assert minted == {"signin": 50, "grant": 7}
    assert burned == {"redeem": 10, "expire": 3, "clawback": 5}


async def test_requests_are_counted_by_op_and_outcome(api: tuple[Live, httpx.AsyncClient]) -> None:
    live, http = api
    phone = await live.connect("ann")
    await phone.call("state")
    await phone.call("sign_in")
    await phone.call("sign_in")
    for op, args in (("fly_to_the_moon", {}), ("ledger", {"limit": 0})):
        with pytest.raises(ManorError):
            await phone.call(op, **args)
    items = [{"item_id": "a", "paid_fen": 5000}]
    await platform(http, "orders/paid", player="ann", order_id="o1", items=items)
    await platform(http, "orders/paid", 400, player="ann", order_id="o1", items=[])
    samples = await scrape(http)
    requests = "manor_requests_total"
    assert value(samples, requests, op="state", outcome="ok") == 1
    assert value(samples, requests, op="sign_in", outcome="ok") == 2
    assert value(samples, requests, op=UNKNOWN_OP, outcome="UNKNOWN_OP") == 1
    assert value(samples, requests, op="ledger", outcome="BAD_ARGS") == 1
    assert value(samples, requests, op="platform.orders.paid", outcome="ok") == 1
    assert value(samples, requests, op="platform.orders.paid", outcome="BAD_ARGS") == 1
    assert value(samples, "manor_request_seconds_count", op="sign_in") == 2
    assert value(samples, "manor_sockets") == 1
    assert not any(dict(labels).get("op") == "fly_to_the_moon" for _, labels in samples)
    await phone.close()


async def test_coin_sums_and_queues_match_the_ledger(
    api: tuple[Live, httpx.AsyncClient], redis: Redis, clock: FrozenClock
) -> None:
    live, http = api
    phone = await live.connect("bob")
    await phone.call("sign_in")
    await phone.call("plant", plot=0, seed="turnip")  # a ripe timer
    await phone.close()
    await platform(
        http, "orders/paid", player="bob", order_id="o1", items=[{"item_id": "a", "paid_fen": 9000}]
    )
    await admin(http, "grant", player="cat", coins=300, reason="sorry", grant_id="g1")
    await platform(http, "checkout/reserve", player="bob", order_id="c1", order_fen=9000, coins=100)
    await platform(http, "checkout/post", player="bob", order_id="c1")
    await platform(http, "checkout/reserve", player="bob", order_id="c2", order_fen=9000, coins=50)
    refund = [{"item_id": "a", "refunded_fen": 9000}]
    await platform(http, "orders/refund", player="bob", order_id="o1", refund_id="r1", items=refund)
    await admin(http, "reverse", player="cat", transfer_id="grant:g1", reason="oops")
    await redis.rpush(outbox(7), b"an order in flight")
    samples = await scrape(http)
    await redis.delete(outbox(7))

    minted: dict[str, int] = {}
    burned: dict[str, int] = {}
    for bucket in range(BUCKETS):
        for player in await redis.smembers(players_index(bucket)):
            journal = await redis.lrange(PlayerKeys(player.decode()).journal, 0, -1)
            for entry in map(Entry.decode, journal):
                kind, _, name = entry.account.partition(":")
                if kind == "mint":
                    minted[name] = minted.get(name, 0) + entry.amount
                else:
                    sink = name if kind == "sink" else entry.account
                    burned[sink] = burned.get(sink, 0) - entry.amount
    assert minted["grant"] == 0 and minted["order"] == 900 and minted["signin"] == 10
    assert burned["redeem"] == 100 and burned["clawback"] > 0
    for source, coins in minted.items():
        assert value(samples, "manor_coins_minted_total", source=source) == coins
    for sink, coins in burned.items():
        assert value(samples, "manor_coins_burned_total", sink=sink) == coins
    # The ripe crop and both holds' timeouts (a posted hold's timer stays, then does nothing).
    assert value(samples, "manor_timers_pending") == 3 == await live.manor.timers.pending()
    assert value(samples, "manor_outbox_in_flight") == 1
    assert value(samples, "manor_sockets") == 0
    assert value(samples, "manor_requests_total", op="admin.reverse", outcome="ok") == 1

    clock.advance(900_000 + 1234)  # the holds time out, 1234 ms late
    report = await live.manor.timers.tick(clock.now_ms())
    assert report.fired >= 2 and report.failed == 0
    after = await scrape(http)
    assert value(after, "manor_timers_fired_total") == report.fired
    assert value(after, "manor_timers_pending") == 3 - report.fired
    assert value(after, "manor_timers_late_ms_max") == report.late_ms_max >= 1234


async def test_the_polling_jobs_count_the_buckets_they_read(
    api: tuple[Live, httpx.AsyncClient], clock: FrozenClock
) -> None:
    """Every pass of the timers and of the outbox relay reads each bucket once, due or not:
    their fixed load on the store (the bench leaves it out of a request's commands)."""
    live, http = api
    assert value(await scrape(http), "manor_job_polls_total", job="timers") == 0
    await live.manor.timers.tick(clock.now_ms())
    await live.manor.timers.tick(clock.now_ms())
    await live.manor.relay.run(clock.now_ms())
    samples = await scrape(http)
    assert value(samples, "manor_job_polls_total", job="timers") == 2 * BUCKETS
    assert value(samples, "manor_job_polls_total", job="outbox") == BUCKETS


async def test_a_metrics_key_guards_the_scrape(
    redis: Redis, redis_server: EmbeddedStore, tmp_path: Path
) -> None:
    async with (
        serve(redis_server.url, tmp_path, metrics_key=SCRAPER) as live,
        httpx.AsyncClient(base_url=live.http) as http,
    ):
        refused = await http.get("/metrics")
        assert refused.status_code == 401
        samples = await scrape(http, authorization=f"Bearer {SCRAPER}")
        assert value(samples, "manor_sockets") == 0
