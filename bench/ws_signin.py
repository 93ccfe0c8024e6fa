"""`make bench`: WebSocket round trips/s of a bare msgpack echo vs the real `sign_in`.

Phases, each with its own server process and a separate client process (bench/loadgen.py):
  echo            bench/echo_app.py under the uvicorn options of `manor serve`
  signin_always   server.app.create_app + embedded store, appendfsync always (the default)
  signin_everysec the same with appendfsync everysec
  signin_steady   the same as signin_always on a normal clock: after each player's first
                  sign-in of the day, replies are `already` (one load round trip, no commit)
The credit phases run a time-lapse clock so nearly every sign-in credits coins.
Figures are printed and written to bench/results/<UTC timestamp>.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import tempfile
from pathlib import Path
from typing import Any

from bench.procs import REPO, bench_server, exit_on_sigterm, free_port, run_loadgen
from server.store.embedded import EmbeddedStore

RESULTS_DIR = REPO / "bench" / "results"
PHASE_SLACK_S = 60.0  # connect, drain and exit on top of warm-up + window
PHASES = ("echo", "signin_always", "signin_everysec", "signin_steady")


def loadgen_options(args: argparse.Namespace, port: int, op: str) -> list[str]:
    return [
        "--url",
        f"ws://127.0.0.1:{port}/v1/ws",
        "--op",
        op,
        "--connections",
        str(args.connections),
        "--warmup-s",
        str(args.warmup_s),
        "--duration-s",
        str(args.duration_s),
    ]


def summarize(report: dict[str, Any], server_pid: int, redis_pid: int | None) -> dict[str, Any]:
    """Per-request figures from a loadgen report."""
    replies = max(1, report["replies"])
    window_s = report["window_s"]
    cpu = report["cpu_s_by_pid"]
    server_cpu_s = cpu[str(server_pid)]
    client_cpu_s = cpu[str(report["client_pid"])]
    summary = {
        **report,
        "server_cpu_us_per_request": 1e6 * server_cpu_s / replies,
        "server_cpu_cores": server_cpu_s / window_s,
        "client_cpu_cores": client_cpu_s / window_s,
        "credited_fraction": report["credited"] / replies,
        "pushes_per_request": report["pushes"] / replies,
    }
    if redis_pid is not None:
        redis_cpu_s = cpu[str(redis_pid)]
        summary["redis_cpu_us_per_request"] = 1e6 * redis_cpu_s / replies
        summary["redis_cpu_cores"] = redis_cpu_s / window_s
        summary["redis_commands_per_request"] = sum(report["redis_calls"].values()) / replies
    return summary


def run_echo(args: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    with bench_server("echo", port, []) as server:
        options = [*loadgen_options(args, port, "echo"), "--watch-pid", str(server.pid)]
        report = run_loadgen(options, args.warmup_s + args.duration_s + PHASE_SLACK_S)
    return summarize(report, server.pid, None)


def run_signin(args: argparse.Namespace, appendfsync: str, steady: bool = False) -> dict[str, Any]:
    """The real app; `steady`: on a normal clock (mostly `already`), else time-lapse."""
    with tempfile.TemporaryDirectory(prefix="manor-bench-") as tmp:
        store = EmbeddedStore(Path(tmp) / "store", appendfsync=appendfsync)
        try:
            redis_url = store.start()
            assert store.process is not None
            redis_pid = store.process.pid
            port = free_port()
            day_ms = 0.0 if steady else args.day_ms
            options = ["--redis-url", redis_url, "--data-dir", tmp, "--day-ms", str(day_ms)]
            options += ["--store-write-min", str(args.store_write_min)]
            options += ["--store-links", str(args.store_links)]
            if args.profile_dir:
                name = "steady" if steady else appendfsync
                profile = Path(args.profile_dir) / f"signin_{name}.pstats"
                options += ["--profile", str(profile.resolve())]
            with bench_server("signin", port, options) as server:
                client = loadgen_options(args, port, "sign_in")
                client += ["--watch-pid", str(server.pid), "--watch-pid", str(redis_pid)]
                client += ["--redis-url", redis_url]
                report = run_loadgen(client, args.warmup_s + args.duration_s + PHASE_SLACK_S)
        finally:
            store.stop()
    return {
        **summarize(report, server.pid, redis_pid),
        "appendfsync": appendfsync,
        "clock": "system" if steady else "time-lapse",
    }


def machine() -> dict[str, Any]:
    model = ""
    with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def print_phase(name: str, phase: dict[str, Any]) -> None:
    line = (
        f"{name:<16} {phase['round_trips_per_s']:>8.0f} rt/s  "
        f"p50 {phase['latency_ms_p50']:6.2f} ms  p99 {phase['latency_ms_p99']:6.2f} ms  "
        f"server {phase['server_cpu_us_per_request']:6.1f} µs/req "
        f"({phase['server_cpu_cores']:.2f} cores)  client {phase['client_cpu_cores']:.2f} cores"
    )
    if "redis_commands_per_request" in phase:
        line += (
            f"\n{'':<16} credited {phase['credited_fraction']:.1%}  "
            f"redis {phase['redis_commands_per_request']:.2f} cmds/req  "
            f"redis {phase['redis_cpu_us_per_request']:.1f} µs/req "
            f"({phase['redis_cpu_cores']:.2f} cores)  pushes {phase['pushes_per_request']:.2f}/req"
        )
    if phase["errors"] or phase["drivers_failed"]:
        line += f"\n{'':<16} ERRORS {phase['errors']}  failed {phase['drivers_failed']}"
    print(line, flush=True)


def main(argv: list[str] | None = None) -> int:
    top = argparse.ArgumentParser(prog="python -m bench.ws_signin", description=__doc__)
    top.add_argument("--connections", type=int, default=100)
    top.add_argument("--warmup-s", type=float, default=2.0)
    top.add_argument("--duration-s", type=float, default=10.0)
    top.add_argument("--day-ms", type=float, default=5.0, help="real ms per business day")
    top.add_argument(
        "--phases",
        default=",".join(PHASES),
        help=f"comma-separated subset of {','.join(PHASES)} (the ratio needs echo)",
    )
    top.add_argument("--store-write-min", type=int, default=0, help="0: the store's default")
    top.add_argument("--store-links", type=int, default=0, help="0: the store's default")
    top.add_argument("--profile-dir", default="", help="cProfile the sign-in servers into it")
    args = top.parse_args(argv)
    wanted = [name.strip() for name in args.phases.split(",") if name.strip()]
    unknown = sorted(set(wanted) - set(PHASES))
    if unknown:
        top.error(f"unknown phases {unknown}; choose from {', '.join(PHASES)}")
    exit_on_sigterm()
    started = dt.datetime.now(dt.UTC)
    print(
        f"bench: {args.connections} connections, {args.warmup_s} s warm-up, "
        f"{args.duration_s} s window, one business day per {args.day_ms} ms",
        flush=True,
    )
    phases: dict[str, dict[str, Any]] = {}
    for name in PHASES:
        if name in wanted:
            if name == "echo":
                phases[name] = run_echo(args)
            elif name == "signin_steady":
                phases[name] = run_signin(args, "always", steady=True)
            else:
                phases[name] = run_signin(args, name.removeprefix("signin_"))
            print_phase(name, phases[name])
    echo_rps = phases["echo"]["round_trips_per_s"] if "echo" in phases else 0.0
    ratios = {
        f"{name}_over_echo": phase["round_trips_per_s"] / echo_rps
        for name, phase in phases.items()
        if name != "echo" and echo_rps
    }
    for name, ratio in ratios.items():
        print(f"ratio {name}: {ratio:.3f}")
    results = {
        "started_utc": started.isoformat(),
        "machine": machine(),
        "options": vars(args),
        "phases": phases,
        "ratios": ratios,
    }
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
