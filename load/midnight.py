"""The midnight spike: every player's business day turns at once, and they all sign in.

    python -m load.midnight [--players 20000] [--servers 2] [--clients 4] [--store cluster]
    (make load-midnight: one store)

1. starts a store (the embedded Valkey, appendfsync always; with `--store cluster` a local
   Redis Cluster of three primaries, appendfsync always, whose redis+cluster:// URL the
   servers get: bench/stores.py) and `--servers` processes of
   `manor serve` on it (MANOR_REDIS_URL, MANOR_DEV_CLOCK=1; several processes because one
   holds at most RLIMIT_NOFILE sockets), and waits for their /readyz;
2. `--clients` client processes (this module with `--client`) open one socket per player,
   player i on server i mod servers, and sign each player in once (day D, credited);
3. POST /dev/clock moves the clock to the next midnight in the rules' time zone (the other
   processes follow through the store within DEV_CLOCK_POLL_S), then every player sends
   `sign_in` at an instant spread evenly over `--spread-s` (1 s) from a common start;
4. prints the time from that start until the last player was credited, latency p50/p99,
   errors (an error reply, a failed socket, or a sign-in that credited nothing), then stops
   the servers and runs `manor ledger verify` on the store.
Exit status 0 only with every player credited, no error and the ledger verified. Every wait
is bounded; every process it started is stopped on the way out.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import msgpack
from websockets.asyncio.client import ClientConnection

from bench.clients import Clients, raise_fd_limit, split, wait_for_line
from bench.hold_client import open_all
from bench.loadgen import FRAMES_PER_REPLY_MAX, percentile_ms
from bench.procs import free_port
from bench.serve import JWT_SECRET
from bench.stores import CLUSTER_STORE, ONE_STORE, label, started_store
from load.smoke import ledger_verify, running_server
from server.rulebook import read_rules

REPO = Path(__file__).resolve().parent.parent
SETUP_S_MAX = 600.0  # 20 000 handshakes and first sign-ins on a busy machine
SPIKE_S_MAX = 120.0
FOLLOW_S = 0.6  # > DEV_CLOCK_POLL_S (server/app.py): every process has the new day
START_LEAD_S = 0.5
VERIFY_WAIT_S_MAX = 300.0
ERRORS_KEPT_MAX = 5
STORES = {"one": ONE_STORE, "cluster": CLUSTER_STORE}


# -- client process -------------------------------------------------------------------


async def sign_in(socket: ClientConnection, request_id: int) -> dict[str, Any]:
    await socket.send(msgpack.packb({"id": request_id, "op": "sign_in", "args": {}}))
    for _ in range(FRAMES_PER_REPLY_MAX):
        reply: dict[str, Any] = msgpack.unpackb(await socket.recv(), raw=False)
        if "push" not in reply:
            return reply
    raise RuntimeError(f"no reply within {FRAMES_PER_REPLY_MAX} frames")


async def client(args: argparse.Namespace) -> None:
    players = [f"mid-{i:06d}" for i in range(args.first, args.first + args.count)]
    sockets: list[ClientConnection] = []
    errors: list[str] = []
    for index, url in enumerate(args.url):  # player i -> server i mod servers
        mine = players[index :: len(args.url)]
        opened, failed = await open_all(url, mine, args.concurrency)
        sockets += opened
        errors += failed
    firsts = await asyncio.gather(*(sign_in(s, 1) for s in sockets), return_exceptions=True)
    day_one = sum(
        1 for r in firsts if isinstance(r, dict) and r.get("ok") and not r["result"]["already"]
    )
    print(json.dumps({"ready": len(sockets), "day_one_credited": day_one}), flush=True)
    line = await asyncio.get_running_loop().run_in_executor(None, wait_for_line, sys.stdin)
    if not line.startswith("go "):
        return
    start_s = float(line.split()[1])  # epoch seconds, the same for every client process
    latencies_ns: list[int] = []
    done_at_s = 0.0
    credited = 0

    async def at_midnight(position: int, socket: ClientConnection) -> None:
        nonlocal done_at_s, credited
        offset_s = args.spread_s * (args.first + position) / args.players
        await asyncio.sleep(max(0.0, start_s + offset_s - time.time()))
        sent_ns = time.perf_counter_ns()
        try:
            reply = await sign_in(socket, 2)
        except Exception as exc:  # noqa: BLE001 - an error of the run, counted
            errors.append(repr(exc))
            return
        latencies_ns.append(time.perf_counter_ns() - sent_ns)
        if not reply.get("ok"):
            errors.append(repr(reply.get("error")))
        elif reply["result"]["already"]:
            errors.append("a sign-in after midnight credited nothing")
        else:
            credited += 1
            done_at_s = max(done_at_s, time.time())

    await asyncio.gather(*(at_midnight(i, s) for i, s in enumerate(sockets)))
    await asyncio.gather(*(s.close() for s in sockets), return_exceptions=True)
    latencies_ns.sort()
    report = {
        "players": len(players),
        "credited": credited,
        "errors": len(errors) + len(players) - len(sockets),
        "error_samples": errors[:ERRORS_KEPT_MAX],
        "done_at_s": done_at_s,
        "latencies_ms": [n / 1e6 for n in latencies_ns],
    }
    print(json.dumps(report), flush=True)


# -- driver ---------------------------------------------------------------------------


def post_clock(base_url: str, advance_ms: int) -> int:
    request = urllib.request.Request(
        base_url + "/dev/clock",
        data=json.dumps({"advance_ms": advance_ms}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return int(json.loads(response.read())["now_ms"])


def to_next_midnight_ms(now_ms: int, timezone: str) -> int:
    local = datetime.fromtimestamp(now_ms / 1000, ZoneInfo(timezone))
    midnight = (local + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return int(midnight.timestamp() * 1000) - now_ms


def server_env(work: Path, port: int, redis_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MANOR_")}
    env.update(
        MANOR_HOST="127.0.0.1",
        MANOR_PORT=str(port),
        MANOR_DATA_DIR=str(work / "data"),
        MANOR_REDIS_URL=redis_url,
        MANOR_JWT_SECRET=JWT_SECRET,
        MANOR_DEV_CLOCK="1",
        PYTHONUNBUFFERED="1",
    )
    if os.environ.get("MANOR_RULES"):
        env["MANOR_RULES"] = os.environ["MANOR_RULES"]
    return env


def verify(env: dict[str, str]) -> tuple[bool, str]:
    done = ledger_verify(env, VERIFY_WAIT_S_MAX)
    return done.returncode == 0, (done.stdout + done.stderr).strip()


def spike(args: argparse.Namespace, urls: list[str], base_url: str) -> dict[str, Any]:
    """Clients ready, the clock at midnight, every player signing in within spread_s."""
    options = [
        [
            "--client", "--first", str(s.start), "--count", str(len(s)),
            "--players", str(args.players), "--spread-s", str(args.spread_s),
            *(x for url in urls for x in ("--url", url)),
        ]
        for s in split(args.players, args.clients)
    ]  # fmt: skip
    with Clients("load.midnight", options) as clients:
        ready = clients.ready(SETUP_S_MAX)
        timezone = read_rules(os.environ.get("MANOR_RULES", "")).timezone
        now_ms = post_clock(base_url, 0)
        post_clock(base_url, to_next_midnight_ms(now_ms, timezone))
        time.sleep(FOLLOW_S)
        start_s = time.time() + START_LEAD_S
        clients.go(f"go {start_s!r}")
        reports = clients.reports(SPIKE_S_MAX + args.spread_s)
    latencies = sorted(int(ms * 1e6) for r in reports for ms in r["latencies_ms"])
    return {
        "players": args.players,
        "sockets": sum(r["ready"] for r in ready),
        "day_one_credited": sum(r["day_one_credited"] for r in ready),
        "credited": sum(r["credited"] for r in reports),
        "errors": sum(r["errors"] for r in reports),
        "error_samples": [e for r in reports for e in r["error_samples"]][:ERRORS_KEPT_MAX],
        "all_credited_after_s": max(r["done_at_s"] for r in reports) - start_s,
        "latency_ms_p50": percentile_ms(latencies, 0.50),
        "latency_ms_p99": percentile_ms(latencies, 0.99),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="manor-midnight-") as tmp:
        work = Path(tmp)
        with started_store(work / "store", STORES[args.store]) as (redis_url, _):
            ports = [free_port() for _ in range(args.servers)]
            envs = [server_env(work, port, redis_url) for port in ports]
            with contextlib.ExitStack() as stack:
                base_urls = [
                    stack.enter_context(running_server(env, work / f"server-{n}.log"))
                    for n, env in enumerate(envs)
                ]
                urls = [u.replace("http://", "ws://") + "/v1/ws" for u in base_urls]
                result = spike(args, urls, base_urls[0])
            result["verify_ok"], result["verify_output"] = verify(envs[0])
    result["store"] = label(STORES[args.store])
    result["ok"] = (
        result["day_one_credited"] == result["credited"] == args.players
        and result["errors"] == 0
        and result["verify_ok"]
    )
    return result


def summary(r: dict[str, Any]) -> str:
    return "\n".join(
        [
            f"midnight ({r['store']}): {r['players']} players on {r['sockets']} sockets "
            f"({r['day_one_credited']} credited the day before)",
            f"  all credited after {r['all_credited_after_s']:.2f} s from the first sign-in "
            f"(spread over the first second); {r['credited']} credited",
            f"  sign_in latency p50 {r['latency_ms_p50']:.0f} ms  p99 {r['latency_ms_p99']:.0f} ms",
            f"  errors {r['errors']} {r['error_samples'] if r['errors'] else ''}".rstrip(),
            f"  {r['verify_output'].splitlines()[0] if r['verify_output'] else 'no verify'}",
            f"load midnight: {'ok' if r['ok'] else 'FAILED'}",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m load.midnight", description=__doc__)
    parser.add_argument("--players", type=int, default=20_000)
    parser.add_argument("--servers", type=int, default=2, help="manor serve processes")
    parser.add_argument("--clients", type=int, default=4, help="client processes")
    parser.add_argument("--spread-s", type=float, default=1.0)
    parser.add_argument(
        "--store", choices=sorted(STORES), default="one", help="one server, or three primaries"
    )
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", action="append", default=[], help=argparse.SUPPRESS)
    parser.add_argument("--first", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--concurrency", type=int, default=100, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.client:
        raise_fd_limit(args.count)
        asyncio.run(client(args))
        return 0
    result = run(args)
    print(summary(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
