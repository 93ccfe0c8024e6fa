"""One bench server process: `python -m bench.serve echo|signin|relay|floor --port P [...]`.

Every app runs under the uvicorn options of `manor serve` (server/cli.py), in this process
(one worker, no supervisor), so this process's CPU time is the server's CPU time.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse

from bench.clients import raise_fd_limit
from bench.credit_floor import create_floor_app
from bench.echo_app import create_echo_app
from bench.relay_baseline import create_relay_app
from bench.timelapse import TimeLapseClock
from server.app import create_app
from server.metrics import job_polls
from server.settings import Settings
from server.store import link, store
from server.transport.ws import uvicorn_options

JWT_SECRET = "bench-secret-0123456789abcdef-0123456789abcdef"  # fixed: tokens come from it
# The limits a real player would hit are far below a closed-loop client's rate: lift them,
# the token bucket still runs on every frame.
REQUESTS_PER_S_MAX = 10_000
REQUEST_BURST_MAX = 100_000
BASELINE_WS = "websockets-sansio"  # uvicorn's protocol on the websockets library
# uvicorn's `ws=` per app: the baselines on uvicorn's own protocol, the app on its wire
# (uvicorn_options), the credit floor on the same wire with its own handler.
WS_OF_APP = {"echo": BASELINE_WS, "relay": BASELINE_WS, "floor": "bench.credit_floor:FloorWire"}
JOB_POLLS_PATH = "/bench/job_polls"  # the signin app's: its jobs' poll counters, no store read
SOCKETS_MAX = 30_000  # file descriptors asked for (up to the hard limit): the socket phases


def signin_settings(redis_url: str, data_dir: Path, jobs: bool = True) -> Settings:
    return Settings(
        redis_url=redis_url,
        data_dir=data_dir,
        jwt_secret=JWT_SECRET,
        requests_per_s_max=REQUESTS_PER_S_MAX,
        request_burst_max=REQUEST_BURST_MAX,
        jobs=jobs,
    )


def build_app(args: argparse.Namespace) -> Starlette:
    if args.app == "echo":
        return create_echo_app()
    if args.app == "relay":
        return create_relay_app(args.redis_url)
    if args.app == "floor":
        return create_floor_app(args.redis_url, JWT_SECRET)
    # Experiments with the store's pipelining (docs/benchmark.md); 0 keeps its defaults.
    if args.store_write_min:
        link.WRITE_COMMANDS_MIN = args.store_write_min
        store.WRITE_COMMANDS_MIN = args.store_write_min  # type: ignore[attr-defined]
    if args.store_links:
        store.LINKS = args.store_links
    settings = signin_settings(args.redis_url, Path(args.data_dir), jobs=not args.no_jobs)
    # --day-ms 0: the app's own clock (the steady phase: mostly `already` sign-ins)
    app = create_app(settings, clock=TimeLapseClock(args.day_ms) if args.day_ms else None)
    app.add_route(JOB_POLLS_PATH, polls_endpoint)
    return app


async def polls_endpoint(request: Request) -> JSONResponse:
    """The bench's read of the jobs' polls: /metrics reads the store too (~3 000 commands)."""
    return JSONResponse(job_polls(request.app.state.manor))


def run(app: Starlette, port: int, ws: str | None) -> None:
    """uvicorn as `manor serve` runs it (server/cli.py: cmd_serve), log level warning.

    The baselines (echo, relay) are Starlette endpoints on uvicorn's own WebSocket protocol:
    the bare stack the issue-10 targets are ratios of; the app runs on our wire (wire.py).
    `ws`: another protocol class than the app's (WS_OF_APP).
    """
    options = uvicorn_options(Settings())
    if ws is not None:
        options["ws"] = ws
    uvicorn.run(
        app, host="127.0.0.1", port=port, workers=1, **options, log_level="warning", lifespan="on"
    )


def main(argv: list[str] | None = None) -> None:
    top = argparse.ArgumentParser(prog="python -m bench.serve")
    top.add_argument("app", choices=("echo", "signin", "relay", "floor"))
    top.add_argument("--port", type=int, required=True)
    top.add_argument("--redis-url", default="")
    top.add_argument("--data-dir", default=".")
    top.add_argument(
        "--day-ms", type=float, default=5.0, help="real ms per business day; 0: the normal clock"
    )
    top.add_argument("--store-write-min", type=int, default=0, help="store.WRITE_COMMANDS_MIN")
    top.add_argument("--store-links", type=int, default=0, help="store.LINKS")
    top.add_argument("--profile", default="", help="write a cProfile of the run to this file")
    top.add_argument(
        "--no-jobs",
        action="store_true",
        help="no scheduled jobs (bench.instructions: their"
        " work grows with the run's length, not with its requests)",
    )
    args = top.parse_args(argv)
    raise_fd_limit(SOCKETS_MAX)
    app = build_app(args)
    if not args.profile:
        run(app, args.port, WS_OF_APP.get(args.app))
        return
    import cProfile

    profiler = cProfile.Profile()
    try:
        profiler.runcall(run, app, args.port, WS_OF_APP.get(args.app))
    finally:
        Path(args.profile).parent.mkdir(parents=True, exist_ok=True)
        profiler.dump_stats(args.profile)


if __name__ == "__main__":
    main()
