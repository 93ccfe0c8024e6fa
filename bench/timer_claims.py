"""Phase `timers`: a million pending `ripe` timers, claimed and fired as the server does.

On a fresh store (appendfsync always: one embedded server, or the cluster's primaries,
bench/stores.py), `timers_count` timers of kind `ripe` are loaded with pipelined
many-member ZADDs into the bucket sorted sets of their players (server/store/keys.py:
timers(bucket)), each set on the node that owns its slot, one pipeline per node at a time
(bench/slots.py), due evenly over `timers_spread_s` seconds: Redis bytes per timer = INFO
used_memory after - before, summed over the primaries, over the count. Then the server's own
Timers (server/store/timers.py: claim_timers.lua, timer_done.lua) run on a Store of the
phase's URL (redis+cluster:// on the cluster) under the server's Scheduler and lease,
every TIMER_TICK_S (server/jobs/table.py), with a handler that only
records the lateness of each firing (clock at the firing - due time). The clock is the
system clock shifted so that the first timer is due a second after the run starts (the
load may take as long as it takes). Claim throughput = timers fired / seconds spent in
ticks; the run stops once every timer fired or `timers_spread_s` + DRAIN_S_MAX passed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from bench import probe
from bench.loadgen import percentile_ms
from bench.slots import SlotMap, read_slot_map
from bench.stores import StoreShape, label, started_store
from bench.verdict import Target
from server.clock import OffsetClock
from server.jobs.scheduler import Scheduler
from server.jobs.table import TIMER_TICK_S
from server.store.keys import BUCKETS, bucket_of, timers
from server.store.lease import Leases
from server.store.store import Store, connect
from server.store.timers import Timers, member

DUE_BASE_MS = 4_000_000_000_000  # far ahead of any real clock: nothing is due while loading
BUCKETS_PER_PIPELINE = 64
DRAIN_S_MAX = 60.0
FIRST_DUE_S = 1.0
LATENESS_SLACK = 1.2  # the target: poll interval + 20 %
TARGET = Target(
    "timers: p99 lateness of a firing", "<=", TIMER_TICK_S * 1000 * LATENESS_SLACK, "ms"
)


async def load(slots: SlotMap, count: int, spread_ms: int) -> None:
    """`count` ripe timers over every bucket, due evenly over `spread_ms` from DUE_BASE_MS;
    each bucket's ZADD on the node owning its slot."""
    by_bucket: dict[int, dict[str, int]] = {}
    for n in range(count):
        owner = f"tm-{n:07d}"
        due_ms = DUE_BASE_MS + n * spread_ms // count
        by_bucket.setdefault(bucket_of(owner), {})[member("ripe", owner, 0, 1)] = due_ms
    keys = {timers(bucket): bucket for bucket in sorted(by_bucket)}
    for node, node_keys in slots.by_node(keys).items():
        async with Redis.from_url(node) as redis:
            for at in range(0, len(node_keys), BUCKETS_PER_PIPELINE):
                async with redis.pipeline(transaction=False) as pipe:
                    for key in node_keys[at : at + BUCKETS_PER_PIPELINE]:
                        pipe.zadd(key, by_bucket[keys[key]])
                    await pipe.execute()


async def on_each_node(slots: SlotMap, keys: list[str], command: str) -> list[Any]:
    """`command key` for each key on its node, pipelined per node; replies in node order."""
    out: list[Any] = []
    for node, node_keys in slots.by_node(keys).items():
        async with Redis.from_url(node) as redis, redis.pipeline(transaction=False) as pipe:
            for key in node_keys:
                pipe.execute_command(command, key)
            out += await pipe.execute()
    return out


async def used_memory_b(slots: SlotMap) -> int:
    total = 0
    for node in slots.nodes:
        async with Redis.from_url(node) as redis:
            total += int((await redis.info("memory"))["used_memory"])
    return total


@dataclass
class Firings:
    lateness_ms: list[int] = field(default_factory=list)
    ticks_s: list[float] = field(default_factory=list)
    run_s: float = 0.0


async def fire_all(store: Store, count: int, wait_s: float) -> Firings:
    """The server's Timers under its Scheduler until `count` fired (or `wait_s` passed)."""
    out = Firings()
    clock = OffsetClock()
    clock.offset_ms = DUE_BASE_MS - clock.now_ms() - int(FIRST_DUE_S * 1000)
    all_fired, tick_ended = asyncio.Event(), asyncio.Event()

    async def fired(parts: list[str], due_ms: int, now_ms: int) -> None:
        out.lateness_ms.append(clock.now_ms() - due_ms)
        if len(out.lateness_ms) >= count:
            all_fired.set()

    the_timers = Timers(store, {"ripe": fired})

    async def tick() -> None:
        started_s = time.monotonic()
        await the_timers.tick(clock.now_ms(), clock.now_ms)  # as server/jobs/table.py
        out.ticks_s.append(time.monotonic() - started_s)
        tick_ended.set()

    scheduler = Scheduler(Leases(store))
    scheduler.every("timers", TIMER_TICK_S, tick)
    started_s = time.monotonic()
    scheduler.start()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(all_fired.wait(), wait_s)
    tick_ended.clear()  # the tick that fired the last ones still marks them done
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(tick_ended.wait(), DRAIN_S_MAX)
    await scheduler.stop()
    out.run_s = time.monotonic() - started_s
    return out


async def measure(args: argparse.Namespace, url: str, pids: list[int]) -> dict[str, Any]:
    """Load, claim and count on the store at `url` (`pids`: its primaries' processes)."""
    slots = read_slot_map(url)
    before_b = await used_memory_b(slots)
    load_started_s = time.monotonic()
    await load(slots, args.timers_count, int(args.timers_spread_s * 1000))
    load_s = time.monotonic() - load_started_s
    after_b = await used_memory_b(slots)
    store = Store(connect(url))
    try:
        await store.load_scripts()
        cpu_before = {p: probe.cpu_s(p) for p in (*pids, os.getpid())}
        firings = await fire_all(store, args.timers_count, args.timers_spread_s + DRAIN_S_MAX)
        cpu = {p: probe.cpu_s(p) - s for p, s in cpu_before.items()}
    finally:
        await store.close()
    left = sum(await on_each_node(slots, [timers(b) for b in range(BUCKETS)], "ZCARD"))
    lateness_ms, ticks_s, run_s = firings.lateness_ms, firings.ticks_s, firings.run_s
    fired_count = len(lateness_ms)
    lateness_ns = sorted(ms * 1_000_000 for ms in lateness_ms)
    busy_s = sum(ticks_s)
    return {
        "timers": args.timers_count,
        "spread_s": args.timers_spread_s,
        "due_per_s": args.timers_count / args.timers_spread_s,
        "load_s": load_s,
        "redis_bytes_per_timer": (after_b - before_b) / args.timers_count,
        "fired": fired_count,
        "left_in_redis": left,
        "run_s": run_s,
        "ticks": len(ticks_s),
        "tick_s_max": max(ticks_s, default=0.0),
        "claim_throughput_per_s": fired_count / busy_s if busy_s else 0.0,
        "lateness_ms_p50": percentile_ms(lateness_ns, 0.50),
        "lateness_ms_p99": percentile_ms(lateness_ns, 0.99),
        "lateness_ms_max": lateness_ns[-1] / 1e6 if lateness_ns else float("nan"),
        "poll_interval_ms": TIMER_TICK_S * 1000,
        "redis_cpu_us_per_timer": 1e6 * sum(cpu[p] for p in pids) / max(1, fired_count),
        "process_cpu_us_per_timer": 1e6 * cpu[os.getpid()] / max(1, fired_count),
    }


def run(args: argparse.Namespace, store: StoreShape) -> dict[str, Any]:
    # A tick longer than the interval makes APScheduler skip a run and log it each time:
    # the figures say it (ticks, longest tick), the log lines would bury them.
    logging.getLogger("apscheduler").setLevel(logging.ERROR)
    with (
        tempfile.TemporaryDirectory(prefix="manor-timers-") as tmp,
        started_store(Path(tmp) / "store", store) as (url, nodes),
    ):
        result = asyncio.run(measure(args, url, [pid for _, pid in nodes]))
    result["store"] = label(store)
    all_fired = result["fired"] >= result["timers"]
    p99 = result["lateness_ms_p99"] if all_fired else float("nan")
    result["verdicts"] = [TARGET.of(p99, store, valid=all_fired)]
    return result


def lines(r: dict[str, Any]) -> list[str]:
    return [
        f"  {r['store']}: {r['timers']} ripe timers over {BUCKETS} buckets, due over "
        f"{r['spread_s']:.0f} s ({r['due_per_s']:.0f}/s): loaded in {r['load_s']:.1f} s, "
        f"{r['redis_bytes_per_timer']:.1f} Redis bytes per timer",
        f"  fired {r['fired']} in {r['run_s']:.1f} s ({r['ticks']} ticks, longest "
        f"{r['tick_s_max']:.2f} s; {r['left_in_redis']} left in Redis): claim throughput "
        f"{r['claim_throughput_per_s']:.0f} timers per second of tick",
        f"  lateness p50 {r['lateness_ms_p50']:.0f} ms  p99 {r['lateness_ms_p99']:.0f} ms  "
        f"max {r['lateness_ms_max']:.0f} ms (poll interval {r['poll_interval_ms']:.0f} ms); "
        f"CPU per timer: this process {r['process_cpu_us_per_timer']:.1f} µs, Redis "
        f"{r['redis_cpu_us_per_timer']:.1f} µs",
    ]


def add_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("timers")
    group.add_argument("--timers-count", type=int, default=1_000_000)
    group.add_argument("--timers-spread-s", type=float, default=60.0, help="due over this long")
