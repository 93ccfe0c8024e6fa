"""An idle socket's shape: most sockets are idle, so each object one owns costs RSS on all
of them (the idle_sockets bench phase prints the bytes)."""

from __future__ import annotations

import asyncio
import collections
from pathlib import Path

from server.client import ManorClient
from tests.live import Live

SOCKETS = 20
# This test's own clients share the loop: their tasks are not the server's.
CLIENT_SIDE = ("/server/client.py", "/site-packages/websockets/")


def server_tasks() -> collections.Counter[str]:
    names: collections.Counter[str] = collections.Counter()
    for task in asyncio.all_tasks():
        code = task.get_coro().cr_code  # type: ignore[union-attr]
        if not any(part in Path(code.co_filename).as_posix() for part in CLIENT_SIDE):
            names[code.co_qualname] += 1
    return names


async def test_an_idle_socket_owns_one_task(live: Live) -> None:
    before = server_tasks()
    clients: list[ManorClient] = []
    for n in range(SOCKETS):
        clients.append(await live.connect(f"idler{n}"))
    await clients[-1].call("state")  # a reply was sent: the socket is idle again after it
    await asyncio.sleep(0.1)
    grown = server_tasks() - before
    for client in clients:
        await client.close()
    # The wire's one task per socket, which serves it; no reader, writer or waiter besides.
    assert grown == {"Wire._run": SOCKETS}, grown
