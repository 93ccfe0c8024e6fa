"""The Redis connection and the command coalescer.

Every command issued during one event-loop tick goes out in one pipeline: a hundred
sockets signing in at once cost the server a handful of writes and reads, not a hundred
round trips. Scripts run by SHA; a server that lost them (restart, failover) gets them
loaded again and the affected commands retried once.

On a single server the pipeline skips redis-py's Pipeline object, whose per-command
packing (in Python) and per-reply timeout context cost about 8 µs per command: commands
are packed by hiredis in C and the replies read in order on one pooled connection, with
redis-py's response callbacks, retry policy and timeouts: -23 % server CPU per sign-in
(docs/benchmark.md).
Redis Cluster keeps redis-py's cluster pipeline, which routes commands by slot.
"""

from __future__ import annotations

import asyncio
import inspect
import math
from collections.abc import Callable, Sequence
from typing import Any, cast

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from server.scripts import Script, all_scripts

BATCH_COMMANDS_MAX = 512
FLUSHES_IN_FLIGHT_MAX = 8
COMMAND_NAMES_MAX = 256  # command names whose packing and reply callback are remembered

Arg = str | bytes | int
Pending = tuple[tuple[Arg, ...], "asyncio.Future[Any] | None", int]
Callback = Callable[..., Any]
PackCommand = Callable[[tuple[Arg, ...]], bytes]

_pack_command: PackCommand | None
try:
    from hiredis import pack_command as _hiredis_pack_command

    _pack_command = cast(PackCommand, _hiredis_pack_command)  # its stub types one argument
except ImportError:  # redis-py without its [hiredis] extra: redis-py packs in Python
    _pack_command = None


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
        # (command, future, group size): a group's future sits on its last command and gets
        # the list of the group's replies; the other commands of the group carry None.
        self._pending: list[Pending] = []
        self._flush_scheduled = False
        self._in_flight = asyncio.Semaphore(FLUSHES_IN_FLIGHT_MAX)
        self._tasks: set[asyncio.Task[None]] = set()
        self._commands: dict[Arg, tuple[bool, Callback | None]] = {}  # see _command()

    async def load_scripts(self) -> None:
        # On a cluster, redis-py sends SCRIPT LOAD to every primary.
        for script in self.scripts.values():
            await self.redis.script_load(script.source)

    def call(self, *args: Arg) -> asyncio.Future[Any]:
        return self._queue([args])

    def call_many(self, *commands: tuple[Arg, ...]) -> asyncio.Future[list[Any]]:
        """Several commands in the same batch, one future for the list of their replies."""
        if len(commands) == 1:  # a group of one is still a list
            one = self._queue(list(commands))
            many: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
            one.add_done_callback(
                lambda f: (
                    many.set_exception(e) if (e := f.exception()) else many.set_result([f.result()])
                )
            )
            return many
        return self._queue(list(commands))

    def _queue(self, commands: list[tuple[Arg, ...]]) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if len(commands) == 1:
            self._pending.append((commands[0], future, 1))
        else:
            self._pending += [(args, None, 0) for args in commands[:-1]]
            self._pending.append((commands[-1], future, len(commands)))
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

    async def _send(self, batch: list[Pending]) -> None:
        async with self._in_flight:
            try:
                results = await self._execute([args for args, _, _ in batch])
                missing = [i for i, r in enumerate(results) if isinstance(r, NoScriptError)]
                if missing:
                    await self.load_scripts()
                    again = await self._execute([batch[i][0] for i in missing])
                    for i, result in zip(missing, again, strict=True):
                        results[i] = result
            except Exception as exc:  # noqa: BLE001 - every waiter must hear of it
                for _, future, _ in batch:
                    if future is not None and not future.done():
                        future.set_exception(exc)
                return
        for at, (_, future, size) in enumerate(batch):
            if future is None or future.done():
                continue
            if size == 1:
                result = results[at]
            else:
                result = results[at + 1 - size : at + 1]
                errors = [r for r in result if isinstance(r, ResponseError)]
                result = errors[0] if errors else result
            if isinstance(result, ResponseError):
                future.set_exception(result)
            else:
                future.set_result(result)

    async def _execute(self, commands: list[tuple[Arg, ...]]) -> list[Any]:
        """Replies in order; a command's error reply is its ResponseError, not raised."""
        if isinstance(self.redis, RedisCluster):
            pipe = self.redis.pipeline(transaction=False)
            for args in commands:
                pipe.execute_command(*args)
            return list(await pipe.execute(raise_on_error=False))
        pool = self.redis.connection_pool
        connection: AbstractConnection = await pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            packed = self._pack(connection, commands)
            # As redis-py's Pipeline: on a connection error or timeout, disconnect and
            # send the whole batch again, as often as the connection's retry policy says.
            results: list[Any] = await connection.retry.call_with_retry(
                lambda: self._round_trip(connection, packed, commands),
                lambda error: connection.disconnect(),
            )
            return results
        finally:
            await pool.release(connection)

    def _pack(self, connection: AbstractConnection, commands: list[tuple[Arg, ...]]) -> list[bytes]:
        """RESP for the batch, byte for byte what redis-py's pack_commands writes."""
        pack = _pack_command
        if pack is not None and all(self._command(args[0])[0] for args in commands):
            try:
                return [b"".join([pack(args) for args in commands])]
            except TypeError:
                pass  # bool, None, bytearray...: redis-py packs them or raises its DataError
        packed: list[bytes] = connection.pack_commands(commands)
        return packed

    async def _round_trip(
        self,
        connection: AbstractConnection,
        packed: list[bytes],
        commands: list[tuple[Arg, ...]],
    ) -> list[Any]:
        await connection.send_packed_command(packed)
        results: list[Any] = []
        try:
            # One deadline for the batch's replies instead of one per reply.
            async with asyncio.timeout(connection.socket_timeout):
                for args in commands:
                    try:
                        reply = await connection.read_response(timeout=math.inf)
                    except ResponseError as exc:
                        results.append(exc)
                        continue
                    callback = self._command(args[0])[1]
                    if callback is not None:
                        reply = callback(reply)
                        if inspect.isawaitable(reply):
                            reply = await reply
                    results.append(reply)
        except TimeoutError:
            await connection.disconnect(nowait=True)
            host = f"{getattr(connection, 'host', '?')}:{getattr(connection, 'port', '?')}"
            raise RedisTimeoutError(f"Timeout reading from {host}") from None
        except BaseException:
            # Replies may be left unread: this connection must not be reused as it is.
            await connection.disconnect(nowait=True)
            raise
        return results

    def _command(self, name: Arg) -> tuple[bool, Callback | None]:
        """(one word, so hiredis packs it as redis-py would; redis-py's reply callback)."""
        known = self._commands.get(name)
        if known is not None:
            return known
        if isinstance(name, bytes):
            one_word, text = b" " not in name, name.decode(errors="replace")
        else:
            text = str(name)
            one_word = isinstance(name, str) and len(text.encode().split()) == 1
        known = (one_word, self.redis.response_callbacks.get(text))
        if len(self._commands) < COMMAND_NAMES_MAX:
            self._commands[name] = known
        return known

    async def close(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.redis.aclose()
