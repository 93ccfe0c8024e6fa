"""The server's web routes (server/web/routes.py) and the console's JSON sources: the
landing page, /play and /console, static files, POST /dev/login on and off, GET
/v1/admin/system, and what a rules reload reports as changed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from server.admin.changes import CHANGES_MAX, rules_changes
from server.auth import verify_token
from server.clock import FrozenClock
from server.jobs.dead_letters import dead_letter_stream
from server.jobs.relay import GROUP
from server.store.embedded import EmbeddedStore
from server.store.keys import trigger_stream
from tests.live import SECRET, Live, serve

ADMIN = "admin-key-0123456789-abcdefghijklmnopqr"
DEFAULT_RULES = Path(__file__).parent.parent / "game_rules" / "default.toml"


@pytest.fixture
async def web(
    redis: Redis, redis_server: EmbeddedStore, tmp_path: Path, clock: FrozenClock
) -> AsyncIterator[tuple[Live, httpx.AsyncClient]]:
    rules = tmp_path / "rules.toml"
    rules.write_text(DEFAULT_RULES.read_text("utf-8"), "utf-8")
    async with (
        serve(
            redis_server.url, tmp_path, clock, dev_login=True, admin_key=ADMIN, rules=str(rules)
        ) as live,
        httpx.AsyncClient(base_url=live.http) as http,
    ):
        yield live, http


async def test_landing_links_both_pages_and_console_is_served(
    web: tuple[Live, httpx.AsyncClient],
) -> None:
    _, http = web
    landing = await http.get("/")
    assert landing.status_code == 200 and 'href="/play"' in landing.text
    assert 'href="/console"' in landing.text
    console = await http.get("/console")
    assert console.status_code == 200 and console.headers["content-type"].startswith("text/html")
    assert 'data-test="console-key"' in console.text
    script = await http.get("/static/console.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert (await http.get("/static/nope.js")).status_code == 404


async def test_dev_login_mints_a_token_the_server_accepts(
    web: tuple[Live, httpx.AsyncClient],
) -> None:
    live, http = web
    assert (await http.get("/dev/login")).json() == {"enabled": True}
    reply = await http.post("/dev/login", json={"player": "alice.w-1"})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["player"] == "alice.w-1"
    assert verify_token(SECRET, body["token"]) == "alice.w-1"
    from server.client import ManorClient

    client = await ManorClient.connect(live.url, body["token"])
    try:
        assert (await client.call("sign_in"))["coins"] > 0
    finally:
        await client.close()


@pytest.mark.parametrize(
    "body",
    [
        {"player": ""},
        {"player": "a b"},
        {"player": "x" * 65},
        {"player": 5},
        {"name": "alice"},
        {"player": "alice", "extra": 1},
        "alice",
    ],
)
async def test_dev_login_refuses_bad_names(web: tuple[Live, httpx.AsyncClient], body: Any) -> None:
    _, http = web
    reply = await http.post("/dev/login", json=body)
    assert reply.status_code == 400
    assert reply.json()["error"]["code"] == "BAD_ARGS"
    raw = await http.post("/dev/login", content=b"{not json")
    assert raw.status_code == 400 and raw.json()["error"]["code"] == "BAD_ARGS"


async def test_dev_login_is_off_by_default(
    redis: Redis, redis_server: EmbeddedStore, tmp_path: Path
) -> None:
    async with (
        serve(redis_server.url, tmp_path) as live,
        httpx.AsyncClient(base_url=live.http) as http,
    ):
        reply = await http.post("/dev/login", json={"player": "alice"})
        assert reply.status_code == 403
        assert reply.json()["error"]["code"] == "DEV_LOGIN_OFF"
        assert (await http.get("/dev/login")).json() == {"enabled": False}


async def test_system_counts_requests_coins_and_trigger_backlog(
    web: tuple[Live, httpx.AsyncClient], redis: Redis
) -> None:
    live, http = web
    a = {"Authorization": f"Bearer {ADMIN}"}
    assert (await http.get("/v1/admin/system")).status_code == 401
    gift = {"player": "ann", "coins": 70, "reason": "test", "grant_id": "g1"}
    assert (await http.post("/v1/admin/grant", json=gift, headers=a)).status_code == 200
    bad = {**gift, "coins": 71}
    assert (await http.post("/v1/admin/grant", json=bad, headers=a)).status_code == 409
    # Triggers: 3 in partition 0, read by the gateway's group and 1 acknowledged; 2 in
    # partition 1 that no group reads yet; 1 dead letter.
    zero, one = trigger_stream(0), trigger_stream(1)
    ids = [await redis.xadd(zero, {"player": "p", "kind": "ripe"}) for _ in range(3)]
    await redis.xgroup_create(zero, GROUP, "0")
    await redis.xreadgroup(GROUP, "c", {zero: ">"}, count=2)
    await redis.xack(zero, GROUP, ids[0])
    for _ in range(2):
        await redis.xadd(one, {"player": "q", "kind": "ripe"})
    await redis.xadd(dead_letter_stream(one), {"id": "1-0", "reason": "failed"})
    figures = (await http.get("/v1/admin/system", headers=a)).json()
    assert figures["coins"]["minted"] == {"grant": 70}
    assert figures["requests"]["admin.grant"] == {"ok": 1, "TRANSFER_MISMATCH": 1}
    assert figures["triggers"] == {"entries": 5, "backlog": 2 + 2, "dead_letters": 1}
    assert figures["sockets"] == 0 and figures["timers"]["pending"] >= 0
    assert figures["now_ms"] == live.manor.clock.now_ms()


async def test_reload_lists_what_changed(
    web: tuple[Live, httpx.AsyncClient], tmp_path: Path
) -> None:
    _, http = web
    a = {"Authorization": f"Bearer {ADMIN}"}
    text = DEFAULT_RULES.read_text("utf-8")
    water = 'mode = "share"\nshare_pct = 10'
    assert water in text
    changed = text.replace('"2026.11-default"', '"2026.12-web"').replace(
        water, water.replace("10", "20")
    )
    (tmp_path / "rules.toml").write_text(changed, "utf-8")
    done = (await http.post("/v1/admin/rules/reload", headers=a)).json()
    assert done["changes"] == [
        "version: '2026.11-default' -> '2026.12-web'",
        "farm.water.share_pct: 10 -> 20",
    ]
    again = (await http.post("/v1/admin/rules/reload", headers=a)).json()
    assert (again["changed"], again["changes"]) == (False, [])


def test_changes_are_capped() -> None:
    old = {f"k{i:03}": i for i in range(CHANGES_MAX * 2)}
    new = {k: v + 1 for k, v in old.items()}
    lines = rules_changes(old, new)
    assert len(lines) == CHANGES_MAX
    assert lines[0] == "k000: 0 -> 1" and lines[-1] == f"... and {CHANGES_MAX + 1} more"
