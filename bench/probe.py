"""Counters read from outside a process: its CPU time and its main thread's time on and
waiting for a core (/proc), Redis commandstats and the store's event loop."""

from __future__ import annotations

import json
import math
import os
import time
import urllib.request
from dataclasses import dataclass

from redis import Redis

CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of process `pid` (all its threads), from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        text = stat.read()
    # Field 2 (comm) may hold spaces; the fields after its closing parenthesis are fixed.
    after_comm = text[text.rindex(")") + 2 :].split()
    utime_ticks, stime_ticks = int(after_comm[11]), int(after_comm[12])
    return (utime_ticks + stime_ticks) / CLOCK_TICKS_PER_S


def thread_s(pid: int) -> tuple[float, float]:
    """Seconds process `pid`'s main thread ran on a core and waited for one (runnable, the
    cores held by others), from /proc/<pid>/task/<pid>/schedstat: a store's one thread
    is the credit path's serial point, and on two cores it shares them."""
    with open(f"/proc/{pid}/task/{pid}/schedstat", encoding="ascii") as stat:
        on_cpu_ns, waiting_ns, _slices = stat.read().split()
    return int(on_cpu_ns) / 1e9, int(waiting_ns) / 1e9


def thread_delta(before: tuple[float, float], after: tuple[float, float]) -> list[float]:
    """A main thread's seconds on a core and waiting for one between two snapshots."""
    return [after[0] - before[0], after[1] - before[1]]


CALIBRATION_LOOPS = 300_000  # ~30 ms of pure Python here
CALIBRATION_TRIES = 3


def calibration_ms() -> float:
    """CPU ms of a fixed pure-Python loop in this process, the best of a few tries: the
    VM's speed at this moment. This VM's speed drifts by tens of percent within minutes
    (docs/benchmark.md), so the bench prints it before and after each phase. A hint, not a
    filter: a slow spell inside a phase's window need not show in either reading."""
    best_s = math.inf
    for _ in range(CALIBRATION_TRIES):
        started_s = time.process_time()
        total, table = 0, {}
        for i in range(CALIBRATION_LOOPS):
            total += i & 7
            table[i & 1023] = total
        best_s = min(best_s, time.process_time() - started_s)
    return best_s * 1000


def command_calls(redis_url: str) -> dict[str, int]:
    """INFO commandstats of one node as {command: calls}; commands run inside Lua included.

    On a cluster, `redis_url` names one node (`redis://h:p/0`): each shard counts its own.
    """
    client = Redis.from_url(redis_url)
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    return {name.removeprefix("cmdstat_"): int(row["calls"]) for name, row in stats.items()}


# Valkey's INFO stats (and Redis >= 7.2's): cycles of its event loop, and the microseconds
# spent inside them (the epoll wait left out; the AOF's write and fsync and the socket
# reads and writes in) and, of those, running commands. Redis 7.0 has none of them.
LOOP_FIELDS = {
    "cycles": "eventloop_cycles",
    "busy_us": "eventloop_duration_sum",
    "commands_us": "eventloop_duration_cmd_sum",
}


def loop_counters(redis_url: str) -> dict[str, int]:
    """The store's event-loop counters (LOOP_FIELDS), {} where the engine has none."""
    client = Redis.from_url(redis_url)
    try:
        stats = client.info("stats")
    finally:
        client.close()
    if not all(field in stats for field in LOOP_FIELDS.values()):
        return {}
    return {name: int(stats[field]) for name, field in LOOP_FIELDS.items()}


def loop_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """The event loop's counters between two snapshots ({} where the engine has none)."""
    if not before or not after:
        return {}
    return {name: after[name] - before[name] for name in LOOP_FIELDS}


def calls_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """Calls per command between two snapshots, without the INFO calls of the probe itself."""
    delta = {name: after[name] - before.get(name, 0) for name in after if name != "info"}
    return {name: calls for name, calls in sorted(delta.items()) if calls}


def calls_sum(by_node: dict[str, dict[str, int]]) -> dict[str, int]:
    """Calls per command summed over the nodes (a single store: its own counts)."""
    total: dict[str, int] = {}
    for calls in by_node.values():
        for name, count in calls.items():
            total[name] = total.get(name, 0) + count
    return dict(sorted(total.items()))


POLLS_READ_S_MAX = 5.0


def job_polls(urls: list[str]) -> int:
    """The store reads the servers' polling jobs made so far (bench.serve's JOB_POLLS_PATH
    of each), summed: the jobs' fixed load, not any request's."""
    total = 0
    for url in urls:
        with urllib.request.urlopen(url, timeout=POLLS_READ_S_MAX) as answer:
            total += sum(json.load(answer).values())
    return total


@dataclass(frozen=True, slots=True)
class Sample:
    """CPU seconds of the watched processes and their main threads' time on and waiting for
    a core, each node's command calls and its event loop's counters, at one instant."""

    cpu_s_by_pid: dict[int, float]
    thread_s_by_pid: dict[int, tuple[float, float]]  # main thread: (on a core, waiting)
    redis_calls_by_url: dict[str, dict[str, int]]
    redis_loop_by_url: dict[str, dict[str, int]]


def sample(pids: list[int], redis_urls: list[str]) -> Sample:
    calls = {url: command_calls(url) for url in redis_urls}
    loops = {url: loop_counters(url) for url in redis_urls}
    threads = {pid: thread_s(pid) for pid in pids}
    return Sample({pid: cpu_s(pid) for pid in pids}, threads, calls, loops)
