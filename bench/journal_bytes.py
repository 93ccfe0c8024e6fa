"""Phase `journal_bytes`: Redis memory per journal entry, and per player after compaction.

`jb_players` players each sign in on `jb_days` consecutive business days through the real
op path in this process (server.ops' dispatch table, the Store, commit.lua) on a frozen
clock moved one day per round: jb_players x jb_days credited sign-ins, one journal entry
each, on a fresh store: one embedded server, or the cluster's primaries (bench/stores.py).
Then `MEMORY USAGE <key> SAMPLES 0` of every key of every primary (SCAN on each node),
grouped by kind (journal, txids, sys, ...): the ledger's keys summed / entries is
the figure of the target. The player's one hash (`state`) counts with them since layout
2 (server/store/layout.py): the wallet lives in it, beside the rule's fields, which it
charges a few bytes per entry that the wallet's own hash did not. The reply cache (24 h
TTL) and push inbox are shown apart.

Then the compaction as the scheduled job runs it (server/jobs/compactor.py: compact_next
over the whole ring of buckets, on the same clock, one day after the last sign-in), the
per-player hot memory again, and `verify` with the archive must still pass.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any, cast
from zoneinfo import ZoneInfo

from redis.asyncio import Redis

from bench.stores import StoreShape, label, started_store
from bench.verdict import Target
from game_rules import business_day
from server.clock import FrozenClock
from server.ledger import compaction
from server.ledger.ledger import batch_int
from server.ledger.verify import verify
from server.ops import dispatch_table
from server.pipeline import Dispatcher, Services
from server.protocol import Request
from server.rulebook import Rulebook, read_rules
from server.settings import Settings
from server.store.keys import BUCKETS, PlayerKeys
from server.store.store import Store, connect

START = datetime(2026, 1, 5, 10, 0, tzinfo=ZoneInfo("Asia/Shanghai"))  # 10:00, a Monday
DAY_MS = 86_400_000
_SAMPLE = PlayerKeys("p")
REPLY_KIND = _SAMPLE.reply("r").split(":")[3]  # the reply cache's segment, as keys.py names it
# Not the coin ledger: bounded or expiring by themselves, or another book (growth); shown,
# not counted in bytes per entry. Kinds are the keys' last segment (the reply cache's: its
# fourth), taken from keys.py so a renamed key is still classified. The state hash holds
# the wallet (layout 2): it counts.
NOT_LEDGER = frozenset(
    {
        *(k.rsplit(":", 1)[-1] for k in (_SAMPLE.inbox, _SAMPLE.sockets)),
        *(k.rsplit(":", 1)[-1] for k in (_SAMPLE.timers, _SAMPLE.stats, _SAMPLE.outbox)),
        REPLY_KIND,
        "growth",
    }
)
SCAN_COUNT = 1000
TARGET = Target("journal: Redis bytes per entry (ledger keys)", "<=", 64, "B")


async def lengths(length: Callable[[str], Awaitable[int]], keys: list[str]) -> list[int]:
    return [await length(key) for key in keys]


async def memory_by_kind(nodes: list[str], players: set[str]) -> dict[str, dict[str, int]]:
    """{kind: {"bytes", "keys"}} over every key of every node (its primaries' URLs: a key
    lives on one primary); `<kind>@player` for a player's own keys."""
    out: dict[str, dict[str, int]] = defaultdict(lambda: {"bytes": 0, "keys": 0})
    for node in nodes:
        async with Redis.from_url(node) as redis:
            async for raw in redis.scan_iter(count=SCAN_COUNT):
                key = raw.decode()
                parts = key.split(":")
                kind = parts[3] if len(parts) > 3 and parts[2] in players else parts[-1]
                if len(parts) > 2 and parts[2] in players:
                    kind += "@player"
                size = await redis.memory_usage(key, samples=0)
                out[kind]["bytes"] += int(size or 0)
                out[kind]["keys"] += 1
    return dict(out)


def ledger_bytes(by_kind: dict[str, dict[str, int]]) -> int:
    return sum(v["bytes"] for k, v in by_kind.items() if k.split("@")[0] not in NOT_LEDGER)


async def compact_as_the_job(store: Store, archive: Path, now_ms: int) -> dict[str, Any]:
    """One turn of the ring, as the scheduled job (compact_next) would run it; the
    library's compact() where the job is not there."""
    try:
        from server.jobs.compactor import compact_next
    except ImportError:
        report = await compaction.compact(store, archive, now_ms)
        how = "server.ledger.compaction.compact"
    else:
        report = await compact_next(store, archive, now_ms, BUCKETS)
        how = "server.jobs.compactor.compact_next over all buckets"
    return {
        "how": how,
        "entries": report.entries,
        "txids": report.txids,
        "problems": report.problems,
    }


async def measure(
    args: argparse.Namespace, folder: Path, url: str, nodes: list[str]
) -> dict[str, Any]:
    """The sign-ins, the memory, the compaction and both verifies on the store at `url`
    (`nodes`: the URL of each primary)."""
    settings = Settings(redis_url=url, data_dir=folder)
    rules = read_rules(settings.rules)
    store = Store(connect(url))
    await store.load_scripts()
    store.today_of = lambda now_ms: batch_int(business_day(now_ms, rules.tz))
    clock = FrozenClock(int(START.timestamp() * 1000))
    services = Services(store, clock, Rulebook(rules, settings.rules), settings)
    dispatcher = Dispatcher(services, dispatch_table(settings))
    players = [f"jb-{n:04d}" for n in range(args.jb_players)]
    keys = [PlayerKeys(p) for p in players]
    # Single-key reads and verify's: redis-py routes them on a cluster too (server/tools.py).
    # The per-player reads below go one at a time (`lengths`): all at once, they failed on
    # both stores in full-size runs, MaxConnectionsError past connect()'s pool of 32 on one
    # store, and on a fresh RedisCluster a connection's writer gone mid-handshake.
    redis = cast(Redis, connect(url))
    try:
        base = await memory_by_kind(nodes, set(players))
        credited = 0
        for day in range(args.jb_days):
            replies = await asyncio.gather(
                *(dispatcher.handle(k, Request(day + 1, "sign_in", {})) for k in keys)
            )
            credited += sum(not r["already"] for r in replies)
            clock.advance(DAY_MS)
        full = await memory_by_kind(nodes, set(players))
        entries = sum(await lengths(redis.llen, [k.journal for k in keys]))
        checked = await verify(redis)
        archive = folder / "archive"
        compacted = await compact_as_the_job(store, archive, clock.now_ms())
        after = await memory_by_kind(nodes, set(players))
        left = await lengths(redis.llen, [k.journal for k in keys])
        txids_left = await lengths(redis.hlen, [k.txids for k in keys])
        rechecked = await verify(redis, archive_dir=archive)
    finally:
        await redis.aclose()
        await store.close()
    grown = {k: full[k]["bytes"] - base.get(k, {}).get("bytes", 0) for k in full}
    per_player_after = {
        k: v["bytes"] / len(players) for k, v in after.items() if k.endswith("@player")
    }
    hot = sum(b for k, b in per_player_after.items() if k.split("@")[0] != REPLY_KIND)
    return {
        "players": len(players),
        "days": args.jb_days,
        "credited": credited,
        "entries": entries,
        "bytes_by_kind": full,
        "ledger_bytes": ledger_bytes(full) - ledger_bytes(base),
        "bytes_per_entry": (ledger_bytes(full) - ledger_bytes(base)) / max(1, entries),
        "bytes_per_entry_by_kind": {k: b / max(1, entries) for k, b in grown.items()},
        "verify_ok": checked.ok,
        "verify_problems": checked.problems[:5],
        "compaction": compacted,
        "journal_retention_days": compaction.JOURNAL_RETENTION_DAYS,
        "txid_retention_days": compaction.TXID_RETENTION_DAYS,
        "after_bytes_by_kind": after,
        "hot_bytes_per_player_after": hot,
        "hot_bytes_per_player_by_kind_after": per_player_after,
        "journal_entries_left_max": max(left),
        "journal_entries_left": sum(left),
        "txids_left_max": max(txids_left),
        "txids_left": sum(txids_left),
        "verify_after_ok": rechecked.ok,
        "verify_after_problems": rechecked.problems[:5],
    }


def run(args: argparse.Namespace, store: StoreShape) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory(prefix="manor-journal-") as tmp,
        started_store(Path(tmp) / "store", store) as (url, nodes),
    ):
        result = asyncio.run(measure(args, Path(tmp), url, [node for node, _ in nodes]))
    result["store"] = label(store)
    result["bound_bytes_daily_player"] = daily_bound(result)
    ok = result["verify_ok"] and result["verify_after_ok"] and result["entries"] > 0
    result["verdicts"] = [TARGET.of(result["bytes_per_entry"], store, valid=ok)]
    return result


def archived_id_bytes(result: dict[str, Any]) -> float:
    """Bytes of a transfer id whose entry compaction archived (its txids value rewritten
    with the posting), from the ids left after compaction: those left minus the live
    entries' ids, each live one at its measured bytes."""
    live_b = float(result["bytes_per_entry_by_kind"].get("txids@player", 0.0))
    archived = result["txids_left"] - result["journal_entries_left"]
    kept = result["after_bytes_by_kind"].get("txids@player", {}).get("bytes", 0)
    if archived <= 0:
        return live_b
    return float((kept - result["journal_entries_left"] * live_b) / archived)


def daily_bound(result: dict[str, Any]) -> float:
    """A player who earns one entry a day, forever: what compaction leaves hot is the
    journal's retention window of entries with their ids at the measured bytes per entry,
    the rest of the ids' window at the bytes of an archived entry's id, plus the player's
    other keys (not the 24 h reply cache) as measured."""
    journal_days = result["journal_retention_days"]
    txid_days = result["txid_retention_days"]
    per_entry = result["bytes_per_entry_by_kind"]
    bound = journal_days * (
        per_entry.get("journal@player", 0.0) + per_entry.get("txids@player", 0.0)
    )
    bound += max(0, txid_days - journal_days) * archived_id_bytes(result)
    windows = ("journal@player", "txids@player")
    others = result["hot_bytes_per_player_by_kind_after"]
    bound += sum(b for k, b in others.items() if k not in windows and k.split("@")[0] != REPLY_KIND)
    return float(bound)


def lines(result: dict[str, Any]) -> list[str]:
    kinds = ", ".join(
        f"{k} {b:.1f}" for k, b in sorted(result["bytes_per_entry_by_kind"].items()) if b
    )
    hot = ", ".join(
        f"{k.removesuffix('@player')} {b:.0f}"
        for k, b in sorted(result["hot_bytes_per_player_by_kind_after"].items())
    )
    c = result["compaction"]
    return [
        f"  {result['store']}: {result['entries']} entries ({result['players']} players x "
        f"{result['days']} days, {result['credited']} credited): "
        f"{result['bytes_per_entry']:.1f} B per entry in the "
        f"ledger's keys; verify {'ok' if result['verify_ok'] else result['verify_problems']}",
        f"  B per entry by kind: {kinds}",
        f"  compaction ({c['how']}): {c['entries']} entries archived, {c['txids']} ids pruned"
        f"{', problems ' + str(c['problems']) if c['problems'] else ''}; verify with the "
        f"archive {'ok' if result['verify_after_ok'] else result['verify_after_problems']}",
        f"  hot memory per player after it: {result['hot_bytes_per_player_after']:.0f} B "
        f"(journal entries left <= {result['journal_entries_left_max']}, transfer ids left <= "
        f"{result['txids_left_max']}; retention {result['journal_retention_days']} days of "
        f"entries, {result['txid_retention_days']} of ids); by kind: {hot}",
        f"  hot memory bound, a player with one entry a day forever: "
        f"{result['bound_bytes_daily_player']:.0f} B (the journal's window at the bytes per "
        f"entry above, the ids' older days at {archived_id_bytes(result):.1f} B per archived "
        "entry's id, plus the other keys as measured)",
    ]


def add_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("journal_bytes")
    group.add_argument("--jb-players", type=int, default=50)
    group.add_argument("--jb-days", type=int, default=200, help="credited sign-ins per player")
