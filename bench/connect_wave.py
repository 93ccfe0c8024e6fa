"""Phase `connect_wave`: every app opening at midnight, or a reconnect storm after a deploy.

`players` fresh players each open a socket, sign in once (credited: their first sign-in
of the business day) and close, `concurrency` at a time (bench/wave_client.py). The
baseline, in the same run: the same uvicorn stack's bare open -> one echo -> close
(bench/echo_app.py), driven the same way. Server CPU per player comes from
/proc/<pid>/stat of the server process (and of each Redis primary) around the wave. The
app runs on the phase's store (one server, or the cluster's redis+cluster:// URL:
bench/stores.py); the echo baseline has no store and runs the same either way.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from bench import probe
from bench.clients import Clients, split
from bench.procs import bench_server, free_port
from bench.stores import StoreShape, label, started_store
from bench.verdict import Target

READY_S_MAX = 120.0  # tokens for 20 000 players
WAVE_S_MAX = 600.0
TARGET = Target("connect wave credited/s / echo open-echo-close/s", ">=", 0.7)


def wave(args: argparse.Namespace, url: str, op: str, watched: dict[str, int]) -> dict[str, Any]:
    """One wave against `url`; CPU seconds of each watched process ({role: pid}) around it."""
    slices = split(args.wave_players, args.wave_procs)
    concurrency = split(args.wave_concurrency, len(slices))
    options = [
        [
            "--url", url, "--op", op, "--first", str(players.start), "--count", str(len(players)),
            "--concurrency", str(len(share)), "--player-prefix", f"wave-{op}-",
        ]
        for players, share in zip(slices, concurrency, strict=True)
    ]  # fmt: skip
    with Clients("bench.wave_client", options) as clients:
        clients.ready(READY_S_MAX)
        before = {role: probe.cpu_s(pid) for role, pid in watched.items()}
        clients.go()
        reports = clients.reports(WAVE_S_MAX)
        after = {role: probe.cpu_s(pid) for role, pid in watched.items()}
    done = sum(r["done"] for r in reports)
    wall_s = max(r["wall_s"] for r in reports)
    cpu_s = {role: after[role] - before[role] for role in watched}
    return {
        "players": args.wave_players,
        "concurrency": args.wave_concurrency,
        "client_processes": len(reports),
        "done": done,
        "credited": sum(r["credited"] for r in reports),
        "errors": sum(r["errors"] for r in reports),
        "error_samples": [e for r in reports for e in r["error_samples"]][:5],
        "wall_s": wall_s,
        "players_per_s": done / wall_s if wall_s else 0.0,
        "latency_ms_p50": max(r["latency_ms_p50"] for r in reports),
        "latency_ms_p99": max(r["latency_ms_p99"] for r in reports),
        "cpu_us_per_player": {role: 1e6 * s / max(1, done) for role, s in cpu_s.items()},
        "cpu_cores": {role: s / wall_s for role, s in cpu_s.items()} if wall_s else {},
        "client_cpu_us_per_player": 1e6 * sum(r["client_cpu_s"] for r in reports) / max(1, done),
    }


def run(args: argparse.Namespace, store: StoreShape) -> dict[str, Any]:
    port = free_port()
    with bench_server("echo", port, []) as server:
        echo = wave(args, f"ws://127.0.0.1:{port}/v1/ws", "echo", {"server": server.pid})
    with (
        tempfile.TemporaryDirectory(prefix="manor-wave-") as tmp,
        started_store(Path(tmp) / "store", store) as (redis_url, nodes),
    ):
        options = ["--redis-url", redis_url, "--data-dir", tmp, "--day-ms", "0"]
        port = free_port()
        with bench_server("signin", port, options) as server:
            watched = {
                "server": server.pid,
                **{f"redis{i}": pid for i, (_, pid) in enumerate(nodes)},
            }
            signin = wave(args, f"ws://127.0.0.1:{port}/v1/ws", "sign_in", watched)
    credited_per_s = signin["credited"] / signin["wall_s"] if signin["wall_s"] else 0.0
    ratio = credited_per_s / echo["players_per_s"] if echo["players_per_s"] else float("nan")
    return {
        "store": label(store),
        "echo": echo,
        "sign_in": signin,
        "credited_per_s": credited_per_s,
        "ratio": ratio,
        "verdicts": [TARGET.of(ratio, store)],
    }


def lines(result: dict[str, Any]) -> list[str]:
    out = []
    for name in ("echo", "sign_in"):
        w = result[name]
        cpu = "  ".join(f"{role} {us:.0f} µs" for role, us in w["cpu_us_per_player"].items())
        out.append(
            f"  {name:<8} {w['done']:>6} of {w['players']} players in {w['wall_s']:6.1f} s: "
            f"{w['players_per_s']:7.0f}/s  p50 {w['latency_ms_p50']:.1f} ms  "
            f"p99 {w['latency_ms_p99']:.1f} ms  credited {w['credited']}  errors {w['errors']}"
        )
        out.append(
            f"           CPU per player: {cpu}  client {w['client_cpu_us_per_player']:.0f} µs"
        )
        if w["errors"]:
            out.append(f"           errors: {w['error_samples']}")
    out.append(f"  credited players/s {result['credited_per_s']:.0f} ({result['store']})")
    return out


def add_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("connect_wave")
    group.add_argument("--wave-players", type=int, default=20_000)
    group.add_argument("--wave-concurrency", type=int, default=100, help="sockets at a time")
    group.add_argument("--wave-procs", type=int, default=1, help="client processes")
