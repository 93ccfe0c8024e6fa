"""The OpenAPI document: valid OpenAPI 3.1, and every live answer matches it.

Real requests to a real server, for every platform and admin endpoint and the health
checks; each JSON answer is validated against the document's schema for its status, and
each endpoint is seen answering at least one success and one error.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from redis.asyncio import Redis

from server.admin.openapi import document
from server.clock import FrozenClock
from server.store.embedded import EmbeddedStore
from tests.live import Live, serve

ADMIN = "admin-key-0123456789-abcdefghijklmnopqr"
PLATFORM = "platform-key-0123456789-abcdefghijklmnop"
ORDERS_ONLY = "orders-key-0123456789-abcdefghijklmnopq"


def broken(path: Path) -> None:
    path.write_text("version = [", "utf-8")


def resolve(node: Any, doc: dict[str, Any]) -> Any:
    """Inline `#/components/...` references so jsonschema needs no registry."""
    if isinstance(node, dict):
        if "$ref" in node:
            target: Any = doc
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            return resolve(target, doc)
        return {k: resolve(v, doc) for k, v in node.items()}
    if isinstance(node, list):
        return [resolve(v, doc) for v in node]
    return node


class Checker:
    """Calls the live server and checks each exchange against the served document."""

    def __init__(self, http: httpx.AsyncClient, doc: dict[str, Any]) -> None:
        self.http = http
        self.doc = doc
        self.seen: dict[tuple[str, str], set[int]] = {}

    def operation(self, method: str, template: str) -> dict[str, Any]:
        op: dict[str, Any] = self.doc["paths"][template][method]
        return op

    async def call(
        self,
        method: str,
        template: str,
        status: int,
        body: Any = None,
        headers: dict[str, str] | None = None,
        **params: str,
    ) -> Any:
        path = template.format(**params) if "{" in template else template
        query = {k: v for k, v in params.items() if "{" + k + "}" not in template}
        response = await self.http.request(
            method.upper(), path, json=body, headers=headers, params=query
        )
        assert response.status_code == status, response.text
        op = self.operation(method, template)
        responses = op["responses"]
        assert str(status) in responses, f"{method} {template}: {status} is not documented"
        schema = resolve(responses[str(status)]["content"]["application/json"]["schema"], self.doc)
        payload = response.json()
        Draft202012Validator(schema).validate(payload)
        if status == 200 and "requestBody" in op and body is not None:
            request_schema = op["requestBody"]["content"]["application/json"]["schema"]
            Draft202012Validator(resolve(request_schema, self.doc)).validate(body)
        self.seen.setdefault((method, template), set()).add(status)
        return payload


@pytest.fixture
async def checker(
    redis: Redis, redis_server: EmbeddedStore, tmp_path: Path, clock: FrozenClock
) -> AsyncIterator[tuple[Live, Checker]]:
    rules = tmp_path / "rules.toml"
    rules.write_text(
        (Path(__file__).parent.parent / "game_rules" / "default.toml").read_text("utf-8"), "utf-8"
    )
    async with (
        serve(
            redis_server.url,
            tmp_path,
            clock,
            admin_key=ADMIN,
            platform_key=PLATFORM,
            api_keys=f"shop={ORDERS_ONLY}:orders",
            rules=str(rules),
        ) as live,
        httpx.AsyncClient(base_url=live.http) as http,
    ):
        served = (await http.get("/v1/openapi.json")).json()
        yield live, Checker(http, served)


def test_the_document_is_valid_openapi_3_1() -> None:
    doc = document()
    validate(doc)
    assert doc["openapi"].startswith("3.1")
    operations = [(p, m) for p, item in doc["paths"].items() for m in item]
    assert len(operations) == 12 + 7 + 2  # platform, admin, health


def every_operation_seen(c: Checker, prefix: str) -> None:
    """Each documented operation under `prefix` answered a 200, and (under /v1/) an error."""
    documented = {(m, path) for path, item in c.doc["paths"].items() for m in item}
    wanted = {(m, path) for m, path in documented if path.startswith(prefix)}
    assert wanted == set(c.seen), wanted ^ set(c.seen)
    missing = {
        (m, path): statuses
        for (m, path), statuses in c.seen.items()
        if 200 not in statuses or (path.startswith("/v1/") and max(statuses) < 400)
    }
    assert not missing, missing


async def test_platform_answers_match_the_document(checker: tuple[Live, Checker]) -> None:  # noqa: PLR0915 - one call per endpoint
    live, c = checker
    assert c.doc == document()  # what the server serves is what the module builds
    p = {"Authorization": f"Bearer {PLATFORM}"}
    post = "post"
    friends = "/v1/platform/friends"
    await c.call(post, friends, 200, {"edges": [{"a": "ann", "b": "bob"}]}, p)
    await c.call(post, friends, 400, {"edges": [{"a": "ann", "b": "ann"}]}, p)
    await c.call(post, friends, 401, {"edges": []})
    paid = "/v1/platform/orders/paid"
    items = [{"item_id": "i0", "paid_fen": 10_000}]
    await c.call(post, paid, 200, {"player": "ann", "order_id": "o1", "items": items}, p)
    other = [{"item_id": "i9", "paid_fen": 1}]
    await c.call(post, paid, 409, {"player": "ann", "order_id": "o1", "items": other}, p)
    refund = "/v1/platform/orders/refund"
    lines = [{"item_id": "i0", "refunded_fen": 1000}]
    body = {"player": "ann", "order_id": "o1", "refund_id": "r1", "items": lines}
    await c.call(post, refund, 200, body, p)
    await c.call(post, refund, 404, {**body, "order_id": "o404"}, p)
    await c.call(post, refund, 409, {**body, "items": [{"item_id": "i0", "refunded_fen": 5}]}, p)
    reviews = "/v1/platform/reviews"
    await c.call(post, reviews, 200, {"player": "ann", "review_id": "v1", "order_paid_fen": 9}, p)
    await c.call(post, reviews, 400, {"player": "ann", "review_id": "v2"}, p)
    quote = "/v1/platform/checkout/quote"
    await c.call(post, quote, 200, {"player": "ann", "order_fen": 10_000}, p)
    await c.call(
        post,
        quote,
        403,
        {"player": "ann", "order_fen": 10_000},
        {"Authorization": f"Bearer {ORDERS_ONLY}"},
    )
    reserve = "/v1/platform/checkout/reserve"
    hold = {"player": "ann", "order_id": "c1", "order_fen": 100_000, "coins": 300}
    await c.call(post, reserve, 200, hold, p)
    await c.call(post, reserve, 422, {**hold, "order_id": "c2", "coins": 99_999}, p)
    await c.call(post, reserve, 409, {**hold, "coins": 301}, p)
    settle = {"player": "ann", "order_id": "c1"}
    await c.call(post, "/v1/platform/checkout/post", 200, settle, p)
    await c.call(post, "/v1/platform/checkout/void", 409, settle, p)
    await c.call(post, reserve, 200, {**hold, "order_id": "c3", "coins": 10}, p)
    await c.call(post, "/v1/platform/checkout/void", 200, {**settle, "order_id": "c3"}, p)
    await c.call(post, "/v1/platform/checkout/post", 404, {**settle, "order_id": "nope"}, p)
    exchange = "/v1/platform/exchange"
    trade = {"player": "ann", "partner": "china_mobile", "txn_id": "t1", "points": 10}
    await c.call(post, exchange, 200, trade, p)
    await c.call(post, exchange, 422, {**trade, "txn_id": "t2", "points": 101}, p)
    await c.call(post, exchange, 413, {**trade, "txn_id": "x" * 70_000}, p)
    event = {"player": "ann", "event": "review", "event_id": "g1"}
    other, unknown = {**event, "event": "share"}, {**event, "event": "nope", "event_id": "g2"}
    for status, body in ((200, event), (200, event), (409, other), (422, unknown)):
        await c.call(post, "/v1/platform/growth", status, body, p)  # 200 twice: the replay
    task = "/v1/platform/tasks/done"
    share = {"player": "ann", "task": "share", "event_id": "s1"}
    await c.call(post, task, 200, share, p)
    await c.call(post, task, 200, share, p)  # the replay
    await c.call(post, task, 422, {**share, "task": "nope"}, p)
    await mall_payments(live, c, p)
    every_operation_seen(c, "/v1/platform/")


async def mall_payments(live: Live, c: Checker, p: dict[str, str]) -> None:
    """The coin mall: 3 000 coins + 9.90 yuan held by a WebSocket order, then its payment."""
    lines = [{"item_id": f"m{n}", "paid_fen": 10_000} for n in range(3)]
    body = {"player": "ann", "order_id": "o2", "items": lines}
    await c.call("post", "/v1/platform/orders/paid", 200, body, p)
    async with await live.connect("ann") as ann:
        order = (await ann.call("mall_buy", item="lancome_sample"))["order"]
    payment = "/v1/platform/mall/payment"
    report = {"player": "ann", "order_id": order["order_id"], "payment_id": "p1"}
    await c.call("post", payment, 200, {**report, "result": "failed"}, p)
    await c.call("post", payment, 409, {**report, "result": "paid"}, p)
    await c.call("post", payment, 404, {**report, "order_id": "mo0", "result": "paid"}, p)


async def test_admin_and_health_answers_match_the_document(
    checker: tuple[Live, Checker], tmp_path: Path
) -> None:
    live, c = checker
    a = {"Authorization": f"Bearer {ADMIN}"}
    post = "post"
    await c.call("get", "/healthz", 200)
    await c.call("get", "/readyz", 200)
    items = [{"item_id": "i0", "paid_fen": 10_000}]
    await c.http.post(
        "/v1/platform/orders/paid",
        json={"player": "ann", "order_id": "o1", "items": items},
        headers={"Authorization": f"Bearer {PLATFORM}"},
    )
    player = "/v1/admin/players/{player}"
    await c.call("get", player, 200, headers=a, player="ann", limit="3")
    await c.call("get", player, 404, headers=a, player="nobody")
    await c.call("get", player, 400, headers=a, player="ann", limit="0")
    await c.call("get", player, 401, player="ann")
    grant = "/v1/admin/grant"
    gift = {"player": "ann", "coins": 50, "reason": "goodwill", "grant_id": "g1"}
    await c.call(post, grant, 200, gift, a)
    await c.call(post, grant, 409, {**gift, "coins": 51}, a)
    await c.call(post, grant, 400, {**gift, "extra": True}, a)
    reverse = "/v1/admin/reverse"
    undo = {"player": "ann", "transfer_id": "grant:g1", "reason": "mistake"}
    await c.call(post, reverse, 200, undo, a)
    await c.call(post, reverse, 404, {**undo, "transfer_id": "grant:none"}, a)
    await c.call(post, reverse, 409, {**undo, "transfer_id": "reverse:grant:g1"}, a)
    await c.call("get", "/v1/admin/rules", 200, headers=a)
    await c.call("get", "/v1/admin/rules", 401, headers={"Authorization": "Bearer wrong"})
    validate_path = "/v1/admin/rules/validate"
    await c.call(post, validate_path, 200, headers=a)
    await c.call(post, validate_path, 200, {"toml": "version = 1"}, a)
    await c.call(post, validate_path, 400, {"text": ""}, a)
    reload = "/v1/admin/rules/reload"
    await c.call(post, reload, 200, headers=a)
    broken(tmp_path / "rules.toml")
    await c.call(post, reload, 422, headers=a)
    system = "/v1/admin/system"
    figures = await c.call("get", system, 200, headers=a)
    assert figures["coins"]["minted"]["order"] > 0  # ann's order reward above
    await c.call("get", system, 401)
    assert live.manor.rulebook.rules.version == "2026.11-default"
    c.seen = {k: v for k, v in c.seen.items() if k[1].startswith("/v1/admin/")}
    every_operation_seen(c, "/v1/admin/")


async def test_admin_disabled_answers_match_the_document(
    redis: Redis, redis_server: EmbeddedStore, tmp_path: Path
) -> None:
    async with (
        serve(redis_server.url, tmp_path) as live,
        httpx.AsyncClient(base_url=live.http) as http,
    ):
        c = Checker(http, document())
        await c.call("get", "/v1/admin/rules", 403)
        body = {"player": "ann", "order_fen": 100}
        await c.call("post", "/v1/platform/checkout/quote", 403, body)
