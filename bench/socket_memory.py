"""`python -m bench.socket_memory`: where an idle socket's memory goes in the bare stack.

The echo app (bench/echo_app.py) under uvicorn's own WebSocket protocol (the bare stack
the issue-10 ratios are taken against; `manor serve` runs on our wire instead), in a
child process with tracemalloc on. The child takes a snapshot after a warm-up of
`--warmup` sockets opened and closed, and another once `--sockets` idle sockets are open
(bench/hold_client.py, the idle_sockets phase's client); the difference, grouped by the
package that allocated it, divided by the sockets, is printed in bytes per socket: what
uvicorn, websockets, Starlette and asyncio hold for a socket before an app does anything
with it, the bytes that led to our own wire (server/transport/wire.py).
tracemalloc counts Python's allocations only (not the allocator's slack), so RSS per
socket is a little higher.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

from bench.procs import free_port, wait_listening

SNAPSHOT_S_MAX = 120.0  # a snapshot of thousands of sockets takes a while


def package_of(filename: str) -> str:
    if "site-packages/" in filename:
        return filename.split("site-packages/")[1].split("/", maxsplit=1)[0]
    if "/asyncio/" in filename:
        return "asyncio/" + Path(filename).name
    return Path(filename).name


def serve(port: int, out: Path) -> None:
    """The child: uvicorn + echo app; SIGUSR1 snapshots, the second writes the diff."""
    tracemalloc.start(1)
    import gc

    import uvicorn

    from bench.echo_app import create_echo_app
    from bench.serve import BASELINE_WS
    from server.settings import Settings
    from server.transport.ws import uvicorn_options

    taken: list[tracemalloc.Snapshot] = []

    def snapshot(*_: Any) -> None:
        gc.collect()
        taken.append(tracemalloc.take_snapshot())
        if len(taken) == 2:
            groups: collections.Counter[str] = collections.Counter()
            for stat in taken[1].compare_to(taken[0], "filename"):
                groups[package_of(stat.traceback[0].filename)] += stat.size_diff
            out.write_text(json.dumps(dict(groups)))

    signal.signal(signal.SIGUSR1, snapshot)
    options = {**uvicorn_options(Settings()), "ws": BASELINE_WS}  # the bare stack
    uvicorn.run(create_echo_app(), host="127.0.0.1", port=port, log_level="warning", **options)


def hold(url: str, count: int, prefix: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "bench.hold_client", "--url", url, "--count", str(count),
         "--concurrency", "100", "--player-prefix", prefix],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip


def ready(client: subprocess.Popen[str]) -> dict[str, Any]:
    assert client.stdout is not None
    report: dict[str, Any] = json.loads(client.stdout.readline())
    return report


def measure(sockets: int, warmup: int) -> dict[str, int]:
    port = free_port()
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "groups.json"
        child = subprocess.Popen(
            [sys.executable, "-m", "bench.socket_memory", "--serve", str(port), "--out", str(out)]
        )
        try:
            wait_listening(port, child)
            url = f"ws://127.0.0.1:{port}/v1/ws"
            warm = hold(url, warmup, "warm-")
            ready(warm)
            warm.communicate("go\n")
            time.sleep(1)
            os.kill(child.pid, signal.SIGUSR1)
            time.sleep(2)
            held = hold(url, sockets, "idle-")
            opened = ready(held)
            assert opened["ready"] == sockets, opened
            os.kill(child.pid, signal.SIGUSR1)
            deadline = time.monotonic() + SNAPSHOT_S_MAX
            while not out.exists() and time.monotonic() < deadline:
                time.sleep(0.2)
            held.communicate("go\n")
            groups: dict[str, int] = json.loads(out.read_text())
        finally:
            child.terminate()
            child.wait()
    return groups


def main() -> None:
    top = argparse.ArgumentParser(prog="python -m bench.socket_memory", description=__doc__)
    top.add_argument("--sockets", type=int, default=2000)
    top.add_argument("--warmup", type=int, default=200)
    top.add_argument("--serve", type=int, default=0, help=argparse.SUPPRESS)
    top.add_argument("--out", default="", help=argparse.SUPPRESS)
    args = top.parse_args()
    if args.serve:
        serve(args.serve, Path(args.out))
        return
    groups = measure(args.sockets, args.warmup)
    total = sum(groups.values())
    print(f"bare stack, {args.sockets} idle sockets: {total / args.sockets:8.0f} B per socket")
    for name, size in sorted(groups.items(), key=lambda item: -item[1]):
        if size / args.sockets >= 50:
            print(f"  {name:32} {size / args.sockets:8.0f} B")


if __name__ == "__main__":
    main()
