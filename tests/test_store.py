"""server/store/store.py's own connection: pipelining, reply shapes, errors, NOSCRIPT, reconnects.

Also the fan-out's pub/sub connection (server/transport/fanout.py), which shares its reader.
Both are the single-server path, so these tests run on every single-server engine named in
MANOR_TEST_ENGINES (on the wheel's Valkey when only "cluster" is named); the cluster's own
paths are tested in test_sharded_fanout.py and by the rest of the suite on that engine.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import AuthenticationError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from server.store import link as link_module
from server.store.cluster import EmbeddedCluster, _call
from server.store.embedded import EmbeddedStore
from server.store.link import Link
from server.store.scripts import Script
from server.store.store import Store
from server.transport import fanout as fanout_module
from server.transport.fanout import Fanout
from tests.conftest import engines, start_engine

SINGLE_ENGINES = [e for e in engines() if e != "cluster"] or ["valkey"]


@pytest.fixture(scope="module", params=SINGLE_ENGINES)
def redis_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EmbeddedStore | EmbeddedCluster]:
    server = start_engine(request.param, tmp_path_factory.mktemp(request.param))
    yield server
    server.stop()


ECHO_SOURCE = "-- KEYS: none\n-- ARGV: [1] a value\n-- Returns: ARGV[1]\nreturn ARGV[1]\n"


def echo_script() -> Script:
    return Script("echo", ECHO_SOURCE, hashlib.sha1(ECHO_SOURCE.encode()).hexdigest())


def the_link(store: Store) -> Link:
    link = store._links[0]
    assert link is not None
    return link


async def test_many_concurrent_calls_run_in_issue_order(store: Store) -> None:
    calls = [store.call("RPUSH", "order", i) for i in range(1000)]
    groups = [store.call_many(("INCR", "n"), ("GET", "n")) for _ in range(100)]
    lengths = await asyncio.gather(*calls)
    assert lengths == list(range(1, 1001))
    replies = await asyncio.gather(*groups)
    assert replies == [[i, str(i).encode()] for i in range(1, 101)]
    assert await store.call("LRANGE", "order", 0, 2) == [b"0", b"1", b"2"]
    assert await store.call_many(("GET", "n")) == [b"100"]  # a group of one is a list


async def test_a_big_tick_is_written_in_slices(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    await store.call("PING")  # connected
    link = the_link(store)
    assert link.transport is not None
    writes: list[int] = []
    real_write = link.transport.write

    def counting_write(data: bytes | bytearray | memoryview) -> None:
        writes.append(len(data))
        real_write(data)

    monkeypatch.setattr(link.transport, "write", counting_write)
    monkeypatch.setattr(link_module, "WRITE_COMMANDS_MIN", 10)
    replies = await asyncio.gather(*(store.call("INCR", "sliced") for _ in range(95)))
    assert replies == list(range(1, 96))
    assert len(writes) == 10  # nine slices of 10 as they filled, the last 5 at the tick's end


async def test_replies_have_redis_py_shapes(store: Store, redis: Redis) -> None:
    await redis.hset("h", mapping={"a": "1", "b": "2"})
    await redis.rpush("l", "x", "y")
    got = await store.call_many(
        ("HGETALL", "h"),
        ("HGETALL", "missing"),
        ("HGET", "h", "a"),
        ("HGET", "h", "zz"),
        ("LRANGE", "l", 0, -1),
        ("INCRBY", "c", 5),
        ("SET", "s", "v"),
        ("GET", "s"),
    )
    assert got == [{b"a": b"1", b"b": b"2"}, {}, b"1", None, [b"x", b"y"], 5, True, b"v"]
    assert await store.call("PING") is True
    assert got[0] == await redis.hgetall("h")


async def test_an_error_reply_fails_only_its_own_request(store: Store) -> None:
    await store.call("SET", "str", "v")
    wrong_type = store.call_many(("GET", "str"), ("LPUSH", "str", "x"))
    unknown = store.call("NOSUCHCOMMAND")
    fine = store.call("GET", "str")
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        await wrong_type
    with pytest.raises(ResponseError, match="unknown command"):
        await unknown
    assert await fine == b"v"
    assert await store.call("GET", "str") == b"v"  # the connection is still in step


async def test_bad_arguments_fail_before_anything_is_sent(store: Store) -> None:
    with pytest.raises(Exception, match="Invalid input"):
        await store.call("SET", "k", None)  # type: ignore[arg-type]
    assert await store.call("PING") is True


async def test_noscript_loads_the_scripts_and_retries_once(store: Store, redis: Redis) -> None:
    store.scripts["echo"] = echo_script()
    await store.load_scripts()
    assert await store.script("echo", [], ["a"]) == b"a"
    await redis.script_flush()
    replies = await asyncio.gather(
        store.script("echo", [], ["b"]),
        store.call_many(("SET", "k", "v"), ("EVALSHA", echo_script().sha, 0, "c")),
        store.script("echo", [], ["d"]),
    )
    assert replies == [b"b", [True, b"c"], b"d"]


async def test_a_script_that_stays_missing_fails_with_noscript(store: Store) -> None:
    with pytest.raises(ResponseError, match=r"NOSCRIPT|No matching script"):
        await store.call("EVALSHA", "0" * 40, 0)


async def test_a_dropped_connection_fails_the_waiting_then_reconnects(
    store: Store, redis: Redis
) -> None:
    await store.call("PING")
    blocked = store.call("BLPOP", "never", 5)
    behind = store.call("GET", "k")
    await asyncio.sleep(0.05)  # BLPOP is now blocking in the server
    await redis.client_kill_filter(_type="normal", skipme=True)
    for future in (blocked, behind):
        with pytest.raises(RedisConnectionError):
            await future
    assert await store.call("SET", "k", "after") is True
    assert await store.call("GET", "k") == b"after"


async def test_a_restart_mid_flight_fails_pending_calls_and_later_ones_succeed(
    tmp_path: Path,
) -> None:
    embedded = EmbeddedStore(tmp_path / "store", appendfsync="always")
    store = Store(Redis.from_url(embedded.start()))
    store.scripts["echo"] = echo_script()
    restarted: EmbeddedStore | None = None
    try:
        await store.load_scripts()
        assert await store.call("SET", "k", "v") is True
        pending = [store.call("BLPOP", "never", 5), store.call("INCR", "n")]
        await asyncio.sleep(0.05)
        embedded.kill()
        for future in pending:
            with pytest.raises(RedisConnectionError):
                await future
        with pytest.raises(RedisConnectionError, match="Error connecting"):
            await store.call("PING")
        restarted = EmbeddedStore(tmp_path / "store", appendfsync="always", port=embedded.port)
        restarted.start()
        assert await store.call("GET", "k") == b"v"
        assert await store.script("echo", [], ["back"]) == b"back"  # NOSCRIPT: loaded again
    finally:
        await store.close()
        embedded.stop()
        if restarted is not None:
            restarted.stop()


async def test_no_reply_within_socket_timeout_fails_the_waiting(
    redis: Redis, redis_server: EmbeddedStore
) -> None:
    store = Store(Redis.from_url(redis_server.url, socket_timeout=0.2))
    try:
        with pytest.raises(RedisTimeoutError):
            await store.call("BLPOP", "never", 2)
        assert await store.call("PING") is True
    finally:
        await store.close()


async def test_acl_user_password_and_db_from_the_url(
    redis: Redis, redis_server: EmbeddedStore
) -> None:
    await redis.acl_setuser(
        "manor-test", enabled=True, passwords=["+s3cret"], keys=["*"], commands=["+@all"]
    )
    base = f"127.0.0.1:{redis_server.port}"
    store = Store(Redis.from_url(f"redis://manor-test:s3cret@{base}/3"))
    bad = Store(Redis.from_url(f"redis://manor-test:wrong@{base}/3"))
    resp2 = Store(Redis.from_url(f"redis://manor-test:s3cret@{base}/4?protocol=2"))
    try:
        assert await store.call("SET", "in-db-3", "yes") is True
        assert await resp2.call_many(("SET", "in-db-4", "yes"), ("HGETALL", "none")) == [True, {}]
        with pytest.raises(AuthenticationError):
            await bad.call("PING")
        db3 = Redis.from_url(f"redis://{base}/3")
        assert await db3.get("in-db-3") == b"yes"
        assert await redis.get("in-db-3") is None
        await db3.aclose()
    finally:
        for each in (store, bad, resp2):
            await each.close()
        await redis.acl_deluser("manor-test")


async def test_close_waits_for_what_was_issued(redis: Redis, redis_server: EmbeddedStore) -> None:
    store = Store(Redis.from_url(redis_server.url))
    futures = [store.call("INCR", "closing") for _ in range(50)]
    await store.close()
    assert [f.result() for f in futures] == list(range(1, 51))


@pytest.fixture
async def fanout(
    redis: Redis, redis_server: EmbeddedStore, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Fanout]:
    monkeypatch.setattr(fanout_module, "RECONNECT_PAUSE_S", 0.01)
    client = Redis.from_url(redis_server.url)
    fan = Fanout(client)
    await fan.start()
    yield fan
    await fan.close()
    await client.aclose()


async def wait_for(condition: Any, timeout_s: float = 5.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():  # noqa: ASYNC110 - polls another process's effect
            await asyncio.sleep(0.01)


async def test_fanout_delivers_resubscribes_and_detaches(redis: Redis, fanout: Fanout) -> None:
    got: list[bytes] = []
    await fanout.attach("m:push:a", got.append)
    await wait_until_subscribed(redis, "m:push:a")
    assert await redis.publish("m:push:a", b"one") == 1
    await wait_for(lambda: got == [b"one"])
    await redis.client_kill_filter(_type="pubsub")
    await wait_until_subscribed(redis, "m:push:a")
    assert await redis.publish("m:push:a", b"two") == 1
    await wait_for(lambda: got == [b"one", b"two"])
    await fanout.detach("m:push:a", got.append)
    async with asyncio.timeout(5):
        while await redis.publish("m:push:a", b"three") != 0:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    assert fanout.delivered == 2
    assert fanout.channels == 0


async def test_fanout_attach_returns_once_the_channel_is_subscribed(
    fanout: Fanout, redis_server: EmbeddedStore
) -> None:
    """A socket reads its inbox right after attach(): a frame published from then on must
    reach it live, or a push committed between the read and the subscription is lost to
    it. The PUBLISH below blocks the loop, so it goes out before anything attach() left
    for later."""
    got: list[bytes] = []
    await fanout.attach("m:push:now", got.append)
    assert _call(redis_server.port, "PUBLISH", "m:push:now", "first") == 1
    await wait_for(lambda: got == [b"first"])
    again: list[bytes] = []
    await fanout.attach("m:push:now", again.append)  # a second socket of the same player
    assert _call(redis_server.port, "PUBLISH", "m:push:now", "second") == 1
    await wait_for(lambda: again == [b"second"])


async def test_fanout_attach_waits_for_a_silent_store_only_so_long(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store that never confirms (stopped, not gone: the connection stays up) holds a
    socket's start SUBSCRIBE_WAIT_S_MAX at most, and two sockets of one player alike."""
    monkeypatch.setattr(fanout_module, "SUBSCRIBE_WAIT_S_MAX", 0.3)
    server = EmbeddedStore(tmp_path / "silent", appendfsync="no")
    server.start()
    client = Redis.from_url(server.url)
    fan = Fanout(client)
    await fan.start()
    assert server.process is not None
    os.kill(server.process.pid, signal.SIGSTOP)
    try:
        started = asyncio.get_running_loop().time()
        async with asyncio.timeout(5):
            await asyncio.gather(
                fan.attach("m:push:silent", [].append), fan.attach("m:push:silent", [].append)
            )
        assert 0.25 <= asyncio.get_running_loop().time() - started < 2.0
    finally:
        os.kill(server.process.pid, signal.SIGCONT)
        await fan.close()
        await client.aclose()
        server.stop()


async def test_fanout_tells_each_channel_of_its_gap_once_resubscribed(
    redis: Redis, fanout: Fanout
) -> None:
    gaps: list[str] = []
    await fanout.attach("m:push:g", [].append, lambda: gaps.append("g"))
    await fanout.attach("m:push:h", [].append)  # no gap callback: nothing to tell
    await wait_until_subscribed(redis, "m:push:h")
    assert gaps == []  # a first subscription is no gap
    await redis.client_kill_filter(_type="pubsub")
    await wait_until_subscribed(redis, "m:push:g")
    await wait_for(lambda: gaps == ["g"])


async def wait_until_subscribed(redis: Redis, channel: str) -> None:
    async with asyncio.timeout(5):
        while (await redis.pubsub_numsub(channel))[0][1] == 0:  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def test_a_failing_sink_does_not_stop_the_others(redis: Redis, fanout: Fanout) -> None:
    got: list[bytes] = []

    def broken(frame: bytes) -> None:
        raise RuntimeError("boom")

    await fanout.attach("m:push:b", broken)
    await fanout.attach("m:push:b", got.append)
    await wait_until_subscribed(redis, "m:push:b")
    await redis.publish("m:push:b", b"x")
    await wait_for(lambda: got == [b"x"])
