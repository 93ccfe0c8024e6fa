"""The client process: N WebSocket connections in a closed loop; prints one JSON report.

`python -m bench.loadgen --url ws://127.0.0.1:P/v1/ws --op sign_in ...`. Each connection
(one player) sends a request, waits for its reply, repeats. After `warmup_s` a window of
`duration_s` opens: replies completed inside it are counted and timed, and the watched
processes' CPU time and the Redis command and event-loop counters are sampled at its edges.

Several `--url`s (one per server process) split the connections round-robin: connection i
goes to url i mod n. Several `--redis-url`s (one per cluster primary) are each sampled.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import msgpack
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from bench import probe
from bench.serve import JWT_SECRET
from server.auth import issue_token
from server.protocol import SUBPROTOCOL_MSGPACK

REQUESTS_PER_CONNECTION_MAX = 1_000_000
FRAMES_PER_REPLY_MAX = 16  # pushes that may arrive before one reply
LATENCY_SAMPLES_MAX = 5_000_000
CONNECT_S_MAX = 30.0
DRAIN_S_MAX = 10.0  # after the window: time for in-flight requests to finish
FRAME_BYTES_MAX = 1 << 20


@dataclass
class Tally:
    """What happened inside the window (single-threaded: only the event loop touches it)."""

    counting: bool = False
    replies: int = 0
    credited: int = 0  # sign_in replies with already == False
    errors: int = 0
    pushes: int = 0
    latencies_ns: list[int] = field(default_factory=list)

    def record(self, reply: dict[str, Any], latency_ns: int) -> None:
        if not self.counting:
            return
        self.replies += 1
        if not reply.get("ok"):
            self.errors += 1
        elif reply["result"].get("already") is False:
            self.credited += 1
        if len(self.latencies_ns) < LATENCY_SAMPLES_MAX:
            self.latencies_ns.append(latency_ns)


def percentile_ms(sorted_ns: list[int], fraction: float) -> float:
    if not sorted_ns:
        return float("nan")
    index = min(len(sorted_ns) - 1, int(fraction * len(sorted_ns)))
    return sorted_ns[index] / 1e6


async def open_socket(url: str, player_id: str) -> ClientConnection:
    token = issue_token(JWT_SECRET, player_id, int(time.time()))
    return await connect(
        url,
        subprotocols=[Subprotocol(SUBPROTOCOL_MSGPACK)],
        additional_headers={"Authorization": f"Bearer {token}"},
        compression=None,  # the lighter client; see docs/benchmark.md
        proxy=None,
        ping_interval=None,
        max_size=FRAME_BYTES_MAX,
    )


async def read_reply(socket: ClientConnection, tally: Tally) -> dict[str, Any]:
    for _ in range(FRAMES_PER_REPLY_MAX):
        message: dict[str, Any] = msgpack.unpackb(await socket.recv(), raw=False)
        if "push" not in message:
            return message
        if tally.counting:
            tally.pushes += 1
    raise RuntimeError(f"no reply within {FRAMES_PER_REPLY_MAX} frames")


async def drive(socket: ClientConnection, op: str, stop_at_s: float, tally: Tally) -> int:
    """Closed loop on one socket until `stop_at_s` (monotonic) or the request cap; returns
    the replies it counted inside the window."""
    counted = 0
    for request_id in range(1, REQUESTS_PER_CONNECTION_MAX + 1):
        if time.monotonic() >= stop_at_s:
            break
        frame = msgpack.packb({"id": request_id, "op": op, "args": {}})
        sent_ns = time.perf_counter_ns()
        await socket.send(frame)
        reply = await read_reply(socket, tally)
        counted += tally.counting
        tally.record(reply, time.perf_counter_ns() - sent_ns)
        if reply.get("id") != request_id:
            raise RuntimeError(f"reply id {reply.get('id')!r} for request {request_id}")
    return counted


async def run(args: argparse.Namespace) -> dict[str, Any]:
    players = [f"{args.player_prefix}{i:04d}" for i in range(args.connections)]
    urls = [args.url[i % len(args.url)] for i in range(args.connections)]  # round-robin
    sockets = await asyncio.wait_for(
        asyncio.gather(*(open_socket(u, p) for u, p in zip(urls, players, strict=True))),
        CONNECT_S_MAX,
    )
    tally = Tally()
    start_s = time.monotonic()
    open_at_s = start_s + args.warmup_s
    close_at_s = open_at_s + args.duration_s
    drivers = [asyncio.create_task(drive(s, args.op, close_at_s, tally)) for s in sockets]
    pids = [*args.watch_pid, os.getpid()]
    try:
        await asyncio.sleep(open_at_s - time.monotonic())
        before = probe.sample(pids, args.redis_url)
        # Read after the commands before and before the commands after: every poll counted
        # ran inside the commands' window (a subtraction that can only leave some in).
        polls_before = probe.job_polls(args.polls_url)
        tally.counting, opened_s = True, time.monotonic()
        await asyncio.sleep(close_at_s - time.monotonic())
        tally.counting, closed_s = False, time.monotonic()
        polls_after = probe.job_polls(args.polls_url)
        after = probe.sample(pids, args.redis_url)
        done, pending = await asyncio.wait(drivers, timeout=DRAIN_S_MAX)
        failures = [repr(t.exception()) for t in done if t.exception() is not None]
        replies_by_url = dict.fromkeys(args.url, 0)
        for url, task in zip(urls, drivers, strict=True):
            if task in done and task.exception() is None:
                replies_by_url[url] += task.result()
    finally:
        for task in drivers:
            task.cancel()
        await asyncio.gather(*drivers, return_exceptions=True)
        await asyncio.gather(*(s.close() for s in sockets), return_exceptions=True)
    latencies_ns = sorted(tally.latencies_ns)
    window_s = closed_s - opened_s
    calls_by_node = {
        url: probe.calls_delta(before.redis_calls_by_url[url], after.redis_calls_by_url[url])
        for url in args.redis_url
    }
    return {
        "op": args.op,
        "connections": args.connections,
        "warmup_s": args.warmup_s,
        "window_s": window_s,
        "replies": tally.replies,
        "round_trips_per_s": tally.replies / window_s,
        "replies_by_url": replies_by_url,
        "latency_ms_p50": percentile_ms(latencies_ns, 0.50),
        "latency_ms_p99": percentile_ms(latencies_ns, 0.99),
        "errors": tally.errors,
        "credited": tally.credited,
        "pushes": tally.pushes,
        "drivers_failed": failures[:5],
        "drivers_unfinished": len(pending),
        "client_pid": os.getpid(),
        "cpu_s_by_pid": {
            str(pid): after.cpu_s_by_pid[pid] - before.cpu_s_by_pid[pid] for pid in pids
        },
        "thread_s_by_pid": {
            str(pid): probe.thread_delta(before.thread_s_by_pid[pid], after.thread_s_by_pid[pid])
            for pid in pids
        },
        "redis_calls": probe.calls_sum(calls_by_node),
        "job_polls": polls_after - polls_before,
        "redis_calls_by_node": calls_by_node,
        "redis_loop_by_node": {
            url: probe.loop_delta(before.redis_loop_by_url[url], after.redis_loop_by_url[url])
            for url in args.redis_url
        },
    }


def main(argv: list[str] | None = None) -> None:
    top = argparse.ArgumentParser(prog="python -m bench.loadgen")
    top.add_argument("--url", action="append", required=True, help="repeat: round-robin")
    top.add_argument("--op", default="sign_in")
    top.add_argument("--connections", type=int, default=100)
    top.add_argument("--warmup-s", type=float, default=2.0)
    top.add_argument("--duration-s", type=float, default=10.0)
    top.add_argument("--watch-pid", type=int, action="append", default=[])
    top.add_argument("--redis-url", action="append", default=[], help="repeat: per node")
    top.add_argument(
        "--polls-url", action="append", default=[], help="repeat: per server (bench.serve)"
    )
    top.add_argument("--player-prefix", default="bench-")
    args = top.parse_args(argv)
    report = asyncio.run(run(args))
    json.dump(report, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
