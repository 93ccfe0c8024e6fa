"""`python -m bench.instructions`: server instructions per request, counted by callgrind.

This VM's speed drifts by tens of percent within minutes, so rt/s and CPU µs per request
compare two trees only over many alternated rounds. An instruction count does not drift:
each path's server (bench/serve.py, as `make bench` runs it) runs under valgrind's
callgrind twice, once answering `--requests` ÷ 4 requests and once `--requests`, over
`--sockets` sockets sending in closed loops; the difference of the two totals over the
difference of the requests is the server's instructions per request, with start-up,
handshakes and shutdown cancelled out. The store runs natively (its cost is not counted).

Paths: `echo` (the bare stack: bench/echo_app.py on uvicorn's own protocol), `steady`
(`sign_in` on the app's normal clock: `already` after the first), `credit` (the time-lapse
clock: every `sign_in` credits, its `balance` push read too), `floor` (a credit's I/O
without the game: bench/credit_floor.py, the app's wire, store and fan-out answering each
request with one script call, a reply and a `balance` push), and the connect wave's two:
`wave_echo` (a player opens a socket on the bare stack, one echo, closes) and `wave` (a new
player opens, signs in once, credited, and closes), counted per player. Two runs go at once (one
per core: counts do not depend on the machine's load). Slow: a few minutes per path.

    .venv/bin/python -m bench.instructions --paths echo,steady,credit --requests 2000
    .venv/bin/python -m bench.instructions --paths wave --store cluster --keep /tmp/cg

`--store cluster` serves the app on a fresh three-primary cluster; `--keep DIR` keeps the
callgrind outputs for `callgrind_annotate`.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgpack
from websockets.asyncio.client import connect

from bench.procs import REPO, free_port, stop
from bench.serve import JWT_SECRET
from bench.stores import CLUSTER_STORE, ONE_STORE, StoreKind, started_store
from server.auth import issue_token
from server.protocol import SUBPROTOCOL_MSGPACK

PATHS = ("echo", "steady", "credit", "floor", "wave_echo", "wave")
WAVES = ("wave_echo", "wave")  # a request is a player: open, one request, close
BARE = ("echo", "wave_echo")  # served by the bare stack (bench/echo_app.py)
APPS = {"echo": "echo", "wave_echo": "echo", "floor": "floor"}  # bench.serve's app; else signin
LISTEN_WAIT_S_MAX = 300.0  # Python's start-up under callgrind takes a minute or more
REPLY_WAIT_S_MAX = 60.0
TOTALS = re.compile(rb"^(?:summary|totals): (\d+)", re.MULTILINE)


async def drive(port: int, sockets: int, requests: int, path: str) -> None:
    """`requests` requests over `sockets` sockets in closed loops, each reply awaited; for
    a wave, `requests` players over `sockets` lanes, each a socket of its own."""
    op = "echo" if path in BARE else "sign_in"

    async def player(name: str, count: int) -> None:
        token = issue_token(JWT_SECRET, name, int(time.time()), 3600)
        async with connect(
            f"ws://127.0.0.1:{port}/v1/ws",
            subprotocols=[SUBPROTOCOL_MSGPACK],  # type: ignore[list-item]
            additional_headers={"Authorization": f"Bearer {token}"},
            open_timeout=REPLY_WAIT_S_MAX,
            ping_interval=None,
        ) as socket:
            for rid in range(count):
                await socket.send(msgpack.packb({"id": rid, "op": op}))
                while True:  # pushes (the credit path's `balance`) come before or after
                    frame = await asyncio.wait_for(socket.recv(), REPLY_WAIT_S_MAX)
                    if msgpack.unpackb(frame).get("id") == rid:
                        break

    async def lane(n: int, count: int) -> None:
        if path not in WAVES:
            await player(f"ins{n}", count)
            return
        for k in range(count):  # every player new: a wave's sign-in credits
            await player(f"ins{n}x{k}x{requests}", 1)

    shares = [requests // sockets + (1 if n < requests % sockets else 0) for n in range(sockets)]
    await asyncio.gather(*(lane(n, count) for n, count in enumerate(shares)))


def wait_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    import socket

    deadline_s = time.monotonic() + LISTEN_WAIT_S_MAX
    while time.monotonic() < deadline_s:
        if process.poll() is not None:
            raise RuntimeError(f"server under callgrind exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError("server under callgrind not listening")


def count(
    path: str, requests: int, sockets: int, valgrind: str, store: StoreKind, keep: Path | None
) -> int:
    """The server's total instructions for one run of `requests` requests; with `keep`,
    its callgrind output is copied there (for callgrind_annotate)."""
    with tempfile.TemporaryDirectory(prefix="manor-ins-") as tmp:
        port = free_port()
        out = Path(tmp) / "callgrind.out"
        command = [
            valgrind, "--tool=callgrind", f"--callgrind-out-file={out}", "--dump-instr=no",
            sys.executable, "-m", "bench.serve", APPS.get(path, "signin"),
            "--port", str(port),
        ]  # fmt: skip
        with started_store(Path(tmp) / "store", store) as (redis_url, _):
            if path == "floor":
                command += ["--redis-url", redis_url]
            elif path not in BARE:
                day_ms = "5" if path == "credit" else "0"
                command += ["--redis-url", redis_url, "--data-dir", tmp, "--day-ms", day_ms]
                command.append("--no-jobs")
            process = subprocess.Popen(
                command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            try:
                wait_listening(port, process)
                asyncio.run(drive(port, sockets, requests, path))
            finally:
                stop([process])
                process.wait()
        if keep is not None:
            keep.mkdir(parents=True, exist_ok=True)
            (keep / f"callgrind.{path}.{requests}").write_bytes(out.read_bytes())
        found = TOTALS.search(out.read_bytes())
        if found is None:
            raise RuntimeError(f"no totals in {out}")
        return int(found.group(1))


def per_request(
    paths: list[str],
    requests: int,
    sockets: int,
    valgrind: str = "valgrind",
    store: StoreKind = ONE_STORE,
    keep: Path | None = None,
) -> dict[str, float]:
    """Each path's server instructions per request: two counted runs, `requests` ÷ 4 (at
    least `sockets`) and `requests`, the difference over the difference of the requests."""
    small = max(sockets, requests // 4)
    if small >= requests:
        raise ValueError(f"requests ({requests}) must exceed max(sockets, requests / 4)")
    runs = [(path, n) for path in paths for n in (small, requests)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        totals = list(
            pool.map(lambda run: count(run[0], run[1], sockets, valgrind, store, keep), runs)
        )
    by_run = dict(zip(runs, totals, strict=True))
    return {
        path: (by_run[(path, requests)] - by_run[(path, small)]) / (requests - small)
        for path in paths
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.instructions")
    parser.add_argument("--paths", default=",".join(PATHS))
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--sockets", type=int, default=10)
    parser.add_argument("--valgrind", default="valgrind")
    parser.add_argument("--store", choices=("one", "cluster"), default="one")
    parser.add_argument("--keep", type=Path, help="copy each run's callgrind output here")
    args = parser.parse_args(argv)
    store = CLUSTER_STORE if args.store == "cluster" else ONE_STORE
    paths = [p for p in args.paths.split(",") if p]
    unknown = set(paths) - set(PATHS)
    if unknown:
        parser.error(f"unknown paths {sorted(unknown)}; known: {', '.join(PATHS)}")
    counted = args.requests - max(args.sockets, args.requests // 4)
    for path, instructions in per_request(
        paths, args.requests, args.sockets, args.valgrind, store, args.keep
    ).items():
        print(
            f"{path:<9} {instructions / 1000:8.1f}k instructions per request "
            f"(server, {counted} requests over {args.sockets} sockets, {args.store} store)"
        )


if __name__ == "__main__":
    main()
