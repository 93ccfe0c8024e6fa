"""The partitioned push-trigger streams: where triggers land, relays sharing and taking over
the partitions, and the legacy single stream drained on upgrade. Real store (one server or
the 3-primary cluster), real relays, real webhooks on loopback ports."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from server.jobs.dead_letters import park, read_dead_letters
from server.jobs.push_relay import IN_FLIGHT_MAX, RelayStats, run_relay
from server.ops.triggers import send
from server.store.keys import (
    BUCKETS,
    LEGACY_TRIGGER_STREAM,
    TRIGGER_PARTITIONS,
    bucket_of,
    trigger_partition,
    trigger_stream,
    trigger_stream_of,
    trigger_streams,
)
from server.store.store import Store
from tests.test_push_relay import GROUP, SECRET, Receiver, add, pending, receiving
from tests.trigger_streams import players_in

FAST = {"backoff_ms_base": 10, "backoff_ms_max": 50, "read_block_ms": 50, "attempts_max": 3}


async def until(check: Callable[[], bool | Awaitable[bool]], what: str, wait_s: float = 20) -> None:
    deadline = time.monotonic() + wait_s
    while True:
        got = check()
        if got if isinstance(got, bool) else await got:
            return
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


def delivered_ids(*receivers: Receiver) -> list[str]:
    """Delivery ids the receivers answered (2xx), repeats included."""
    return [r.headers["x-manor-delivery"] for each in receivers for r in each.received]


def test_a_players_partition_is_its_buckets_range() -> None:
    assert [trigger_partition(p) for p in ("ann", "bob")] == [
        bucket_of(p) * TRIGGER_PARTITIONS // BUCKETS for p in ("ann", "bob")
    ]
    per_partition = BUCKETS // TRIGGER_PARTITIONS
    firsts = [
        min(b for b in range(BUCKETS) if b * TRIGGER_PARTITIONS // BUCKETS == p)
        for p in range(TRIGGER_PARTITIONS)
    ]
    assert firsts == [p * per_partition for p in range(TRIGGER_PARTITIONS)]  # contiguous ranges
    assert trigger_stream(3) == "m:{notify:3}:triggers"
    slots = {key_slot(stream.encode()) for stream in trigger_streams()}
    assert len(slots) == TRIGGER_PARTITIONS  # a slot each: no single hot key
    assert key_slot(LEGACY_TRIGGER_STREAM.encode()) not in slots


async def test_triggers_of_players_in_different_buckets_land_in_their_partitions_and_all_are_delivered(  # noqa: E501
    redis: Redis, store: Store
) -> None:
    players = {p: players_in(p, 2, prefix=f"part{p}-") for p in range(TRIGGER_PARTITIONS)}
    now_ms = int(time.time() * 1000)
    for partition, names in players.items():
        for name in names:
            assert trigger_partition(name) == partition
            data = {"plot": partition, "cycle": 1, "seed": "turnip"}
            await send(store, name, "crop_ripe", f"ripe:{name}:0:1", data, now_ms)
    for partition, names in players.items():  # the app's real write path, XADD per partition
        entries = await redis.xrange(trigger_stream(partition))
        assert sorted(fields[b"player"].decode() for _, fields in entries) == sorted(names)
        assert await redis.xinfo_stream(trigger_stream(partition))  # MAXLEN ~ applies per key
    assert not await redis.exists(LEGACY_TRIGGER_STREAM)
    if isinstance(redis, RedisCluster):  # the partitions spread over the primaries
        nodes = {redis.get_node_from_key(stream).name for stream in trigger_streams()}
        assert len(nodes) > 1, nodes
    async with receiving() as receiver:
        stats = await run_relay(redis, receiver.url, SECRET, consumer="a", iterations_max=1, **FAST)
    assert (stats.read, stats.delivered, stats.undelivered) == (32, 32, 0)
    assert stats.pending_left == 0 and await pending(redis) == 0
    ids = delivered_ids(receiver)
    assert len(set(ids)) == len(ids) == 2 * TRIGGER_PARTITIONS  # unique over partitions
    for payload in receiver.payloads():
        partition = trigger_partition(payload["player"])
        assert payload["id"].startswith(f"{partition}/")
        assert payload["data"]["plot"] == partition


async def test_two_relays_share_the_partitions_and_one_killed_mid_run_loses_nothing(
    redis: Redis, redis_server: Any
) -> None:
    """Relay a (`manor push-relay`, a process) posts to one webhook, relay b (in this
    process) to another, so each delivery names its relay. Triggers arrive steadily, to
    every partition; both relays read them through the group. a is killed (SIGKILL) while
    its webhook holds requests (posted, unanswered, unacknowledged); b claims what a left
    pending (XAUTOCLAIM) in every partition once idle, and delivers the rest."""
    async with receiving() as hook_a, receiving() as hook_b:
        hook_a.answer_delay_s, hook_b.answer_delay_s = 0.02, 0.02
        env = {k: v for k, v in os.environ.items() if not k.startswith("MANOR_")}
        env |= {"MANOR_REDIS_URL": redis_server.url, "MANOR_PUSH_SECRET": SECRET.decode()}
        relay_a = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "server.cli", "push-relay", "--webhook", hook_a.url, env=env
        )
        stop_b = asyncio.Event()
        options: dict[str, Any] = {**FAST, "claim_idle_ms": 1_000, "in_flight_max": 4}
        relay_b: asyncio.Task[RelayStats] | None = None
        expected = {await add(redis, "warm-up")}
        written = asyncio.Event()

        async def write() -> None:
            for n in range(300):
                expected.add(await add(redis, f"k{n}", plot=n))
                await asyncio.sleep(0.005)
            written.set()

        writer = asyncio.create_task(write())
        try:
            await until(lambda: len(hook_a.received) >= 1, "relay a up")
            relay_b = asyncio.create_task(
                run_relay(redis, hook_b.url, SECRET, consumer="b", stop=stop_b, **options)
            )
            await until(
                lambda: len(hook_a.received) >= 20 and len(hook_b.received) >= 20,
                "both relays delivering",
            )
            hook_a.holding = True  # a's webhook stops answering: its requests hang
            await until(lambda: hook_a.in_flight >= 1, "a request of relay a in flight")
            relay_a.kill()  # nothing of it is acknowledged from now on
            await relay_a.wait()
            held = set(hook_a.arrived) - set(delivered_ids(hook_a))
            assert held, "relay a died with requests in flight"
            await written.wait()
            await until(
                lambda: set(delivered_ids(hook_a, hook_b)) >= expected, "every trigger delivered"
            )
            await until(lambda: _no_pending(redis), "nothing left pending")
        finally:
            writer.cancel()
            stop_b.set()
            if relay_a.returncode is None:
                relay_a.kill()
                await relay_a.wait()
        assert relay_b is not None
        stats_b = await asyncio.wait_for(relay_b, 10)
    ids = delivered_ids(hook_a, hook_b)
    assert set(ids) == expected  # at least once, none lost, nothing foreign
    assert held <= set(delivered_ids(hook_b))  # a's unanswered requests: delivered by b
    repeats = len(ids) - len(set(ids))
    assert repeats <= IN_FLIGHT_MAX, repeats  # at most what a had in flight
    assert stats_b.claimed >= len(held) and stats_b.pending_left == 0
    assert 20 <= len(hook_a.received) < len(expected)  # the load was shared


async def _no_pending(redis: Redis) -> bool:
    return await pending(redis) == 0


async def test_the_legacy_single_stream_is_drained_on_upgrade(redis: Redis) -> None:
    """Before the partitions, triggers went to m:{notify}:triggers. An old relay read two of
    three (acknowledging one) and died; the new relay claims its pending entry, reads the
    unread one, and sends both with their bare stream ids, as the old relay did."""

    def entry(player: str) -> dict[str, str]:
        return {
            "player": player,
            "kind": "crop_ripe",
            "collapse_key": f"ripe:{player}",
            "data": json.dumps({"plot": 0}),
            "created_ms": str(int(time.time() * 1000)),
        }

    legacy = [
        (await redis.xadd(LEGACY_TRIGGER_STREAM, entry(p))).decode() for p in ("o1", "o2", "o3")
    ]
    await redis.xgroup_create(LEGACY_TRIGGER_STREAM, GROUP, "0")
    await redis.xreadgroup(GROUP, "old-relay", {LEGACY_TRIGGER_STREAM: ">"}, count=2)
    await redis.xack(LEGACY_TRIGGER_STREAM, GROUP, legacy[0])  # delivered before the upgrade
    partitioned = await add(redis, "n1")
    await asyncio.sleep(0.02)
    async with receiving() as receiver:
        stats = await run_relay(
            redis, receiver.url, SECRET, consumer="new", iterations_max=1, claim_idle_ms=10, **FAST
        )
        assert (stats.claimed, stats.read, stats.delivered) == (1, 2, 3)
        assert sorted(delivered_ids(receiver)) == sorted([legacy[1], legacy[2], partitioned])
        assert await pending(redis) == 0
        # A server of the old version still writing during a rolling upgrade: delivered too.
        await redis.delete(LEGACY_TRIGGER_STREAM)  # drained and deleted by the operator...
        stop = asyncio.Event()
        running = asyncio.create_task(
            run_relay(redis, receiver.url, SECRET, consumer="new", stop=stop, **FAST)
        )
        await asyncio.sleep(0.2)
        assert not await redis.exists(LEGACY_TRIGGER_STREAM)  # the relay does not create it
        late = (await redis.xadd(LEGACY_TRIGGER_STREAM, entry("o4"))).decode()  # ...written again
        await until(lambda: late in delivered_ids(receiver), "the late legacy trigger")
        stop.set()
        late_stats = await asyncio.wait_for(running, 5)
    assert late_stats.delivered == 1 and late_stats.pending_left == 0


async def test_dead_letters_are_read_over_every_partition_and_the_legacy_stream(
    redis: Redis,
) -> None:
    """`manor push-relay --dead-letters N`: the total over all dead-letter streams, and the
    newest N over all of them, each with the delivery id the webhook saw."""
    parked: list[tuple[str, int | None, str]] = []
    for stream, partition, player in [
        (LEGACY_TRIGGER_STREAM, None, "old"),
        (trigger_stream_of("p1"), trigger_partition("p1"), "p1"),
        (trigger_stream_of("p2"), trigger_partition("p2"), "p2"),
    ]:
        fields = {"player": player, "kind": "stolen", "data": "{"}
        await redis.xgroup_create(stream, GROUP, "0", mkstream=True)
        entry_id = (await redis.xadd(stream, fields)).decode()
        await redis.xreadgroup(GROUP, "a", {stream: ">"})
        now_ms = int(time.time() * 1000) + len(parked)  # parked in this order
        await park(redis, stream, GROUP, entry_id, fields, "malformed: test", 0, now_ms)
        parked.append((entry_id, partition, player))
    total, newest = await read_dead_letters(redis, 2)
    assert total == 3
    assert [(letter.player, letter.trigger_id) for letter in newest] == [
        (player, entry_id if partition is None else f"{partition}/{entry_id}")
        for entry_id, partition, player in reversed(parked[1:])
    ]
    assert await pending(redis) == 0
