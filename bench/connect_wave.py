"""Phase `connect_wave`: every app opening at midnight, or a reconnect storm after a deploy.

`players` fresh players each open a socket, sign in once (credited: their first sign-in
of the business day) and close, `concurrency` at a time (bench/wave_client.py). The
baseline: the same uvicorn stack's bare open -> one echo -> close (bench/echo_app.py),
driven the same way. Server CPU per player comes from /proc/<pid>/stat of the server
process (and of each Redis primary) around each wave. The app runs on the phase's store
(one server, or the cluster's redis+cluster:// URL: bench/stores.py); the echo baseline
has no store and runs the same either way.

This VM's speed drifts by tens of percent within a minute (echo alone ran at 1 482 and
2 458 players/s two minutes apart), so one echo wave and one sign-in wave after it
measure the drift as much as the app. The players are cut into `rounds`; each round runs
an echo wave, then a sign-in wave of fresh players (each server started for its wave,
the store kept up), and the verdict is the median of the rounds' ratios. The totals, CPU
and latency cover all rounds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path
from typing import Any

from bench import probe
from bench.clients import Clients, split
from bench.procs import bench_server, free_port
from bench.stores import StoreShape, label, started_store
from bench.verdict import Target, cores_needed

READY_S_MAX = 120.0  # tokens for 20 000 players
WAVE_S_MAX = 600.0
TARGET = Target("connect wave credited/s / echo open-echo-close/s", ">=", 0.7)


def wave(
    args: argparse.Namespace, url: str, op: str, watched: dict[str, int], players: range
) -> dict[str, Any]:
    """One wave of `players` against `url`; CPU seconds of each watched process ({role:
    pid}) around it."""
    slices = split(len(players), args.wave_procs)
    concurrency = split(args.wave_concurrency, len(slices))
    options = [
        [
            "--url", url, "--op", op, "--first", str(players.start + share.start),
            "--count", str(len(share)), "--concurrency", str(len(lanes)),
            "--player-prefix", f"wave-{op}-",
        ]
        for share, lanes in zip(slices, concurrency, strict=True)
    ]  # fmt: skip
    with Clients("bench.wave_client", options) as clients:
        clients.ready(READY_S_MAX)
        before = {role: probe.cpu_s(pid) for role, pid in watched.items()}
        clients.go()
        reports = clients.reports(WAVE_S_MAX)
        after = {role: probe.cpu_s(pid) for role, pid in watched.items()}
    return {
        "reports": reports,
        "cpu_s": {role: after[role] - before[role] for role in watched},
    }


def summed(waves: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    """One side's rounds as one wave: totals, wall time, CPU per player, the worst
    round's latency percentiles."""
    reports = [r for w in waves for r in w["reports"]]
    done = sum(r["done"] for r in reports)
    # A round's client processes run at once: its wall time is its slowest one's.
    wall_s = sum(max(r["wall_s"] for r in w["reports"]) for w in waves)
    cpu_s = {role: sum(w["cpu_s"][role] for w in waves) for role in waves[0]["cpu_s"]}
    client_cpu_s = sum(r["client_cpu_s"] for r in reports)
    return {
        "players": args.wave_players,
        "concurrency": args.wave_concurrency,
        "client_processes": len(waves[0]["reports"]),
        "rounds": len(waves),
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
        "client_cpu_us_per_player": client_cpu_s * 1e6 / max(1, done),
        "cpu_us_per_player_all": 1e6 * (sum(cpu_s.values()) + client_cpu_s) / max(1, done),
    }


def rate(one: dict[str, Any], key: str) -> float:
    """Players per second of one wave (`key`: "done" or "credited"), over the wall time of
    its slowest client process (they start together)."""
    wall_s = max(r["wall_s"] for r in one["reports"])
    return sum(r[key] for r in one["reports"]) / wall_s if wall_s else 0.0


def run(args: argparse.Namespace, store: StoreShape) -> dict[str, Any]:
    rounds = split(args.wave_players, max(1, min(args.wave_rounds, args.wave_players)))
    echoes: list[dict[str, Any]] = []
    signins: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory(prefix="manor-wave-") as tmp,
        started_store(Path(tmp) / "store", store) as (redis_url, nodes),
    ):
        app_options = ["--redis-url", redis_url, "--data-dir", tmp, "--day-ms", "0"]
        for players in rounds:
            # One server at a time: the app's scheduled jobs (timer polls, leases) must not
            # run beside the baseline. The store stays up, idle during the echo wave.
            port = free_port()
            with bench_server("echo", port, []) as server:
                url = f"ws://127.0.0.1:{port}/v1/ws"
                echoes.append(wave(args, url, "echo", {"server": server.pid}, players))
            port = free_port()
            with bench_server("signin", port, app_options) as server:
                watched = {
                    "server": server.pid,
                    **{f"redis{i}": pid for i, (_, pid) in enumerate(nodes)},
                }
                url = f"ws://127.0.0.1:{port}/v1/ws"
                signins.append(wave(args, url, "sign_in", watched, players))
    ratios = []
    for echo_round, signin_round in zip(echoes, signins, strict=True):
        echo_per_s = rate(echo_round, "done")
        credited_per_s = rate(signin_round, "credited")
        ratios.append(credited_per_s / echo_per_s if echo_per_s else float("nan"))
    echo, signin = summed(echoes, args), summed(signins, args)
    ratio = statistics.median(ratios) if ratios else float("nan")
    verdict = TARGET.of(ratio, store)
    if signin["players_per_s"] and echo["players_per_s"]:
        # Every process's CPU per player (server, stores, client): the cores the target
        # needs at it, against echo's rate over the same rounds (bench/verdict.py).
        needed = cores_needed(TARGET.target, echo["players_per_s"], signin["cpu_us_per_player_all"])
        verdict["cores"] = {
            "needed": needed,
            "used": signin["cpu_us_per_player_all"] * 1e-6 * signin["players_per_s"],
            "base_used": echo["cpu_us_per_player_all"] * 1e-6 * echo["players_per_s"],
            "machine": os.cpu_count(),
        }
    return {
        "store": label(store),
        "echo": echo,
        "sign_in": signin,
        "credited_per_s": signin["credited"] / signin["wall_s"] if signin["wall_s"] else 0.0,
        "round_ratios": ratios,
        "ratio": ratio,
        "verdicts": [verdict],
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
            f"  all {w['cpu_us_per_player_all']:.0f} µs"
        )
        if w["errors"]:
            out.append(f"           errors: {w['error_samples']}")
    out.append(f"  credited players/s {result['credited_per_s']:.0f} ({result['store']})")
    rounds = "  ".join(f"{r:.3f}" for r in result["round_ratios"])
    out.append(f"  ratio per round (echo, then sign-in): {rounds}; median {result['ratio']:.3f}")
    return out


def add_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("connect_wave")
    group.add_argument("--wave-players", type=int, default=20_000)
    group.add_argument("--wave-concurrency", type=int, default=100, help="sockets at a time")
    group.add_argument("--wave-procs", type=int, default=1, help="client processes")
    group.add_argument(
        "--wave-rounds", type=int, default=4, help="echo/sign-in pairs; verdict on the median"
    )
