"""The journal a page at a time after compaction archived its head: the WebSocket `ledger`
op and the admin player view read it through one compaction-aware reader."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from server.clock import FrozenClock
from server.ledger.commit import Commit, apply
from server.ledger.compaction import DAY_MS, compact
from server.ledger.ledger import Transfer
from server.store.embedded import EmbeddedStore
from server.store.keys import PlayerKeys
from server.store.store import Store
from tests.live import Live, serve

ADMIN = "admin-key-0123456789-abcdefghijklmnopqr"
BATCH = date(2027, 12, 31)


async def seed(store: Store, player: str, now_ms: int, old: int, new: int) -> None:
    """`old` credits 200 days ago (archived by a compaction), `new` ones a day ago."""
    keys = PlayerKeys(player)
    stamps = [now_ms - 200 * DAY_MS + n for n in range(old)]
    stamps += [now_ms - DAY_MS + n for n in range(new)]
    for n, ts_ms in enumerate(stamps):
        credit = Transfer(f"c:{n}", "c", n + 1, "mint:grant", BATCH)
        assert (await apply(store, keys, Commit(transfers=[credit]), ts_ms)).status == "ok"


@pytest.fixture
async def compacted(
    store: Store, redis_server: EmbeddedStore, tmp_path: Path, clock: FrozenClock
) -> AsyncIterator[Live]:
    """ada: seqs 1..6 archived, 7..8 live. The server and the compaction share the store."""
    await seed(store, "ada", clock.now_ms(), 6, 2)
    report = await compact(store, tmp_path / "archive", clock.now_ms())
    assert (report.entries, report.problems) == (6, [])
    async with serve(redis_server.url, tmp_path / "data", clock, admin_key=ADMIN) as live:
        yield live


async def test_ledger_op_pages_stop_at_the_archive(compacted: Live) -> None:
    client = await compacted.connect("ada")
    page = await client.call("ledger", limit=3)
    assert [e["seq"] for e in page["entries"]] == [8, 7]
    assert (page["next_before_seq"], page["archived_through_seq"]) == (None, 6)
    one = await client.call("ledger", limit=1)
    assert [e["seq"] for e in one["entries"]] == [8]
    assert (one["next_before_seq"], one["archived_through_seq"]) == (8, 6)
    older = await client.call("ledger", limit=1, before_seq=one["next_before_seq"])
    assert [e["seq"] for e in older["entries"]] == [7]
    assert older["next_before_seq"] is None  # seq 6 and older are in the archive files
    archived = await client.call("ledger", limit=5, before_seq=5)
    assert (archived["entries"], archived["next_before_seq"]) == ([], None)
    await client.close()


async def test_the_admin_view_reads_the_same_pages(compacted: Live) -> None:
    client = await compacted.connect("ada")
    async with httpx.AsyncClient(base_url=compacted.http) as http:
        for limit, before in ((3, None), (1, None), (1, 8), (5, 5)):
            query = f"?limit={limit}" + (f"&before_seq={before}" if before else "")
            view = await http.get(
                f"/v1/admin/players/ada{query}", headers={"Authorization": f"Bearer {ADMIN}"}
            )
            assert view.status_code == 200, view.text
            args = {"limit": limit} | ({"before_seq": before} if before else {})
            assert view.json()["journal"] == await client.call("ledger", **args)
    await client.close()


async def test_a_player_without_compaction_pages_from_seq_1(live: Live) -> None:
    client = await live.connect("bo")
    await client.call("sign_in")
    page = await client.call("ledger")
    assert [e["seq"] for e in page["entries"]] == [1]
    assert (page["next_before_seq"], page["archived_through_seq"]) == (None, 0)
    empty = await (await live.connect("nobody")).call("ledger")
    assert empty == {"entries": [], "next_before_seq": None, "archived_through_seq": 0}
    await client.close()


async def test_a_journal_that_keeps_moving_is_busy(store: Store, redis: Redis) -> None:
    from server.ledger.journal_page import JournalBusy, journal_page

    await seed(store, "cy", 1_795_000_000_000, 0, 3)
    keys = PlayerKeys("cy")
    await redis.hset(keys.state, "seq", 9)  # the wallet runs ahead of the list, for ever
    with pytest.raises(JournalBusy):
        await journal_page(store, keys, 3, None)
