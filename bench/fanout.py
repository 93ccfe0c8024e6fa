"""Phase `fanout`: pushes delivered to sockets held by a server process, beside the bare
relay baseline (bench/relay_baseline.py) on the same store, driven the same way.

On one store or on the cluster (bench/stores.py): on the cluster the app and the relay
both get its redis+cluster:// URL and SSUBSCRIBE each channel on the primary owning its
slot (the relay's sharded twin), and the clients SPUBLISH there.

The pushes are published the way a commit publishes them (PUBLISH, or SPUBLISH on a
cluster, on each player's push channel, a msgpack {push, seq, data} frame:
server/store/lua/commit.lua) by the client
processes (bench/push_client.py), in rounds of one push per socket with a bounded number
of rounds in flight; the server process only relays, as a process holding sockets does for
pushes that other processes' commits publish. Figures: pushes delivered per second, p50 /
p99 publish-to-receive latency, CPU per push of the server, Redis and clients.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from bench import probe
from bench.clients import Clients, split
from bench.loadgen import percentile_ms
from bench.procs import bench_server, free_port
from bench.stores import StoreShape, label, started_store
from bench.verdict import Target

OPEN_S_MAX = 300.0
RUN_SLACK_S = 60.0
TARGET = Target("fan-out pushes/s / bare relay", ">=", 0.7)


def drive(
    args: argparse.Namespace, url: str, redis_url: str, watched: dict[str, int]
) -> dict[str, Any]:
    options = [
        [
            "--url", url, "--redis-url", redis_url, "--first", str(s.start), "--count", str(len(s)),
            "--window", str(args.fanout_window), "--duration-s", str(args.fanout_duration_s),
        ]
        for s in split(args.fanout_sockets, args.fanout_procs)
    ]  # fmt: skip
    with Clients("bench.push_client", options) as clients:
        opened = clients.ready(OPEN_S_MAX)
        before = {role: probe.cpu_s(pid) for role, pid in watched.items()}
        clients.go()
        reports = clients.reports(args.fanout_duration_s + RUN_SLACK_S)
        after = {role: probe.cpu_s(pid) for role, pid in watched.items()}
    received = sum(r["received"] for r in reports)
    window_s = max(r["window_s"] for r in reports)
    # Each client's latencies come as evenly spaced quantiles: merged, they stay quantiles.
    merged = sorted(int(ms * 1e6) for r in reports for ms in r["latencies_ms_sample"])
    cpu_s = {role: after[role] - before[role] for role in watched}
    client_cpu_s = sum(r["client_cpu_s"] for r in reports)
    # The server CPU is sampled around the whole run (warm-up and drain included): per push,
    # over every push it delivered in that time (rounds x sockets).
    pushes_all = sum(r["rounds"] * r["sockets"] for r in reports)
    return {
        "sockets": sum(r["ready"] for r in opened),
        "open_errors": sum(r["errors"] for r in opened),
        "closed_by_server": sum(r["closed_by_server"] for r in reports),
        "failures": [r["failure"] for r in reports if r["failure"]],
        "received_in_window": received,
        "pushes_per_s": received / window_s if window_s else 0.0,
        "latency_ms_p50": percentile_ms(merged, 0.50),
        "latency_ms_p99": percentile_ms(merged, 0.99),
        "cpu_us_per_push": {role: 1e6 * s / max(1, pushes_all) for role, s in cpu_s.items()},
        "client_cpu_us_per_push": 1e6 * client_cpu_s / max(1, received),
        "client_cpu_cores": client_cpu_s / window_s if window_s else 0.0,
    }


def run(args: argparse.Namespace, store: StoreShape) -> dict[str, Any]:
    out: dict[str, Any] = {"store": label(store)}
    with (
        tempfile.TemporaryDirectory(prefix="manor-fanout-") as tmp,
        started_store(Path(tmp) / "store", store) as (redis_url, nodes),
    ):
        redis_pids = {f"redis{i}": pid for i, (_, pid) in enumerate(nodes)}
        for name, app, options in (
            ("relay", "relay", ["--redis-url", redis_url]),
            ("app", "signin", ["--redis-url", redis_url, "--data-dir", tmp, "--day-ms", "0"]),
        ):
            port = free_port()
            with bench_server(app, port, options) as server:
                url = f"ws://127.0.0.1:{port}/v1/ws"
                out[name] = drive(args, url, redis_url, {"server": server.pid, **redis_pids})
    base = out["relay"]["pushes_per_s"]
    ratio = out["app"]["pushes_per_s"] / base if base else float("nan")
    broken = out["app"]["failures"] or out["app"]["closed_by_server"]
    out["ratio"] = ratio
    out["verdicts"] = [TARGET.of(ratio, store, valid=not broken)]
    return out


def lines(result: dict[str, Any]) -> list[str]:
    out = []
    for name in ("relay", "app"):
        f = result[name]
        cpu = "  ".join(f"{role} {us:.1f} µs" for role, us in f["cpu_us_per_push"].items())
        out.append(
            f"  {name:<5} {f['sockets']} sockets: {f['pushes_per_s']:8.0f} pushes/s  "
            f"p50 {f['latency_ms_p50']:.1f} ms  p99 {f['latency_ms_p99']:.1f} ms; "
            f"CPU per push: {cpu}  clients {f['client_cpu_us_per_push']:.1f} µs"
        )
        if f["failures"] or f["closed_by_server"] or f["open_errors"]:
            out.append(
                f"        failures {f['failures'][:2]}  closed by the server "
                f"{f['closed_by_server']}  open errors {f['open_errors']}"
            )
    out.append(f"  ratio app / relay: {result['ratio']:.3f} ({result['store']})")
    return out


def add_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("fanout")
    group.add_argument("--fanout-sockets", type=int, default=2_000)
    group.add_argument("--fanout-procs", type=int, default=2, help="client processes")
    group.add_argument("--fanout-window", type=int, default=4, help="rounds in flight")
    group.add_argument("--fanout-duration-s", type=float, default=5.0)
