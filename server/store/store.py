"""The Redis connection and the command coalescer.

Commands issued during one event-loop tick share writes and reads: a hundred sockets
signing in at once cost the server a handful of syscalls, not a hundred round trips.
Scripts run by SHA; a server that lost them (restart, failover) gets them loaded again
and the affected commands retried once.

On a single server the store speaks RESP itself over its own pipelined connection
(`Link`, an asyncio.Protocol): commands are packed by hiredis in C and written at the end
of the tick (or once `WRITE_COMMANDS_MIN` wait); replies are parsed by hiredis inside
`data_received`, matched to their futures in FIFO order and passed through redis-py's
response callbacks for the client's protocol, so every command returns what redis-py
returned (HGETALL a dict, PING True...). No per-reply `await`, no per-batch timeout
context, no pooled-connection checkout: -14 % server CPU per steady sign-in, -17 %
per credited one (docs/benchmark.md). As with redis-py (8.x: no retries by default), a
lost connection fails the commands waiting on it and the next call connects again.
Redis Cluster keeps redis-py's cluster pipeline, which routes commands by slot.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, cast

import hiredis
from redis._parsers.base import BaseParser
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import (
    AbstractConnection,
    SSLConnection,
    UnixDomainSocketConnection,
)
from redis.credentials import CredentialProvider, UsernamePasswordCredentialProvider
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from server.store.scripts import Script, all_scripts

BATCH_COMMANDS_MAX = 512  # cluster: a tick's batch is cut here
FLUSHES_IN_FLIGHT_MAX = 8  # cluster: batches awaiting their replies at once
COMMAND_NAMES_MAX = 256  # command names whose packing and reply callback are remembered
# Single server: a link writes as soon as this many commands wait, else at the end of the
# tick. Measured (docs/benchmark.md): slices of 8-24 commands, written while the tick still
# runs so Redis starts early, did not raise sign-in throughput and cost server CPU on the
# steady path (more writes, smaller Redis reads); this bounds what one huge tick buffers.
WRITE_COMMANDS_MIN = 512
# Pipelined connections per Store. One keeps every command in issue order; 2-8 measured
# no faster (docs/benchmark.md).
LINKS = 1
COMMANDS_WAITING_MAX = 100_000  # per link: past it, calls fail fast with StoreBusy
CONNECT_S_MAX = 10.0  # when the client sets no socket_connect_timeout

Arg = str | bytes | int
Pending = tuple[tuple[Arg, ...], "asyncio.Future[Any] | None", int]
Callback = Callable[..., Any]
PackCommand = Callable[[tuple[Arg, ...]], bytes]

_pack_command = cast(PackCommand, hiredis.pack_command)  # its stub types one argument
# redis-py's error-reply classes (NoScriptError for NOSCRIPT, OutOfMemoryError for OOM...).
_reply_error = cast(Callable[[str], Exception], BaseParser.parse_error)
_MORE = object()  # hiredis: no complete reply buffered yet


def connect(url: str, max_connections: int = 32) -> Redis | RedisCluster:
    if "+cluster://" in url:
        plain = url.replace("+cluster://", "://", 1)
        return RedisCluster.from_url(plain, max_connections=max_connections)
    return Redis.from_url(url, max_connections=max_connections)


class Endpoint:
    """Where and how to connect, as redis-py reads it from the client's URL and options.

    A connection object of the client's own class is built (never connected) to parse
    host/port/unix path, TLS (rediss://: its SSL context), credentials, db and client
    name exactly as redis-py does; it also packs what hiredis cannot.
    """

    def __init__(self, redis: Redis) -> None:
        pool = redis.connection_pool
        template: AbstractConnection = pool.connection_class(**pool.connection_kwargs)
        # RESP3 unless the URL says protocol=2 (redis-py's default); redis-py's response
        # callbacks, which the replies go through, are chosen for the same protocol.
        self.protocol = 2 if str(getattr(template, "protocol", 2)) in ("2", "None") else 3
        self.template = template
        self.path = template.path if isinstance(template, UnixDomainSocketConnection) else ""
        self.host: str = getattr(template, "host", "")
        self.port: int = getattr(template, "port", 0)
        self.ssl = template.ssl_context.get() if isinstance(template, SSLConnection) else None
        self.connect_s = template.socket_connect_timeout or CONNECT_S_MAX
        self.reply_s: float | None = template.socket_timeout  # None: wait for ever
        encoder = template.encoder
        self.encoding: str | None = encoder.encoding if encoder.decode_responses else None
        self.where = self.path or f"{self.host}:{self.port}"

    def reader(self) -> hiredis.Reader:
        if self.encoding is None:
            return hiredis.Reader(replyError=_reply_error, notEnoughData=_MORE)
        return hiredis.Reader(replyError=_reply_error, notEnoughData=_MORE, encoding=self.encoding)

    async def hello(self, protocol: int) -> list[tuple[Arg, ...]]:
        """What a new connection sends first: HELLO 3 or AUTH, CLIENT SETNAME, SELECT."""
        template = self.template
        commands: list[tuple[Arg, ...]] = []
        provider: CredentialProvider | None = template.credential_provider
        if provider is None and (template.username or template.password):
            provider = UsernamePasswordCredentialProvider(template.username, template.password)
        credentials: tuple[str, ...] = ()
        if provider is not None:
            credentials = tuple(await provider.get_credentials_async())
        if protocol == 3:
            if len(credentials) == 1:
                credentials = ("default", credentials[0])
            commands.append(("HELLO", 3, *(("AUTH", *credentials) if credentials else ())))
        elif credentials:
            commands.append(("AUTH", *credentials))
        if template.client_name:
            commands.append(("CLIENT", "SETNAME", template.client_name))
        if template.db:
            commands.append(("SELECT", template.db))
        return commands

    async def open(self, protocol: asyncio.Protocol) -> None:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self.connect_s):
            if self.path:
                await loop.create_unix_connection(lambda: protocol, self.path)
            else:
                await loop.create_connection(lambda: protocol, self.host, self.port, ssl=self.ssl)


class Request:
    """One `call` or `call_many`: its commands, their replies so far, one future."""

    __slots__ = ("commands", "future", "many", "replies", "retried")

    def __init__(
        self,
        commands: list[tuple[Arg, ...]],
        future: asyncio.Future[Any] | None,
        many: bool = False,
        retried: bool = False,
    ) -> None:
        self.commands = commands
        self.future = future  # None: a link's own hello command
        self.many = many  # call_many: the list of replies, even for a group of one
        self.replies: list[Any] = []
        self.retried = retried


class Link(asyncio.Protocol):
    """One pipelined connection, for its lifetime: created connecting, ends lost.

    Replies come back in the order the commands went out, so a FIFO of requests (one
    entry per command) is all the bookkeeping. A lost connection fails every request
    still waiting with ConnectionError; the Store opens a new Link for the next call.
    """

    def __init__(self, store: Store, endpoint: Endpoint) -> None:
        self.store = store
        self.endpoint = endpoint
        self.lost = False
        self.transport: asyncio.Transport | None = None
        self._reader = self.endpoint.reader()
        self._waiting: deque[Request] = deque()  # one entry per command sent or to send
        self._out: list[bytes] = []  # packed, not yet written
        self._out_commands = 0
        self._write_scheduled = False
        self._hello: list[bytes] = []
        self._replies = 0  # replies read so far: the watchdog's sign of progress
        self._watchdog: asyncio.TimerHandle | None = None
        self._opening = asyncio.get_running_loop().create_task(self._open())

    async def _open(self) -> None:
        try:
            hello = await self.endpoint.hello(self.endpoint.protocol)
            hellos = [Request([args], None) for args in hello]
            self._hello = [_pack_command(args) for args in hello]
            self._waiting.extendleft(reversed(hellos))
            await self.endpoint.open(self)
        except asyncio.CancelledError:
            self.lose(RedisConnectionError(f"connecting to {self.endpoint.where}: cancelled"))
            raise
        except Exception as exc:  # noqa: BLE001 - every waiter must hear of it
            error = RedisConnectionError(f"Error connecting to {self.endpoint.where}: {exc!r}")
            self.lose(error)

    def send(self, request: Request, packed: list[bytes]) -> None:
        self._waiting.extend(itertools.repeat(request, len(packed)))
        self._out += packed
        self._out_commands += len(packed)
        if self.transport is None:
            return  # connection_made writes it
        if self._out_commands >= WRITE_COMMANDS_MIN:
            self.write()
        elif not self._write_scheduled:
            self._write_scheduled = True
            asyncio.get_running_loop().call_soon(self.write)

    def write(self) -> None:
        self._write_scheduled = False
        if self._out and self.transport is not None and not self.lost:
            self.transport.write(b"".join(self._out))
            self._out = []
            self._out_commands = 0
            self._arm()

    def _arm(self) -> None:
        """As redis-py's socket_timeout: no reply for that long while commands wait fails them."""
        reply_s = self.endpoint.reply_s
        if self._watchdog is None and reply_s:
            loop = asyncio.get_running_loop()
            self._watchdog = loop.call_later(reply_s, self._watch, self._replies)

    def _watch(self, replies_then: int) -> None:
        self._watchdog = None
        if not self._waiting or self.lost:
            return
        if self._replies == replies_then:
            self.lose(RedisTimeoutError(f"Timeout reading from {self.endpoint.where}"))
        else:
            self._arm()

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def futures(self) -> list[asyncio.Future[Any]]:
        return list({id(r): r.future for r in self._waiting if r.future is not None}.values())

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        if self.lost:  # closed while connecting
            self.transport.abort()
            return
        self.transport.write(b"".join([*self._hello, *self._out]))
        self._out = []
        self._out_commands = 0
        self._arm()

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        waiting = self._waiting
        callback_of = self.store.callback
        while not self.lost:
            try:
                reply = reader.gets()
            except hiredis.ProtocolError as exc:
                self.lose(RedisConnectionError(f"{self.endpoint.where}: protocol error: {exc}"))
                return
            if reply is _MORE:
                return
            if type(reply) is hiredis.PushNotification:
                continue  # RESP3 out-of-band (this connection subscribes to nothing)
            self._replies += 1
            if not waiting:
                self.lose(RedisConnectionError(f"{self.endpoint.where}: a reply nobody asked for"))
                return
            request = waiting.popleft()
            replies = request.replies
            if not isinstance(reply, Exception):
                callback = callback_of(request.commands[len(replies)][0])
                if callback is not None:
                    try:
                        reply = callback(reply)
                    except Exception as exc:  # noqa: BLE001 - the reply's caller gets it
                        reply = exc
            replies.append(reply)
            if len(replies) == len(request.commands):
                if request.future is not None:
                    self.store.finish(request)
                elif isinstance(reply, Exception):  # a hello (AUTH, SELECT) failed
                    self.lose(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        reason = f": {exc!r}" if exc else ""
        self.lose(RedisConnectionError(f"Connection to {self.endpoint.where} lost{reason}"))

    def lose(self, error: Exception) -> None:
        """Fail every request still waiting; this link takes no more commands."""
        if self.lost:
            return
        self.lost = True
        if self._watchdog is not None:
            self._watchdog.cancel()
        waiting, self._waiting = self._waiting, deque()
        self._out = []
        if self.transport is not None:
            self.transport.abort()
        for request in waiting:
            future = request.future
            if future is not None and not future.done():
                future.set_exception(error)

    def close(self) -> None:
        self.lose(RedisConnectionError("the store was closed"))
        self._opening.cancel()


class StoreBusy(Exception):
    """Too many commands already wait for Redis: refuse rather than queue without bound."""


def no_expiry(now_ms: int) -> int:
    return 0


class Store:
    """Coalesces commands per tick; `call()` is the only way the app talks to Redis."""

    def __init__(self, redis: Redis | RedisCluster) -> None:
        self.redis = redis
        self.cluster = isinstance(redis, RedisCluster)
        self.scripts: dict[str, Script] = all_scripts()
        self.publish_command = "SPUBLISH" if self.cluster else "PUBLISH"
        self.endpoint = None if isinstance(redis, RedisCluster) else Endpoint(redis)
        self._links: list[Link | None] = [None] * LINKS
        self._next_link = 0
        # Cluster: (command, future, group size): a group's future sits on its last command
        # and gets the list of the group's replies; the other commands carry None.
        self._pending: list[Pending] = []
        self._flush_scheduled = False
        self._in_flight = asyncio.Semaphore(FLUSHES_IN_FLIGHT_MAX)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._commands: dict[Arg, tuple[bool, Callback | None]] = {}  # see _command()
        # The business day (YYYYMMDD) of a moment: commits expire batches before it. The
        # app sets it from the rules' time zone; 0 (the default) checks no expiry.
        self.today_of: Callable[[int], int] = no_expiry

    async def load_scripts(self) -> None:
        if self.endpoint is not None:  # on our own connection, the one that met NOSCRIPT
            await asyncio.gather(
                *(self.call("SCRIPT", "LOAD", s.source) for s in self.scripts.values())
            )
            return
        # On a cluster, redis-py sends SCRIPT LOAD to every primary.
        for script in self.scripts.values():
            await self.redis.script_load(script.source)

    def call(self, *args: Arg) -> asyncio.Future[Any]:
        return self._queue([args], many=False)

    def call_many(self, *commands: tuple[Arg, ...]) -> asyncio.Future[list[Any]]:
        """Several commands in the same batch, one future for the list of their replies."""
        return self._queue(list(commands), many=True)

    def script(self, name: str, keys: Sequence[str], args: Sequence[Arg]) -> asyncio.Future[Any]:
        sha = self.scripts[name].sha
        return self.call("EVALSHA", sha, len(keys), *keys, *args)

    def _queue(self, commands: list[tuple[Arg, ...]], many: bool) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if self.endpoint is not None:
            self._submit(Request(commands, future, many))
        elif many and len(commands) == 1:  # a group of one is still a list
            one: asyncio.Future[Any] = loop.create_future()
            self._queue_cluster(loop, commands, one)
            one.add_done_callback(
                lambda f: (
                    future.set_exception(e)
                    if (e := f.exception())
                    else future.set_result([f.result()])
                )
            )
        else:
            self._queue_cluster(loop, commands, future)
        return future

    # -- single server: pipelined links --------------------------------------------------

    def _submit(self, request: Request) -> None:
        try:
            packed = [self._pack(args) for args in request.commands]
        except Exception as exc:  # noqa: BLE001 - DataError and the like go to the caller
            assert request.future is not None
            request.future.set_exception(exc)
            return
        at = self._next_link
        link = self._links[at]
        if link is None or link.lost:
            assert self.endpoint is not None
            link = self._links[at] = Link(self, self.endpoint)
        if link.waiting + len(packed) > COMMANDS_WAITING_MAX:
            assert request.future is not None
            request.future.set_exception(StoreBusy(f"{link.waiting} commands wait for Redis"))
            return
        link.send(request, packed)
        if LINKS > 1 and link.waiting >= WRITE_COMMANDS_MIN:
            self._next_link = (at + 1) % LINKS

    def _pack(self, args: tuple[Arg, ...]) -> bytes:
        """RESP for one command, byte for byte what redis-py's pack_command writes."""
        if self._command(args[0])[0]:
            try:
                return _pack_command(args)
            except TypeError:
                pass  # bool, None, bytearray...: redis-py packs them or raises its DataError
        assert self.endpoint is not None
        return b"".join(self.endpoint.template.pack_command(*args))

    def callback(self, name: Arg) -> Callback | None:
        return self._command(name)[1]

    def finish(self, request: Request) -> None:
        """A request's replies are all in: resolve its future (or retry after NOSCRIPT)."""
        replies = request.replies
        error = next((r for r in replies if isinstance(r, Exception)), None)
        future = request.future
        assert future is not None
        if error is None:
            if not future.done():
                future.set_result(replies if request.many else replies[0])
            return
        if not request.retried and any(isinstance(r, NoScriptError) for r in replies):
            task = asyncio.get_running_loop().create_task(self._retry_noscript(request))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        if not future.done():
            future.set_exception(error)

    async def _retry_noscript(self, request: Request) -> None:
        """Load the scripts, send the commands that met NOSCRIPT again, once."""
        assert request.future is not None
        missing = [i for i, r in enumerate(request.replies) if isinstance(r, NoScriptError)]
        try:
            await self.load_scripts()
            again = asyncio.get_running_loop().create_future()
            self._submit(Request([request.commands[i] for i in missing], again, True, True))
            results = await again
        except Exception as exc:  # noqa: BLE001 - the caller must hear of it
            if not request.future.done():
                request.future.set_exception(exc)
            return
        for i, result in zip(missing, results, strict=True):
            request.replies[i] = result
        request.retried = True
        self.finish(request)

    # -- cluster: redis-py's cluster pipeline ----------------------------------------------

    def _queue_cluster(
        self,
        loop: asyncio.AbstractEventLoop,
        commands: list[tuple[Arg, ...]],
        future: asyncio.Future[Any],
    ) -> None:
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
        assert isinstance(self.redis, RedisCluster)
        pipe = self.redis.pipeline(transaction=False)
        for args in commands:
            pipe.execute_command(*args)
        return list(await pipe.execute(raise_on_error=False))

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
        callback = self.redis.response_callbacks.get(text)
        if callback is not None and inspect.iscoroutinefunction(callback):
            # Replies are resolved inside data_received, where nothing can be awaited.
            raise TypeError(f"store: {text!r} has an async reply callback")
        known = (one_word, callback)
        if len(self._commands) < COMMAND_NAMES_MAX:
            self._commands[name] = known
        return known

    async def close(self) -> None:
        """Waits for the commands already issued, then closes the connections."""
        for link in self._links:
            if link is not None and not link.lost:
                link.write()
                futures = link.futures()
                if futures:
                    await asyncio.wait(futures)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for link in self._links:
            if link is not None:
                link.close()
        await self.redis.aclose()
