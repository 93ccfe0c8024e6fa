"""A real uvicorn serving the real app on a free loopback port, in the test's event loop."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hypercorn.asyncio
import hypercorn.config
import uvicorn
from starlette.applications import Starlette

from server.app import create_app
from server.auth import issue_token
from server.client import ManorClient
from server.clock import Clock
from server.settings import Settings
from server.store.embedded import free_port
from server.transport.ws import uvicorn_options

SECRET = "test-secret-0123456789-abcdefghijklmnop"
START_WAIT_S_MAX = 10.0


@dataclass
class Live:
    url: str
    http: str
    settings: Settings
    app: Starlette

    @property
    def manor(self) -> Any:
        """The app's running services (store, timers, clock...)."""
        return self.app.state.manor

    def token(self, player: str, ttl_s: int = 3600) -> str:
        return issue_token(SECRET, player, int(time.time()), ttl_s)

    async def connect(self, player: str, **kwargs: Any) -> ManorClient:
        return await ManorClient.connect(self.url, self.token(player), **kwargs)


@contextlib.asynccontextmanager
async def serve(
    redis_url: str,
    data_dir: Path,
    clock: Clock | None = None,
    ws_options: dict[str, Any] | None = None,
    **overrides: Any,
) -> AsyncIterator[Live]:
    """`overrides` are Settings fields; `ws_options` uvicorn's (ws_ping_interval, ...)."""
    settings, app = built(redis_url, data_dir, clock, **overrides)
    port = settings.port
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        **{**uvicorn_options(settings), **(ws_options or {})},
        lifespan="on",
        log_level="warning",
    )
    async with running(config):
        yield Live(f"ws://127.0.0.1:{port}", f"http://127.0.0.1:{port}", settings, app)


def built(
    redis_url: str, data_dir: Path, clock: Clock | None, **overrides: Any
) -> tuple[Settings, Starlette]:
    """The test settings on a free port, and the app made of them."""
    overrides.setdefault("jobs", False)  # tests fire timers and relays by hand
    settings = Settings(
        redis_url=redis_url, data_dir=data_dir, jwt_secret=SECRET, port=free_port(), **overrides
    )
    return settings, create_app(settings, clock)


@contextlib.asynccontextmanager
async def serve_on_hypercorn(
    redis_url: str, data_dir: Path, clock: Clock | None = None, **overrides: Any
) -> AsyncIterator[Live]:
    """The app under hypercorn, another ASGI server: /v1/ws is served by its ASGI route."""
    settings, app = built(redis_url, data_dir, clock, **overrides)
    config = hypercorn.config.Config()
    config.bind = [f"127.0.0.1:{settings.port}"]
    config.loglevel = "WARNING"
    stop = asyncio.Event()
    task = asyncio.create_task(
        hypercorn.asyncio.serve(app, config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]
    )
    try:
        deadline = time.monotonic() + START_WAIT_S_MAX
        while True:  # up once the port accepts: hypercorn binds after the lifespan started
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", settings.port)
                writer.close()
                break
            if task.done() or time.monotonic() > deadline:
                raise RuntimeError("hypercorn did not start")
            await asyncio.sleep(0.02)
        url = f"127.0.0.1:{settings.port}"
        yield Live(f"ws://{url}", f"http://{url}", settings, app)
    finally:
        stop.set()
        await task


@contextlib.asynccontextmanager
async def running(config: uvicorn.Config) -> AsyncIterator[None]:
    """uvicorn serving `config` in the test's own event loop until the block ends."""
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + START_WAIT_S_MAX
    while not server.started:
        if task.done() or time.monotonic() > deadline:
            server.should_exit = True
            await task
            raise RuntimeError("uvicorn did not start")
        await asyncio.sleep(0.01)
    try:
        yield
    finally:
        server.should_exit = True
        await task
