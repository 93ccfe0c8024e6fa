"""The CLI's tools that read or repair the store: ledger verify and compact, the finance
report, draw verify, the push relay and the layout migration, and the store they run
against (`store_url`)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import cast

from redis.asyncio import Redis

from server.ledger.outbox import audit
from server.ledger.verify import verify
from server.preflight import check_store_exists
from server.rulebook import check_rules
from server.settings import Settings
from server.store import layout
from server.store.cluster import EmbeddedCluster
from server.store.embedded import EmbeddedStore, find_server_binary
from server.store.store import Store, connect

log = logging.getLogger("manor")


def _store_folder(settings: Settings) -> Path:
    return settings.data_dir / "store"


@contextlib.contextmanager
def store_url(settings: Settings, reader: str = "") -> Iterator[str]:
    """The configured Redis, the running embedded one, or a temporary embedded one: one
    server, or with MANOR_STORE_SHARDS a local cluster of that many primaries. A `reader`
    (the command's name: it reads data, it does not start a service) is refused when the
    embedded store's folder is empty or missing, rather than given a new empty store."""
    if settings.redis_url:
        yield settings.redis_url
        return
    folder = _store_folder(settings)
    if reader:
        check_store_exists(settings, folder, reader)
    url_file = folder / "url"
    if url_file.exists():
        url = url_file.read_text().strip()
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        from server.store.embedded import _answers_ping

        if _answers_ping(port):
            yield url
            return
    binary = find_server_binary(settings.redis_server_bin or None)
    embedded: EmbeddedStore | EmbeddedCluster
    if settings.store_shards:
        embedded = EmbeddedCluster(
            folder / "cluster",
            shards=settings.store_shards,
            replicas=settings.store_replicas,
            binary=binary,
            appendfsync=settings.store_appendfsync,
            maxmemory_mb=settings.store_maxmemory_mb,
            malloc=settings.store_malloc,
        )
    else:
        embedded = EmbeddedStore(
            folder,
            binary=binary,
            appendfsync=settings.store_appendfsync,
            maxmemory_mb=settings.store_maxmemory_mb,
            malloc=settings.store_malloc,
        )
    url = embedded.start()
    log.info("embedded store at %s: %s, malloc %s", url, binary, embedded.allocator)
    url_file.write_text(url + "\n")
    try:
        yield url
    finally:
        embedded.stop()
        url_file.unlink(missing_ok=True)


def client_for(url: str) -> Redis:
    """A redis-py client for the store: a RedisCluster on a cluster. The CLI's readers
    (verify, compact, finance, the relay) use only single-key commands both kinds route."""
    return cast(Redis, connect(url))


def check_layout(url: str) -> None:
    """layout.LayoutRefused unless the store at `url` is of this server's layout."""

    async def run() -> None:
        redis = client_for(url)
        try:
            await layout.check(redis)
        finally:
            await redis.aclose()

    asyncio.run(run())


def cmd_store_migrate(settings: Settings, args: argparse.Namespace) -> int:
    """Move the store to this server's layout (server/store/layout.py)."""

    async def run(url: str) -> int:
        store = Store(connect(url))
        try:
            await store.load_scripts()
            done = await layout.migrate(store)
        finally:
            await store.close()
        print(
            f"store migrate: layout {layout.LAYOUT}: {done.wallets} wallets moved into their "
            f"state hash ({done.fields} fields), {done.packed} wallets' batches and holds "
            "packed: ok"
        )
        return 0

    with store_url(settings, "manor store migrate") as url:
        return asyncio.run(run(url))


def cmd_ledger_verify(settings: Settings, args: argparse.Namespace) -> int:
    async def run(url: str) -> int:
        redis = client_for(url)
        archives = Path(args.archives) if args.archives else None
        try:
            await layout.check(redis)
            report = await verify(redis, args.user, archives)
            flights = None if args.user else await audit(redis)
        finally:
            await redis.aclose()
        problems = report.problems + ([] if flights is None else flights.problems)
        for problem in problems:
            print(f"BAD: {problem}", file=sys.stderr)
        scope = f"player {args.user}" if args.user else "all players"
        print(
            f"ledger verify ({scope}): {report.players} players, {report.entries} entries, "
            f"players hold {report.player_sum}, system accounts {report.system_sum}: "
            f"{'ok' if report.ok and not problems else 'FAILED'}"
        )
        if flights is not None:
            for source in flights.ordered:
                print(
                    f"outbox {source}: ordered {flights.ordered[source]}, credited "
                    f"{flights.credited[source]}, in flight {flights.in_flight[source]}"
                )
        return 0 if report.ok and not problems else 1

    with store_url(settings, "manor ledger verify") as url:
        return asyncio.run(run(url))


def cmd_ledger_compact(settings: Settings, args: argparse.Namespace) -> int:
    from server.ledger.compaction import compact

    archive_dir = Path(args.archive_dir) if args.archive_dir else settings.data_dir / "archive"

    async def run(url: str) -> int:
        store = Store(connect(url))
        try:
            await layout.check(store.redis)
            await store.load_scripts()
            report = await compact(
                store, archive_dir, time.time_ns() // 1_000_000, args.before_days
            )
        finally:
            await store.close()
        for problem in report.problems:
            print(f"BAD: {problem}", file=sys.stderr)
        print(
            f"ledger compact (entries older than {args.before_days} days -> {archive_dir}): "
            f"{report.players} players, {report.compacted} compacted, {report.entries} entries "
            f"archived, {report.txids} transfer ids and {report.tombstones} hold tombstones "
            f"pruned, {report.moved} moved meanwhile (next run): "
            f"{'ok' if not report.problems else 'FAILED'}"
        )
        return 0 if not report.problems else 1

    with store_url(settings, "manor ledger compact") as url:
        return asyncio.run(run(url))


def cmd_report_finance(settings: Settings, args: argparse.Namespace) -> int:
    from datetime import date

    from server.ledger.finance import FlowSums, Source, day_range_ms, ledger_entries, write_report

    rules = check_rules(settings.rules)
    try:
        start_ms, end_ms = day_range_ms(
            date.fromisoformat(args.date_from), date.fromisoformat(args.date_to), rules.tz
        )
    except ValueError as exc:
        print(f"manor report finance: {exc}", file=sys.stderr)
        return 2
    archives = Path(args.archives) if args.archives else None

    async def run(url: str, source: Source, sums: FlowSums) -> None:
        redis = client_for(url)
        try:
            await layout.check(redis)
            now_ms = int(time.time() * 1000)  # "now": the coins held at this moment
            async for _, entry in ledger_entries(redis, archives, source, now_ms=now_ms):
                sums.add(entry)
        finally:
            await redis.aclose()

    source, sums = Source(), FlowSums(start_ms, end_ms)
    with store_url(settings, "manor report finance") as url:
        asyncio.run(run(url, source, sums))
    rows = sums.rows()
    if source.checkpoints_unread:
        print(
            f"manor report finance: {source.checkpoints_unread} players have archived "
            "entries that are not counted: pass --archives DIR",
            file=sys.stderr,
        )
    if args.out:
        with open(args.out, "w", newline="", encoding="utf-8") as out:
            write_report(out, rows, source.now)
    else:
        write_report(sys.stdout, rows, source.now)
    return 0


def cmd_draw_verify(settings: Settings, args: argparse.Namespace) -> int:
    """Recompute every draw of the revealed periods (or --period) of each pool (or --pool)
    from the period's seed and log. Exit 0: all match; 1: a mismatch; 2: bad arguments."""
    from server.ops.draw_audit import audit_pools

    rules = check_rules(settings.rules)
    pools = [args.pool] if args.pool else list(rules.draw.pools)

    async def run(url: str) -> int:
        redis = client_for(url)
        try:
            out, bad, ok = await audit_pools(redis, pools, args.period, time.time_ns() // 10**6)
        finally:
            await redis.aclose()
        for line in bad:
            print(line, file=sys.stderr)
        print("\n".join(out))
        return 0 if ok else 1

    with store_url(settings, "manor draw verify") as url:
        return asyncio.run(run(url))


def cmd_push_dead_letters(settings: Settings, count: int) -> int:
    """Print how many triggers the relay parked, and the newest `count` of them."""
    from datetime import UTC, datetime

    from server.jobs.dead_letters import DEAD_LETTER_LEN_MAX, read_dead_letters, relay_streams

    async def run(url: str) -> int:
        redis = client_for(url)
        try:  # every partition's dead letters and the legacy stream's, newest first
            total, letters = await read_dead_letters(redis, count)
        finally:
            await redis.aclose()
        print(
            f"dead letters: {total} (kept at most {DEAD_LETTER_LEN_MAX} per stream, "
            f"{len(relay_streams())} streams, oldest out first)"
        )
        for letter in letters:
            parked = datetime.fromtimestamp(letter.parked_ms / 1000, UTC).isoformat(
                timespec="seconds"
            )
            print(
                f"{letter.trigger_id} {letter.kind or '-'} player={letter.player or '-'} "
                f"parked={parked} failures={letter.failures} {letter.reason}"
            )
        return 0

    with store_url(settings, "manor push-relay") as url:
        return asyncio.run(run(url))


def cmd_push_relay(settings: Settings, args: argparse.Namespace) -> int:
    """Forward push triggers to a webhook until SIGINT/SIGTERM (or list the dead letters)."""
    from server.jobs.dead_letters import relay_streams
    from server.jobs.push_relay import IN_FLIGHT_MAX, run_relay

    if args.dead_letters is not None:
        return cmd_push_dead_letters(settings, args.dead_letters)
    secret = os.environ.get("MANOR_PUSH_SECRET", "")
    if not secret:
        print("manor push-relay: set MANOR_PUSH_SECRET (the webhook's HMAC key)", file=sys.stderr)
        return 2

    log.info(
        "push relay: triggers a player's quiet hours hold back (rules' time zone) are written "
        "when the quiet hours end; an empty webhook at night may be waiting for them"
    )

    async def run(url: str) -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        # One blocked XREADGROUP per stream (every partition, the legacy stream), the
        # webhook requests' XACKs, and a few spare. On a cluster the bound is per node.
        connections = len(relay_streams()) + IN_FLIGHT_MAX + 8
        redis = cast(Redis, connect(url, max_connections=connections))
        try:
            stats = await run_relay(
                redis,
                args.webhook,
                secret.encode(),
                consumer=f"{socket.gethostname()}-{os.getpid()}",
                stop=stop,
            )
        finally:
            await redis.aclose()
        print(f"manor push-relay: {stats}")
        return 0

    with store_url(settings, "manor push-relay") as url:
        return asyncio.run(run(url))
