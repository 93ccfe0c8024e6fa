"""The operators' HTTP API end to end: real HTTP, a real store, the books checked after each."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import msgpack
import pytest
from redis.asyncio import Redis

from game_rules import business_day
from server.clock import FrozenClock
from server.ledger.ledger import Wallet, advance, batch_int
from server.ledger.verify import live_entries, verify
from server.rulebook import read_rules
from server.store.embedded import EmbeddedStore
from server.store.keys import PlayerKeys
from tests.live import Live, serve

ADMIN = "admin-key-0123456789-abcdefghijklmnopqr"
PLATFORM = "platform-key-0123456789-abcdefghijklmnop"
RELOAD_WAIT_S_MAX = 5.0


def put(path: Path, text: str | None) -> None:
    """Write (or with None, remove) a rules file; tiny, so fine inside a test's loop."""
    if text is None:
        path.unlink()
    else:
        path.write_text(text, "utf-8")


def default_rules_text() -> str:
    return (Path(__file__).parent.parent / "game_rules" / "default.toml").read_text("utf-8")


@pytest.fixture
def rules_file(tmp_path: Path) -> Path:
    path = tmp_path / "rules.toml"
    path.write_text(default_rules_text(), "utf-8")
    return path


@pytest.fixture
async def api(
    redis: Redis, redis_server: EmbeddedStore, tmp_path: Path, clock: FrozenClock, rules_file: Path
) -> AsyncIterator[tuple[Live, httpx.AsyncClient]]:
    async with serve(
        redis_server.url,
        tmp_path,
        clock,
        admin_key=ADMIN,
        platform_key=PLATFORM,
        rules=str(rules_file),
    ) as live:
        headers = {"Authorization": f"Bearer {ADMIN}"}
        async with httpx.AsyncClient(base_url=live.http, headers=headers) as http:
            yield live, http
    report = await verify(redis)
    assert report.ok, report.problems  # after every scenario the books balance


async def post(http: httpx.AsyncClient, path: str, status: int = 200, **body: Any) -> Any:
    response = await http.post(f"/v1/admin/{path}", json=body)
    assert response.status_code == status, response.text
    return response.json()


async def platform(http: httpx.AsyncClient, path: str, **body: Any) -> Any:
    response = await http.post(
        f"/v1/platform/{path}", json=body, headers={"Authorization": f"Bearer {PLATFORM}"}
    )
    assert response.status_code == 200, response.text
    return response.json()


async def look(http: httpx.AsyncClient, player: str, status: int = 200, **query: Any) -> Any:
    response = await http.get(f"/v1/admin/players/{player}", params=query)
    assert response.status_code == status, response.text
    return response.json()


async def grant(http: httpx.AsyncClient, player: str, grant_id: str, coins: int) -> Any:
    return await post(http, "grant", player=player, coins=coins, reason="sorry", grant_id=grant_id)


async def test_admin_keys_disabled_wrong_and_right(
    redis: Redis, redis_server: EmbeddedStore, tmp_path: Path
) -> None:
    async with serve(redis_server.url, tmp_path) as off, httpx.AsyncClient() as http:
        got = await http.get(f"{off.http}/v1/admin/rules")
        assert got.status_code == 403 and got.json()["error"]["code"] == "ADMIN_DISABLED"
    async with (
        serve(redis_server.url, tmp_path, admin_key=ADMIN) as on,
        httpx.AsyncClient(base_url=on.http) as http,
    ):
        wrong = await http.get("/v1/admin/rules", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "UNAUTHORIZED"
        right = await http.get("/v1/admin/rules", headers={"Authorization": f"Bearer {ADMIN}"})
        assert right.status_code == 200 and right.json()["version"] == "2026.11-default"


async def test_grant_credits_todays_batch_and_replays(
    api: tuple[Live, httpx.AsyncClient], redis: Redis
) -> None:
    _, http = api
    first = await grant(http, "ann", "g1", 100)
    assert (first["coins"], first["balance"], first["already"]) == (100, 100, False)
    again = await grant(http, "ann", "g1", 100)
    assert (again["balance"], again["already"]) == (100, True)
    other = await post(http, "grant", 409, player="ann", coins=99, reason="x", grant_id="g1")
    assert other["error"]["code"] == "TRANSFER_MISMATCH"
    bad = await post(http, "grant", 400, player="ann", coins=0, reason="x", grant_id="g2")
    assert bad["error"]["code"] == "BAD_ARGS"
    view = await look(http, "ann")
    assert (view["balance"], view["held"], view["debt"]) == (100, 0, 0)
    assert view["batches"] == [{"expires": "2027-12-31", "coins": 100}]
    [entry] = view["journal"]["entries"]
    assert (entry["transfer_id"], entry["account"], entry["ref"]) == (
        "grant:g1",
        "mint:grant",
        "sorry",
    )
    assert view["verify"] == {"ok": True, "entries": 1, "problems": []}
    assert await redis.hget(PlayerKeys("ann").sys, "mint:grant") == b"-100"


async def test_reverse_a_credit_takes_it_back_once(
    api: tuple[Live, httpx.AsyncClient], redis: Redis
) -> None:
    _, http = api
    await grant(http, "bob", "g1", 100)
    await grant(http, "bob", "g2", 50)
    undone = await post(http, "reverse", player="bob", transfer_id="grant:g1", reason="typo")
    assert undone["reversed"] == "credit"
    assert (undone["moved"], undone["debt_added"], undone["balance"]) == (100, 0, 50)
    replay = await post(http, "reverse", player="bob", transfer_id="grant:g1", reason="typo")
    assert (replay["already"], replay["balance"], replay["moved"]) == (True, 50, 100)
    view = await look(http, "bob")
    newest = view["journal"]["entries"][0]
    assert (newest["transfer_id"], newest["amount"], newest["account"], newest["ref"]) == (
        "reverse:grant:g1",
        -100,
        "mint:grant",
        "typo",
    )
    assert view["verify"]["ok"] and view["balance"] == 50
    assert await redis.hget(PlayerKeys("bob").sys, "mint:grant") == b"-50"
    twice = await post(
        http, "reverse", 409, player="bob", transfer_id="reverse:grant:g1", reason="x"
    )
    assert twice["error"]["code"] == "NOT_REVERSIBLE"
    unknown = await post(http, "reverse", 404, player="bob", transfer_id="grant:zz", reason="x")
    assert unknown["error"]["code"] == "TRANSFER_NOT_FOUND"


async def test_reverse_a_debit_credits_it_back_in_todays_batch(
    api: tuple[Live, httpx.AsyncClient], redis: Redis
) -> None:
    _, http = api
    await grant(http, "cat", "g1", 1000)
    await platform(
        http, "checkout/reserve", player="cat", order_id="c1", order_fen=100_000, coins=400
    )
    posted = await platform(http, "checkout/post", player="cat", order_id="c1")
    assert posted["balance"] == 600
    back = await post(http, "reverse", player="cat", transfer_id="redeem:c1", reason="refunded")
    assert (back["reversed"], back["moved"], back["balance"]) == ("debit", 400, 1000)
    again = await post(http, "reverse", player="cat", transfer_id="redeem:c1", reason="refunded")
    assert again["already"] is True and again["balance"] == 1000
    assert await redis.hget(PlayerKeys("cat").sys, "sink:redeem") == b"0"
    view = await look(http, "cat")
    assert view["verify"]["ok"] and view["batches"] == [{"expires": "2027-12-31", "coins": 1000}]


async def test_reversing_a_spent_credit_books_debt_repaid_by_the_next(
    api: tuple[Live, httpx.AsyncClient],
) -> None:
    _, http = api
    await grant(http, "dan", "g1", 500)
    await platform(
        http, "checkout/reserve", player="dan", order_id="c1", order_fen=100_000, coins=400
    )
    await platform(http, "checkout/post", player="dan", order_id="c1")
    await platform(
        http, "checkout/reserve", player="dan", order_id="c2", order_fen=100_000, coins=50
    )
    undone = await post(http, "reverse", player="dan", transfer_id="grant:g1", reason="fraud")
    # 100 left, 50 of them held by an open checkout: 50 taken, 450 owed.
    assert (undone["moved"], undone["debt_added"], undone["balance"], undone["debt"]) == (
        50,
        450,
        50,
        450,
    )
    repaid = await grant(http, "dan", "g2", 300)
    assert (repaid["balance"], repaid["debt"]) == (50, 150)
    view = await look(http, "dan")
    assert view["verify"]["ok"] and (view["held"], view["available"]) == (50, 0)
    debt_entry = next(e for e in view["journal"]["entries"] if e["transfer_id"] == "debt:grant:g2")
    assert debt_entry["account"] == "clawback"
    refused = await post(
        http, "reverse", 409, player="dan", transfer_id="debt:grant:g2", reason="x"
    )
    assert refused["error"]["code"] == "NOT_REVERSIBLE"
    # Everything taken back and owed: nothing left available, all of it debt.
    nothing = await post(http, "reverse", player="dan", transfer_id="grant:g2", reason="x")
    assert (nothing["moved"], nothing["debt_added"], nothing["debt"]) == (0, 300, 450)


async def test_journal_pages_and_archived_entries(
    api: tuple[Live, httpx.AsyncClient], redis: Redis
) -> None:
    _, http = api
    for n in range(5):
        await grant(http, "eve", f"g{n}", 10 + n)
    page = await look(http, "eve", limit=2)
    assert [e["seq"] for e in page["journal"]["entries"]] == [5, 4]
    older = await look(http, "eve", limit=2, before_seq=page["journal"]["next_before_seq"])
    assert [e["seq"] for e in older["journal"]["entries"]] == [3, 2]
    assert (await look(http, "eve", 400, limit=0))["error"]["code"] == "BAD_ARGS"
    assert (await look(http, "nobody", 404))["error"]["code"] == "PLAYER_NOT_FOUND"
    assert (await look(http, "bad%20id", 400))["error"]["code"] == "BAD_ARGS"
    # Compaction (as server/store/lua/compact.lua does it): the first two entries leave Redis
    # for the archive, the wallet keeps a checkpoint.
    keys = PlayerKeys("eve")
    head = (await live_entries(redis, keys))[:2]
    ck = advance("eve", head, Wallet().checkpoint)
    await redis.hset(
        keys.state,
        mapping={
            "ck_seq": ck.seq,
            "ck_head": ck.head,
            "ck_bal": ck.balance,
            "ck_batches": msgpack.packb(ck.batches),
            "ck_accounts": msgpack.packb(ck.accounts),
        },
    )
    await redis.ltrim(keys.journal, 2, -1)
    view = await look(http, "eve", limit=10)
    assert [e["seq"] for e in view["journal"]["entries"]] == [5, 4, 3]
    assert (view["journal"]["archived_through_seq"], view["journal"]["next_before_seq"]) == (
        2,
        None,
    )
    assert view["verify"]["ok"], view["verify"]
    gone = await post(http, "reverse", 410, player="eve", transfer_id="grant:g1", reason="x")
    assert gone["error"]["code"] == "ENTRY_ARCHIVED"
    live_one = await post(http, "reverse", player="eve", transfer_id="grant:g3", reason="x")
    assert live_one["moved"] == 13


async def test_player_view_shows_sign_in_and_farm(
    api: tuple[Live, httpx.AsyncClient], clock: FrozenClock
) -> None:
    live, http = api
    phone = await live.connect("fay")
    await phone.call("sign_in")
    await phone.call("plant", plot=0, seed="turnip")
    await phone.close()
    view = await look(http, "fay")
    assert view["signin"]["signed_in_today"] is True and view["signin"]["streak"] == 1
    today = business_day(clock.now_ms(), live.manor.rulebook.rules.tz)
    assert view["signin"]["day"] == today.isoformat()
    assert view["farm"]["plots"][0]["seed"] == "turnip"
    assert view["balance"] == 10 and batch_int(today) > 0


async def test_rules_reload_is_all_or_nothing(
    api: tuple[Live, httpx.AsyncClient], rules_file: Path
) -> None:
    live, http = api
    before = (await http.get("/v1/admin/rules")).json()
    assert before["path"] == str(rules_file) and before["timezone"] == "Asia/Shanghai"
    good = default_rules_text()
    put(rules_file, good.replace("[signin]", "[signin]\nbogus = 1") + "\n[nope]\n")
    checked = await post(http, "rules/validate")
    assert checked["ok"] is False and len(checked["problems"]) >= 2
    bad = await post(http, "rules/reload", 422)
    assert bad["error"]["code"] == "RULES_INVALID" and len(bad["error"]["problems"]) >= 2
    assert bad["version"] == before["version"]
    assert (await http.get("/v1/admin/rules")).json() == before
    assert live.manor.rulebook.rules.digest == before["digest"]
    put(rules_file, None)
    missing = await post(http, "rules/reload", 422)
    assert "cannot read" in missing["error"]["problems"][0]
    put(rules_file, good.replace('"2026.11-default"', '"2026.12-test"'))
    assert (await post(http, "rules/validate"))["version"] == "2026.12-test"
    done = await post(http, "rules/reload")
    assert (done["version"], done["previous_version"], done["changed"]) == (
        "2026.12-test",
        before["version"],
        True,
    )
    assert live.manor.rulebook.rules.version == "2026.12-test"
    text = await post(http, "rules/validate", toml='version = "x"\ntimezone = "Mars/Base"\n')
    assert text["ok"] is False and any("timezone" in p for p in text["problems"])
    parsed = await post(http, "rules/validate", toml=good)
    assert parsed["ok"] is True and parsed["version"] == "2026.11-default"
    assert (await post(http, "rules/validate", 400, toml=5))["error"]["code"] == "BAD_ARGS"


async def test_a_reload_reaches_every_process(
    redis: Redis, redis_server: EmbeddedStore, tmp_path: Path, rules_file: Path
) -> None:
    settings = {"admin_key": ADMIN, "rules": str(rules_file)}
    async with (
        serve(redis_server.url, tmp_path, **settings) as one,
        serve(redis_server.url, tmp_path, **settings) as two,
        httpx.AsyncClient(headers={"Authorization": f"Bearer {ADMIN}"}) as http,
    ):
        put(rules_file, default_rules_text().replace('"2026.11-default"', '"2026.12-shared"'))
        done = await http.post(f"{one.http}/v1/admin/rules/reload")
        assert done.status_code == 200 and done.json()["processes_notified"] >= 2
        deadline = time.monotonic() + RELOAD_WAIT_S_MAX
        while two.manor.rulebook.rules.version != "2026.12-shared":
            assert time.monotonic() < deadline, "the other process did not follow"
            await asyncio.sleep(0.02)
        assert read_rules(str(rules_file)).digest == two.manor.rulebook.rules.digest
