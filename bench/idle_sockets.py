"""Phase `idle_sockets`: server memory per idle authenticated socket.

For the real app (bench/serve.py signin) and the bare stack (bench/echo_app.py): a warm-up
of `idle_warmup` sockets opened and closed (lazy imports, first allocations), then the
server's RSS, then `idle_sockets` sockets held open by client processes
(bench/hold_client.py, each handshake authenticated by its JWT) for `idle_settle_s`, then
the RSS again: per socket = (RSS after - RSS before) / sockets open. The app runs on the
phase's store (one server, or the cluster's redis+cluster:// URL: bench/stores.py); the
echo stack has none and runs the same either way.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.clients import Clients, rss_kb, split
from bench.procs import bench_server, free_port
from bench.stores import StoreShape, label, started_store
from bench.verdict import Target

OPEN_S_MAX = 300.0
CLOSE_S_MAX = 60.0
TARGET = Target("idle socket: server RSS per socket", "<=", 16, "KiB")


def hold(args: argparse.Namespace, url: str, count: int, procs: int, prefix: str) -> Clients:
    options = [
        ["--url", url, "--first", str(s.start), "--count", str(len(s)), "--player-prefix", prefix]
        for s in split(count, procs)
    ]
    return Clients("bench.hold_client", options)


def measure(args: argparse.Namespace, url: str, pid: int, prefix: str) -> dict[str, Any]:
    with hold(args, url, args.idle_warmup, 1, f"{prefix}warm-") as warm:
        warm.ready(OPEN_S_MAX)
        warm.go()
        warm.reports(CLOSE_S_MAX)
    time.sleep(args.idle_settle_s)
    before_kib = rss_kb(pid)
    with hold(args, url, args.idle_sockets, args.idle_procs, prefix) as clients:
        opened = clients.ready(OPEN_S_MAX)
        time.sleep(args.idle_settle_s)
        after_kib = rss_kb(pid)
        clients.go()
        closed = clients.reports(CLOSE_S_MAX)
    sockets = sum(r["ready"] for r in opened)
    return {
        "sockets": sockets,
        "open_errors": sum(r["errors"] for r in opened),
        "error_samples": [e for r in opened for e in r["error_samples"]][:5],
        "alive_at_end": sum(r["alive_at_end"] for r in closed),
        "open_s": max(r["open_s"] for r in opened),
        "rss_before_kib": before_kib,
        "rss_after_kib": after_kib,
        "rss_kib_per_socket": (after_kib - before_kib) / sockets if sockets else float("nan"),
    }


def run(args: argparse.Namespace, store: StoreShape) -> dict[str, Any]:
    port = free_port()
    with bench_server("echo", port, []) as server:
        echo = measure(args, f"ws://127.0.0.1:{port}/v1/ws", server.pid, "idle-echo-")
    with (
        tempfile.TemporaryDirectory(prefix="manor-idle-") as tmp,
        started_store(Path(tmp) / "store", store) as (redis_url, _),
    ):
        options = ["--redis-url", redis_url, "--data-dir", tmp, "--day-ms", "0"]
        port = free_port()
        with bench_server("signin", port, options) as server:
            app = measure(args, f"ws://127.0.0.1:{port}/v1/ws", server.pid, "idle-")
    return {
        "store": label(store),
        "echo": echo,
        "app": app,
        "verdicts": [TARGET.of(app["rss_kib_per_socket"], store)],
    }


def lines(result: dict[str, Any]) -> list[str]:
    out = []
    for name in ("echo", "app"):
        m = result[name]
        who = name if name == "echo" else f"app, {result['store']}"
        out.append(
            f"  {who:<14} {m['sockets']:>6} idle sockets (opened in {m['open_s']:.1f} s): RSS "
            f"{m['rss_before_kib'] / 1024:.1f} -> {m['rss_after_kib'] / 1024:.1f} MiB, "
            f"{m['rss_kib_per_socket']:.1f} KiB per socket; open errors {m['open_errors']}, "
            f"still open at the end {m['alive_at_end']}"
        )
        if m["open_errors"]:
            out.append(f"        errors: {m['error_samples']}")
    return out


def add_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("idle_sockets")
    group.add_argument("--idle-sockets", type=int, default=5_000)
    group.add_argument("--idle-procs", type=int, default=2, help="client processes")
    group.add_argument("--idle-warmup", type=int, default=200, help="sockets opened first")
    group.add_argument("--idle-settle-s", type=float, default=2.0)
