"""Redis's cost of one credit commit alone: commit.lua through `apply`, no server, no socket.

`python -m bench.commit_cost [--commits N] [--appendfsync always|everysec]` prints commits
per second, Redis CPU per commit (INFO cpu) and, from INFO commandstats, the commands per
commit and each command's µs: EVALSHA's time includes the commands the script calls.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from datetime import date
from pathlib import Path

from server.ledger.commit import Commit, apply
from server.ledger.ledger import Transfer
from server.store.embedded import EmbeddedStore
from server.store.keys import PlayerKeys
from server.store.store import Store, connect

CONCURRENCY = 100
PLAYERS = 1000
NOW_MS = 1_795_000_000_000
BATCH = date(2027, 6, 30)
COMMITS_MAX = 1_000_000


async def run(commits: int, appendfsync: str) -> None:
    folder = Path(tempfile.mkdtemp(prefix="commit-cost-"))
    embedded = EmbeddedStore(folder / "store", appendfsync=appendfsync)
    embedded.start()
    try:
        redis = connect(embedded.url)
        store = Store(connect(embedded.url))
        await store.load_scripts()
        await redis.config_resetstat()
        cpu_before = await redis.info("cpu")
        started_s = time.perf_counter()
        numbers = iter(range(commits))

        async def worker() -> None:
            for n in numbers:
                player = f"p{n % PLAYERS}"
                keys = PlayerKeys(player)
                credit = Transfer(f"signin:{player}:{n}", "c", 10, "mint:signin", BATCH)
                commit = Commit(fields={"signin": b"x" * 20}, transfers=[credit], reply_body=b"r")
                await apply(store, keys, commit, NOW_MS + n, reply_key=keys.reply(f"i:{n}"))

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        elapsed_s = time.perf_counter() - started_s
        cpu_after = await redis.info("cpu")
        stats = await redis.info("commandstats")
        await store.close()
        await redis.aclose()
    finally:
        embedded.stop()
    cpu_s = sum(cpu_after[k] - cpu_before[k] for k in ("used_cpu_sys", "used_cpu_user"))
    counted = {
        k: v for k, v in stats.items() if k not in ("cmdstat_info", "cmdstat_config|resetstat")
    }
    calls = sum(v["calls"] for v in counted.values())
    print(
        f"appendfsync {appendfsync}: {commits / elapsed_s:.0f} commits/s, Redis CPU "
        f"{cpu_s / commits * 1e6:.1f} µs per commit, {calls / commits:.2f} commands per commit"
    )
    for name, stat in sorted(counted.items(), key=lambda kv: -kv[1]["usec"]):
        print(
            f"  {name.removeprefix('cmdstat_'):10s} {stat['calls'] / commits:5.2f} per commit"
            f"  {stat['usec'] / commits:7.2f} µs per commit"
        )


def main(argv: list[str] | None = None) -> None:
    top = argparse.ArgumentParser(prog="python -m bench.commit_cost")
    top.add_argument("--commits", type=int, default=20_000)
    top.add_argument("--appendfsync", choices=("always", "everysec"), default="always")
    args = top.parse_args(argv)
    if not 1 <= args.commits <= COMMITS_MAX:
        top.error(f"--commits must be 1..{COMMITS_MAX}")
    asyncio.run(run(args.commits, args.appendfsync))


if __name__ == "__main__":
    main()
