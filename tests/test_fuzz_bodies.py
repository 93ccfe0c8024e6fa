"""A seeded fuzzer of platform and admin HTTP bodies against a real server and store.

Valid bodies of every endpoint, mutated (wrong types, nulls, huge ints and strings, nested
values, unknown or missing fields, bytes flipped, deep nesting, lone surrogates, not
UTF-8), are POSTed one at a time. Every answer is 2xx, or 4xx JSON whose code is in the
docs' error table (docs/platform.md, docs/admin.md); never 5xx; and a refused body changed
nothing in the store. MANOR_FUZZ_BODIES (default 600) sets how many; MANOR_FUZZ_SEED the seed.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from redis.asyncio import Redis

from server.clock import FrozenClock
from server.store.embedded import EmbeddedStore
from tests.fuzz import digest, documented_codes, nasty, nested
from tests.live import Live, serve

BODIES = int(os.environ.get("MANOR_FUZZ_BODIES", "600"))
SEED = int(os.environ.get("MANOR_FUZZ_SEED", "20261123"))
PLATFORM_CODES = documented_codes("platform.md", 1)
ADMIN_CODES = documented_codes("admin.md", 1)
PLATFORM = "platform-key-0123456789-abcdefghijklmnop"
ADMIN = "admin-key-0123456789-abcdefghijklmnopqr"

ITEM = {"item_id": "i0", "paid_fen": 5000}
TEMPLATES: list[tuple[str, dict[str, Any]]] = [
    ("platform/friends", {"edges": [{"a": "ann", "b": "bob"}]}),
    ("platform/orders/paid", {"player": "ann", "order_id": "o1", "items": [ITEM]}),
    (
        "platform/orders/refund",
        {
            "player": "ann",
            "order_id": "o1",
            "refund_id": "r1",
            "items": [{"item_id": "i0", "refunded_fen": 100}],
        },
    ),
    ("platform/reviews", {"player": "ann", "review_id": "rv1", "order_paid_fen": 100}),
    ("platform/checkout/quote", {"player": "ann", "order_fen": 1000}),
    (
        "platform/checkout/reserve",
        {"player": "ann", "order_id": "c1", "order_fen": 1000, "coins": 10},
    ),
    ("platform/checkout/post", {"player": "ann", "order_id": "c1"}),
    ("platform/checkout/void", {"player": "ann", "order_id": "c1"}),
    (
        "platform/exchange",
        {"player": "ann", "partner": "china_mobile", "txn_id": "t1", "points": 10},
    ),
    ("admin/grant", {"player": "ann", "coins": 5, "reason": "fuzz", "grant_id": "g1"}),
    ("admin/reverse", {"player": "ann", "transfer_id": "grant:g1", "reason": "fuzz"}),
    ("admin/rules/validate", {"toml": 'version = "x"'}),
]


class BodyFuzzer:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def mutate_value(self, value: Any) -> Any:
        rng = self.rng
        if isinstance(value, dict) and value and rng.random() < 0.5:
            out = dict(value)
            out[rng.choice(list(out))] = self.mutate_value(rng.choice(list(out.values())))
            return out
        if isinstance(value, list) and value and rng.random() < 0.5:
            return [self.mutate_value(v) for v in value] * rng.choice((1, 1, 2, 300))
        return nasty(rng, binary=False)

    def body(self) -> tuple[str, bytes]:
        rng = self.rng
        path, template = rng.choice(TEMPLATES)
        body: Any = json.loads(json.dumps(template))
        roll = rng.random()
        if roll < 0.1:
            pass  # valid as it is
        elif roll < 0.6:
            for _ in range(rng.choice((1, 1, 2, 3))):
                kind = rng.randrange(7)
                if kind <= 2 and isinstance(body, dict) and body:
                    key = rng.choice(list(body))
                    body[key] = self.mutate_value(body[key])
                elif kind == 3 and isinstance(body, dict) and body:
                    body.pop(rng.choice(list(body)))
                elif kind == 4 and isinstance(body, dict):
                    body[rng.choice(["extra", "PLAYER", "id", "toml"])] = nasty(rng, False)
                elif kind == 5:
                    body = nasty(rng, False)
                else:
                    body = {"x": nested(rng, rng.randint(10, 3000))}
        else:
            return path, self.raw(body)
        try:
            return path, json.dumps(body).encode()
        except (ValueError, TypeError, RecursionError):
            return path, b"{"

    def raw(self, body: Any) -> bytes:
        rng = self.rng
        text = json.dumps(body)
        kind = rng.randrange(8)
        if kind == 0:
            return b"[" * rng.randint(900, 5000) + b"]" * rng.randint(0, 5000)
        if kind == 1:
            at = rng.randrange(len(text) + 1)
            return (
                text[:at] + rng.choice(["\\ud800", "\\udfff", '"\\udc00"', "\\u0000"]) + text[at:]
            ).encode()
        if kind == 2:
            return text.encode("utf-16") if rng.random() < 0.5 else b"\xff\xfe\xfa" + text.encode()
        if kind == 3:
            return text.replace('"ann"', '"' + "a" * rng.randint(60, 70_000) + '"').encode()
        if kind == 4:
            return b""
        data = bytearray(text.encode())
        for _ in range(rng.randint(1, 4)):
            if data:
                data[rng.randrange(len(data))] = rng.randrange(256)
        return bytes(data)

    def lookup(self) -> str:
        """A GET of the player view with a mutated path and query."""
        rng = self.rng
        player = rng.choice(["ann", "", "a" * 65, "a b", "é", "%ff", "..", "ann;x", "%00"])
        query = []
        for name in ("limit", "before_seq", "x"):
            if rng.random() < 0.5:
                value = rng.choice(["", "0", "1", "-1", "1.5", "9" * 30, "null", "%ff", "abc"])
                query.append(f"{name}={value}")
        path = "/v1/admin/players/" + (player if "%" in player else quote(player, safe=""))
        return path + ("?" + "&".join(query) if query else "")


@pytest.fixture
async def api(
    redis: Redis, redis_server: EmbeddedStore, tmp_path: Path, clock: FrozenClock
) -> AsyncIterator[tuple[Live, httpx.AsyncClient]]:
    async with (
        serve(redis_server.url, tmp_path, clock, admin_key=ADMIN, platform_key=PLATFORM) as live,
        httpx.AsyncClient(base_url=live.http, timeout=30) as http,
    ):
        yield live, http


async def test_fuzzed_bodies_get_documented_4xx_and_change_nothing(
    api: tuple[Live, httpx.AsyncClient], redis: Redis
) -> None:
    assert "BAD_ARGS" in PLATFORM_CODES and "STORE_UNAVAILABLE" in ADMIN_CODES
    _, http = api
    fuzzer = BodyFuzzer(random.Random(SEED))
    outcomes: Counter[str] = Counter()
    started = time.monotonic()
    before = await digest(redis)
    for n in range(BODIES):
        if n % 10 == 9:
            url = fuzzer.lookup()
            response = await http.get(url, headers={"Authorization": f"Bearer {ADMIN}"})
            codes, sent = ADMIN_CODES, url.encode()
        else:
            path, body = fuzzer.body()
            key = ADMIN if path.startswith("admin/") else PLATFORM
            headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
            response = await http.post(f"/v1/{path}", content=body, headers=headers)
            codes = ADMIN_CODES if path.startswith("admin/") else PLATFORM_CODES
            sent = path.encode() + b" " + body
        answer = f"{response.status_code} {response.text[:300]}"
        context = f"body {n} (seed {SEED}): {sent[:300]!r} -> {answer}"
        assert response.status_code < 500, context
        if response.status_code == 404 and not response.headers["content-type"].startswith(
            "application/json"
        ):
            outcomes["HTTP_404"] += 1  # a path no route matches (an empty player): Starlette's
            continue
        assert response.headers["content-type"].startswith("application/json"), context
        if response.status_code < 300:
            outcomes["ok"] += 1
            before = await digest(redis)
            continue
        code = response.json()["error"]["code"]
        outcomes[code] += 1
        assert code in codes, context
        after = await digest(redis)
        assert after == before, f"a refused body changed the store: {context}"
    elapsed_s = time.monotonic() - started
    print(
        f"\nfuzz bodies: {BODIES} sent (seed {SEED}) in {elapsed_s:.1f} s; "
        f"answers: {dict(outcomes.most_common())}"
    )
