"""The Redis connection and the command coalescer.

Every command issued during one event-loop tick goes out in one pipeline: a hundred
sockets signing in at once cost the server a handful of writes and reads, not a hundred
round trips. Scripts run by SHA; a server that lost them (restart, failover) gets them
loaded again and the affected commands retried once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import NoScriptError, ResponseError

from server.scripts import Script, all_scripts

BATCH_COMMANDS_MAX = 512
FLUSHES_IN_FLIGHT_MAX = 8

Arg = str | bytes | int


def connect(url: str, max_connections: int = 32) -> Redis | RedisCluster:
    if "+cluster://" in url:
        plain = url.replace("+cluster://", "://", 1)
        return RedisCluster.from_url(plain, max_connections=max_connections)
    return Redis.from_url(url, max_connections=max_connections)


class Store:
    """Coalesces commands per tick; `call()` is the only way the app talks to Redis."""

    def __init__(self, redis: Redis | RedisCluster) -> None:
        self.redis = redis
        self.cluster = isinstance(redis, RedisCluster)
        self.scripts: dict[str, Script] = all_scripts()
        self.publish_command = "SPUBLISH" if self.cluster else "PUBLISH"
        self._pending: list[tuple[tuple[Arg, ...], asyncio.Future[Any]]] = []
        self._flush_scheduled = False
        self._in_flight = asyncio.Semaphore(FLUSHES_IN_FLIGHT_MAX)
        self._tasks: set[asyncio.Task[None]] = set()

    async def load_scripts(self) -> None:
        # On a cluster, redis-py sends SCRIPT LOAD to every primary.
        for script in self.scripts.values():
            await self.redis.script_load(script.source)

    def call(self, *args: Arg) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((args, future))
        if len(self._pending) >= BATCH_COMMANDS_MAX:
            self._flush()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return future

    def script(self, name: str, keys: Sequence[str], args: Sequence[Arg]) -> asyncio.Future[Any]:
        sha = self.scripts[name].sha
        return self.call("EVALSHA", sha, len(keys), *keys, *args)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        task = asyncio.get_running_loop().create_task(self._send(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, batch: list[tuple[tuple[Arg, ...], asyncio.Future[Any]]]) -> None:
        async with self._in_flight:
            try:
                results = await self._execute([args for args, _ in batch])
                missing = [i for i, r in enumerate(results) if isinstance(r, NoScriptError)]
                if missing:
                    await self.load_scripts()
                    again = await self._execute([batch[i][0] for i in missing])
                    for i, result in zip(missing, again, strict=True):
                        results[i] = result
            except Exception as exc:  # noqa: BLE001 - every waiter must hear of it
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                return
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, ResponseError):
                future.set_exception(result)
            else:
                future.set_result(result)

    async def _execute(self, commands: list[tuple[Arg, ...]]) -> list[Any]:
        pipe = self.redis.pipeline(transaction=False)
        for args in commands:
            pipe.execute_command(*args)
        return list(await pipe.execute(raise_on_error=False))

    async def close(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.redis.aclose()
