"""One bench server process: `python -m bench.serve echo|signin --port P [...]`.

Both apps run under the uvicorn options of `manor serve` (server/cli.py), in this process
(one worker, no supervisor), so this process's CPU time is the server's CPU time.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import uvicorn
from starlette.applications import Starlette

from bench.echo_app import create_echo_app
from bench.timelapse import TimeLapseClock
from server.app import create_app
from server.settings import Settings
from server.store import link, store

JWT_SECRET = "bench-secret-0123456789abcdef-0123456789abcdef"  # fixed: tokens come from it
# The limits a real player would hit are far below a closed-loop client's rate: lift them,
# the token bucket still runs on every frame.
REQUESTS_PER_S_MAX = 10_000
REQUEST_BURST_MAX = 100_000


def signin_settings(redis_url: str, data_dir: Path) -> Settings:
    return Settings(
        redis_url=redis_url,
        data_dir=data_dir,
        jwt_secret=JWT_SECRET,
        requests_per_s_max=REQUESTS_PER_S_MAX,
        request_burst_max=REQUEST_BURST_MAX,
    )


def build_app(args: argparse.Namespace) -> Starlette:
    if args.app == "echo":
        return create_echo_app()
    # Experiments with the store's pipelining (docs/benchmark.md); 0 keeps its defaults.
    if args.store_write_min:
        link.WRITE_COMMANDS_MIN = args.store_write_min
        store.WRITE_COMMANDS_MIN = args.store_write_min  # type: ignore[attr-defined]
    if args.store_links:
        store.LINKS = args.store_links
    settings = signin_settings(args.redis_url, Path(args.data_dir))
    # --day-ms 0: the app's own clock (the steady phase: mostly `already` sign-ins)
    return create_app(settings, clock=TimeLapseClock(args.day_ms) if args.day_ms else None)


def run(app: Starlette, port: int) -> None:
    """uvicorn as `manor serve` runs it (server/cli.py: cmd_serve), log level warning."""
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        workers=1,
        ws="websockets-sansio",
        ws_max_size=Settings().ws_frame_bytes_max,  # as cmd_serve: settings.ws_frame_bytes_max
        log_level="warning",
        lifespan="on",
    )


def main(argv: list[str] | None = None) -> None:
    top = argparse.ArgumentParser(prog="python -m bench.serve")
    top.add_argument("app", choices=("echo", "signin"))
    top.add_argument("--port", type=int, required=True)
    top.add_argument("--redis-url", default="")
    top.add_argument("--data-dir", default=".")
    top.add_argument(
        "--day-ms", type=float, default=5.0, help="real ms per business day; 0: the normal clock"
    )
    top.add_argument("--store-write-min", type=int, default=0, help="store.WRITE_COMMANDS_MIN")
    top.add_argument("--store-links", type=int, default=0, help="store.LINKS")
    top.add_argument("--profile", default="", help="write a cProfile of the run to this file")
    args = top.parse_args(argv)
    app = build_app(args)
    if not args.profile:
        run(app, args.port)
        return
    import cProfile

    profiler = cProfile.Profile()
    try:
        profiler.runcall(run, app, args.port)
    finally:
        profiler.dump_stats(args.profile)


if __name__ == "__main__":
    main()
