"""The finance report: pure sums with date edges in Asia/Shanghai, then a known ledger on a
real server, live and after compaction, and the CLI's CSV."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest
from redis.asyncio import Redis

from server.ledger.commit import Commit, HoldOp, apply
from server.ledger.compaction import DAY_MS, compact
from server.ledger.finance import (
    Flow,
    Holdings,
    Source,
    day_range_ms,
    flows,
    kind_of,
    ledger_entries,
    write_report,
)
from server.ledger.ledger import Entry, Transfer
from server.store.embedded import EmbeddedStore
from server.store.keys import PlayerKeys
from server.store.store import Store, connect
from tests.conftest import SHANGHAI, client_for, shanghai_ms

BATCH = date(2027, 12, 31)
DAY1, DAY2 = date(2026, 3, 1), date(2026, 3, 2)


def entry(ts_ms: int, account: str, amount: int) -> Entry:
    return Entry(1, ts_ms, "t", account, amount, 0, (), "", "", b"")


@pytest.mark.parametrize(
    ("account", "amount", "kind"),
    [
        ("mint:signin", 10, "issued"),
        ("mint:exchange", 10, "issued"),
        ("mint:grant", -10, "reversed"),
        ("sink:redeem", -10, "spent"),
        ("sink:redeem", 10, "credited"),
        ("sink:expire", -10, "expired"),
        ("clawback", -10, "clawed_back"),
        ("odd", -10, "debited"),
    ],
)
def test_kind_of_names_each_posting(account: str, amount: int, kind: str) -> None:
    assert kind_of(account, amount) == kind


def test_day_range_is_local_midnight_to_midnight_in_shanghai() -> None:
    start_ms, end_ms = day_range_ms(DAY1, DAY2, SHANGHAI)
    assert start_ms == shanghai_ms("2026-03-01T00:00:00")  # 2026-02-28 16:00 UTC
    assert end_ms == shanghai_ms("2026-03-03T00:00:00")
    with pytest.raises(ValueError, match="before"):
        day_range_ms(DAY2, DAY1, SHANGHAI)


def test_flows_count_the_edges_of_the_range() -> None:
    start_ms, end_ms = day_range_ms(DAY1, DAY1, SHANGHAI)
    entries = [
        entry(start_ms - 1, "mint:signin", 99),  # 23:59:59.999 the day before: out
        entry(start_ms, "mint:signin", 10),  # 00:00 local: in
        entry(end_ms - 1, "mint:harvest", 30),  # last ms of the day: in
        entry(end_ms, "sink:redeem", -15),  # 00:00 the next day: out
        entry(start_ms + 5, "mint:signin", 5),
        entry(start_ms + 6, "sink:redeem", -4),
    ]
    rows = flows((("p", e) for e in entries), start_ms, end_ms)
    assert rows == [
        Flow("mint:harvest", "issued", 1, 30),
        Flow("mint:signin", "issued", 2, 15),
        Flow("sink:redeem", "spent", 1, 4),
    ]
    out = io.StringIO()
    write_report(out, rows, Holdings(3, 100, 20, 7))
    lines = list(csv.reader(io.StringIO(out.getvalue())))
    assert lines[0] == ["section", "account", "kind", "entries", "coins"]
    assert ["total", "", "issued", "3", "45"] in lines
    assert ["total", "", "expired", "0", "0"] in lines
    assert lines[-3:] == [
        ["now", "", "outstanding", "3", "100"],
        ["now", "", "held", "3", "20"],
        ["now", "", "debt", "3", "7"],
    ]


def credit(tid: str, coins: int, source: str) -> Transfer:
    return Transfer(tid, "c", coins, f"mint:{source}", BATCH)


def debit(tid: str, coins: int, account: str) -> Transfer:
    return Transfer(tid, "d", coins, account)


async def known_ledger(store: Store) -> None:
    """Day 1 and day 2 of March 2026 in Shanghai, plus 23:59 on the last day of February."""
    eve = shanghai_ms("2026-02-28T23:59:59")
    one = shanghai_ms("2026-03-01T00:00:00")
    two = shanghai_ms("2026-03-02T23:59:59")
    ada, ben = PlayerKeys("ada"), PlayerKeys("ben")
    steps = [
        (ada, Commit(transfers=[credit("s0", 7, "signin")]), eve),
        (ada, Commit(transfers=[credit("s1", 10, "signin"), credit("h1", 30, "harvest")]), one),
        (ada, Commit(transfers=[debit("r1", 15, "sink:redeem")]), one + 1),
        (ben, Commit(transfers=[credit("g1", 100, "grant"), credit("o1", 8, "order")]), one),
        (ben, Commit(transfers=[debit("c1", 8, "clawback")], debt_add=2), two),
        (ben, Commit(holds=[HoldOp("reserve", "k1", 40, two + DAY_MS)]), two),
    ]
    for keys, commit, at_ms in steps:
        assert (await apply(store, keys, commit, at_ms)).status == "ok"
    store.today_of = lambda now_ms: 20280101  # everything ada holds has expired
    assert (await apply(store, ada, Commit(), two)).status == "ok"
    store.today_of = lambda now_ms: 0
    day_three = Commit(transfers=[credit("w1", 3, "water")])  # 00:00:00.000 of day 3: out
    assert (await apply(store, ada, day_three, two + 1000)).status == "ok"


async def report(redis: Redis, archives: Path | None, first: date, last: date) -> list[Flow]:
    source = Source()
    pairs = [pair async for pair in ledger_entries(redis, archives, source)]
    return flows(pairs, *day_range_ms(first, last, SHANGHAI))


EXPECTED = [
    Flow("clawback", "clawed_back", 1, 8),
    Flow("mint:grant", "issued", 1, 100),
    Flow("mint:harvest", "issued", 1, 30),
    Flow("mint:order", "issued", 1, 8),
    Flow("mint:signin", "issued", 1, 10),
    Flow("sink:expire", "expired", 1, 32),  # 7 + 10 + 30 - 15 on day 2
    Flow("sink:redeem", "spent", 1, 15),
]


async def test_finance_report_of_a_known_ledger(store: Store, redis: Redis, tmp_path: Path) -> None:
    await known_ledger(store)
    assert await report(redis, None, DAY1, DAY2) == EXPECTED
    day_one = await report(redis, None, DAY1, DAY1)
    assert [(f.account, f.coins) for f in day_one] == [
        ("mint:grant", 100),
        ("mint:harvest", 30),
        ("mint:order", 8),
        ("mint:signin", 10),
        ("sink:redeem", 15),
    ]
    source = Source()
    _ = [pair async for pair in ledger_entries(redis, None, source)]
    assert source.now == Holdings(players=2, outstanding=3 + 100, held=40, debt=2)
    # Past the hold's expiry it is void, though no commit has written that yet.
    lapsed = Source()
    past_ms = shanghai_ms("2026-03-03T23:59:59") + 1
    _ = [pair async for pair in ledger_entries(redis, None, lapsed, now_ms=past_ms)]
    assert lapsed.now == Holdings(players=2, outstanding=3 + 100, held=0, debt=2)
    # Compacted: the same numbers with the archives; without them the old part is missed.
    done = await compact(store, tmp_path, shanghai_ms("2026-03-02T23:59:59") + 500 + 90 * DAY_MS)
    assert done.entries == 8 and not done.problems
    assert await report(redis, tmp_path, DAY1, DAY2) == EXPECTED
    source = Source()
    live = [pair async for pair in ledger_entries(redis, None, source)]
    assert source.checkpoints_unread == 2 and len(live) == 1


def test_cli_report_finance_writes_the_csv(redis_server: EmbeddedStore, tmp_path: Path) -> None:
    async def build() -> None:
        client = client_for(redis_server.url)
        await client.flushall()
        store = Store(connect(redis_server.url))
        await store.load_scripts()
        await known_ledger(store)
        await store.close()
        await client.aclose()

    asyncio.run(build())
    env = {k: v for k, v in os.environ.items() if not k.startswith("MANOR_")}
    env |= {"MANOR_REDIS_URL": redis_server.url, "MANOR_DATA_DIR": str(tmp_path)}
    out = tmp_path / "finance.csv"
    args = ["report", "finance", "--from", "2026-03-01", "--to", "2026-03-02", "--out", str(out)]
    done = subprocess.run(
        [sys.executable, "-m", "server.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = list(csv.reader(io.StringIO(out.read_text())))
    assert ["flow", "sink:expire", "expired", "1", "32"] in lines
    assert ["total", "", "issued", "4", "148"] in lines
    assert ["now", "", "outstanding", "2", "103"] in lines
