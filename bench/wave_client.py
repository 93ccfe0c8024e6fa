"""Client process of the connect wave: players open a socket, send one request, close.

`python -m bench.wave_client --url ws://.../v1/ws --first 0 --count 10000 --concurrency 100`
prints `{"ready": ...}` once its tokens are made, waits for `go` on stdin, then runs
`concurrency` workers that take the next player until all `count` are done, and prints one
JSON report: players done, credited, errors, the wall time and this process's CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from typing import Any

import msgpack
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from bench import probe
from bench.clients import raise_fd_limit, wait_for_line
from bench.loadgen import FRAME_BYTES_MAX, FRAMES_PER_REPLY_MAX, percentile_ms
from bench.serve import JWT_SECRET
from server.auth import issue_token
from server.protocol import SUBPROTOCOL_MSGPACK

OPEN_TIMEOUT_S = 30.0
ERRORS_KEPT_MAX = 5


async def one_player(url: str, token: str, op: str) -> dict[str, Any]:
    """Open, one request, close; the reply (pushes before it are skipped)."""
    async with connect(
        url,
        subprotocols=[Subprotocol(SUBPROTOCOL_MSGPACK)],
        additional_headers={"Authorization": f"Bearer {token}"},
        compression=None,
        proxy=None,
        ping_interval=None,
        max_size=FRAME_BYTES_MAX,
        open_timeout=OPEN_TIMEOUT_S,
    ) as socket:
        await socket.send(msgpack.packb({"id": 1, "op": op, "args": {}}))
        for _ in range(FRAMES_PER_REPLY_MAX):
            reply: dict[str, Any] = msgpack.unpackb(await socket.recv(), raw=False)
            if "push" not in reply:
                return reply
    raise RuntimeError(f"no reply within {FRAMES_PER_REPLY_MAX} frames")


async def run(args: argparse.Namespace, tokens: list[str]) -> dict[str, Any]:
    queue = iter(range(len(tokens)))
    done = credited = 0
    errors: list[str] = []
    latencies_ns: list[int] = []

    async def worker() -> None:
        nonlocal done, credited
        for index in queue:  # a shared iterator: each player once
            started_ns = time.perf_counter_ns()
            try:
                reply = await one_player(args.url, tokens[index], args.op)
            except Exception as exc:  # noqa: BLE001 - counted and reported, the wave goes on
                errors.append(repr(exc))
                continue
            latencies_ns.append(time.perf_counter_ns() - started_ns)
            if not reply.get("ok"):
                errors.append(repr(reply.get("error")))
                continue
            done += 1
            credited += reply["result"].get("already") is False

    cpu_before_s = probe.cpu_s(os.getpid())
    started_s = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    wall_s = time.monotonic() - started_s
    latencies_ns.sort()
    return {
        "players": len(tokens),
        "done": done,
        "credited": credited,
        "errors": len(errors),
        "error_samples": errors[:ERRORS_KEPT_MAX],
        "wall_s": wall_s,
        "client_cpu_s": probe.cpu_s(os.getpid()) - cpu_before_s,
        "latency_ms_p50": percentile_ms(latencies_ns, 0.50),
        "latency_ms_p99": percentile_ms(latencies_ns, 0.99),
    }


def main(argv: list[str] | None = None) -> None:
    top = argparse.ArgumentParser(prog="python -m bench.wave_client")
    top.add_argument("--url", required=True)
    top.add_argument("--op", default="sign_in")
    top.add_argument("--first", type=int, default=0)
    top.add_argument("--count", type=int, required=True)
    top.add_argument("--concurrency", type=int, default=100)
    top.add_argument("--player-prefix", default="wave-")
    args = top.parse_args(argv)
    raise_fd_limit(args.concurrency)
    now_s = int(time.time())
    tokens = [
        issue_token(JWT_SECRET, f"{args.player_prefix}{i:06d}", now_s)
        for i in range(args.first, args.first + args.count)
    ]
    print(json.dumps({"ready": len(tokens)}), flush=True)
    if wait_for_line(sys.stdin) != "go":
        return
    print(json.dumps(asyncio.run(run(args, tokens))), flush=True)


if __name__ == "__main__":
    main()
