"""The application: one declaration of routes, resources opened in the lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute

from game_rules import business_day
from server.admin import api as admin
from server.admin import openapi
from server.admin.rules import RULES_CHANNEL, reload_follower
from server.auth import load_or_create_secret
from server.clock import Clock, OffsetClock
from server.jobs.scheduler import Scheduler
from server.jobs.table import scheduler_for, timers_for
from server.ledger import outbox
from server.ledger.ledger import batch_int
from server.metrics import Metrics, instrument, metrics_endpoint
from server.ops import dispatch_table
from server.pipeline import Dispatcher, Services
from server.platform.api import routes as platform_routes
from server.rulebook import Rulebook, read_rules
from server.settings import Settings, load_settings, parse_api_keys
from server.store import layout
from server.store.store import Store, connect
from server.store.timers import Timers
from server.transport import asgi_socket
from server.transport.admission import SOCKET_PATH
from server.transport.fanout import Pushes
from server.transport.presence import Presence
from server.transport.sharded import fanout_for
from server.web.routes import routes as web_routes

log = logging.getLogger(__name__)
# The cyclic collector, set once the app has started. What exists by then (the imports, the
# rules, the store's scripts, the app) lives as long as the process, and every full
# collection walked it all (23 ms each, 9 in a 12 s credit run of the bench); frozen
# (gc.freeze), a collection walks only what came since (3 ms). A young generation of
# GC_YOUNG_MAX container objects instead of Python's 700: a request's objects die by
# reference counting, and the young collections of that run fell from 1 116 to 157. The
# collector's share of the server's CPU in that run: 4.1 % -> 0.5 %. What it costs: cyclic
# garbage (a closed socket's transport and protocol) waits longer, ~0.5 KiB more RSS per
# idle socket in bench.idle_sockets (docs/benchmark.md).
GC_YOUNG_MAX = 2_000

DEV_CLOCK_KEY = "m:dev:clock_offset_ms"
DEV_CLOCK_POLL_S = 0.2
DEV_CLOCK_ADVANCE_MS_MAX = 400 * 86_400_000
READY_PING_S_MAX = 1.0  # a node slower than this to answer PING counts as unreachable


@dataclass
class Manor:
    """Everything a request needs, built in the lifespan."""

    settings: Settings
    clock: Clock
    rulebook: Rulebook
    store: Store
    fanout: Pushes
    dispatcher: Dispatcher
    jwt_secret: str
    timers: Timers
    relay: outbox.Relay
    scheduler: Scheduler
    api_keys: dict[str, tuple[str, frozenset[str]]]
    metrics: Metrics
    presence: Presence
    sockets: int = 0
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


async def readyz(request: Request) -> JSONResponse:
    """Ready when every primary of the store answers PING; the nodes are listed either way."""
    manor: Manor = request.app.state.manor
    nodes = await manor.store.ping_nodes(READY_PING_S_MAX)
    primaries = [answer for node, answer in nodes.items() if node.endswith("(primary)")]
    if not primaries or any(answer != "ok" for answer in primaries):
        down = "; ".join(f"{node}: {answer}" for node, answer in nodes.items() if answer != "ok")
        body = {"ok": False, "store": down or "no primary known", "nodes": nodes}
        return JSONResponse(body, status_code=503)
    rules = manor.rulebook.rules
    return JSONResponse(
        {
            "ok": True,
            "rules_version": rules.version,
            "rules_digest": rules.digest,
            "sockets": manor.sockets,
            "nodes": nodes,
        }
    )


async def dev_clock(request: Request) -> JSONResponse:
    """QA only (MANOR_DEV_CLOCK=1): move every process's clock forward by `advance_ms`."""
    manor: Manor = request.app.state.manor
    if not manor.settings.dev_clock or not isinstance(manor.clock, OffsetClock):
        return JSONResponse(
            {"error": {"code": "DEV_CLOCK_OFF", "message": "set MANOR_DEV_CLOCK=1 to enable"}}, 403
        )
    try:
        body = await request.json()
        advance_ms = body["advance_ms"]
        if isinstance(advance_ms, bool) or not isinstance(advance_ms, int):
            raise TypeError
        if not 0 <= advance_ms <= DEV_CLOCK_ADVANCE_MS_MAX:
            raise ValueError
    except (ValueError, TypeError, KeyError):
        return JSONResponse(
            {
                "error": {
                    "code": "BAD_ARGS",
                    "message": f"advance_ms: an integer in 0..{DEV_CLOCK_ADVANCE_MS_MAX}",
                }
            },
            400,
        )
    offset_ms = int(await manor.store.call("INCRBY", DEV_CLOCK_KEY, advance_ms))
    manor.clock.offset_ms = max(manor.clock.offset_ms, offset_ms)
    return JSONResponse({"now_ms": manor.clock.now_ms(), "offset_ms": manor.clock.offset_ms})


async def _follow_dev_clock(manor: Manor, clock: OffsetClock) -> None:
    """Other processes' advances arrive here; the offset only grows."""
    while True:
        raw = await manor.store.call("GET", DEV_CLOCK_KEY)
        if raw is not None:
            clock.offset_ms = max(clock.offset_ms, int(raw))
        await asyncio.sleep(DEV_CLOCK_POLL_S)


def create_app(settings: Settings | None = None, clock: Clock | None = None) -> Starlette:
    """The ASGI app. Needs `settings.redis_url`: `manor serve` starts the embedded store."""
    settings = settings or load_settings()
    if not settings.redis_url:
        raise ValueError("create_app needs a Redis URL; `manor serve` provides the embedded one")
    rules = read_rules(settings.rules)
    metrics = Metrics(dispatch_table(settings))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        store = Store(connect(settings.redis_url))
        await layout.check(store.redis)
        await store.load_scripts()
        if settings.store_ack != "local":
            fsync = settings.store_ack == "replica_fsync"
            await store.require_replica_ack(settings.store_ack_timeout_ms, fsync)
        fanout_redis = connect(settings.redis_url)
        fanout = fanout_for(fanout_redis)
        await fanout.start()
        the_clock = clock or OffsetClock()
        secret = settings.jwt_secret or load_or_create_secret(settings.data_dir)
        rulebook = Rulebook(rules, settings.rules)
        store.today_of = lambda now_ms: batch_int(business_day(now_ms, rulebook.rules.tz))
        services = Services(store, the_clock, rulebook, settings)
        timers = timers_for(services)
        relay = outbox.Relay(store)
        scheduler = scheduler_for(services, timers, relay)
        manor = Manor(
            settings,
            the_clock,
            rulebook,
            store,
            fanout,
            Dispatcher(services, dispatch_table(settings)),
            secret,
            timers,
            relay,
            scheduler,
            parse_api_keys(settings.api_keys, settings.platform_key),
            metrics,
            Presence(store, the_clock),
        )
        # A reload on any process reaches this one through the fan-out's pub/sub connection.
        await fanout.attach(RULES_CHANNEL, reload_follower(rulebook))
        if settings.jobs:
            scheduler.start()
        # Every process renews its own sockets' leases, jobs or not.
        manor.tasks.append(asyncio.create_task(manor.presence.run()))
        if settings.dev_clock and isinstance(the_clock, OffsetClock):
            manor.tasks.append(asyncio.create_task(_follow_dev_clock(manor, the_clock)))
        app.state.manor = manor
        log.info("manor ready: rules %s (%s)", rules.version, rules.digest)
        gc_thresholds = gc.get_threshold()
        gc.freeze()
        gc.set_threshold(GC_YOUNG_MAX, *gc_thresholds[1:])
        try:
            # As ASGI lifespan state too: uvicorn hands it to the WebSocket wire (ws.py),
            # which runs below Starlette's router; other servers to the route below.
            yield {"manor": manor}
        finally:
            gc.unfreeze()
            gc.set_threshold(*gc_thresholds)
            await scheduler.stop()
            for task in manor.tasks:
                task.cancel()
            await asyncio.gather(*manor.tasks, return_exceptions=True)
            await fanout.close()
            await fanout_redis.aclose()
            await store.close()

    routes = [
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/dev/clock", dev_clock, methods=["POST"]),
        Route("/metrics", metrics_endpoint),
        Route("/v1/openapi.json", openapi.endpoint),
        *instrument([*platform_routes(), *admin.routes()], metrics),
        *web_routes(),
        # Reached only when the server is not uvicorn with ManorWire (asgi_socket.py).
        WebSocketRoute(SOCKET_PATH, asgi_socket.endpoint),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


def app_from_env() -> Starlette:
    """uvicorn factory for `manor serve` workers: settings from MANOR_* variables."""
    return create_app(load_settings())
