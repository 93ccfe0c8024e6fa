"""One pipelined RESP connection to a single Redis server, spoken by the store itself.

`Endpoint` reads where and how to connect from a redis-py client (host, TLS, credentials,
db) exactly as redis-py does. A `Link` (an asyncio.Protocol) packs commands with hiredis,
writes them at the end of the tick (or once `WRITE_COMMANDS_MIN` wait), parses replies in
`data_received`, matches them to their requests in FIFO order and hands each finished
request to its owner (the Store). The fan-out's pub/sub connection shares the packing and
the reader.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol, cast

import hiredis
from redis._parsers.base import BaseParser
from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.connection import (
    AbstractConnection,
    SSLConnection,
    UnixDomainSocketConnection,
)
from redis.credentials import CredentialProvider, UsernamePasswordCredentialProvider
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

# Single server: a link writes as soon as this many commands wait, else at the end of the
# tick. Measured (docs/benchmark.md): slices of 8-24 commands, written while the tick still
# runs so Redis starts early, did not raise sign-in throughput and cost server CPU on the
# steady path (more writes, smaller Redis reads); this bounds what one huge tick buffers.
WRITE_COMMANDS_MIN = 512
CONNECT_S_MAX = 10.0  # when the client sets no socket_connect_timeout
COMMANDS_WAITING_MAX = 100_000  # per link: past it, calls fail fast with StoreBusy

Arg = str | bytes | int
Pending = tuple[tuple[Arg, ...], "asyncio.Future[Any] | None", int]
Callback = Callable[..., Any]
PackCommand = Callable[[tuple[Arg, ...]], bytes]

pack_command = cast(PackCommand, hiredis.pack_command)  # its stub types one argument
# redis-py's error-reply classes (NoScriptError for NOSCRIPT, OutOfMemoryError for OOM...).
_reply_error = cast(Callable[[str], Exception], BaseParser.parse_error)
MORE = object()  # hiredis: no complete reply buffered yet


class StoreBusy(Exception):
    """Too many commands already wait for Redis: refuse rather than queue without bound."""


class Owner(Protocol):
    """What a link needs of the store that owns it."""

    def callback(self, name: Arg) -> Callback | None: ...

    def finish(self, request: Request) -> None: ...


class Endpoint:
    """Where and how to connect, as redis-py reads it from the client's URL and options.

    A connection object of the client's own class is built (never connected) to parse
    host/port/unix path, TLS (rediss://: its SSL context), credentials, db and client
    name exactly as redis-py does; it also packs what hiredis cannot.
    """

    @classmethod
    def of(cls, redis: Redis) -> Endpoint:
        pool = redis.connection_pool
        return cls(pool.connection_class(**pool.connection_kwargs))

    @classmethod
    def of_node(cls, node: ClusterNode) -> Endpoint:
        """A cluster node, with the credentials and TLS of the cluster client it belongs to."""
        return cls(node.connection_class(**node.connection_kwargs))

    def __init__(self, template: AbstractConnection) -> None:
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
            return hiredis.Reader(replyError=_reply_error, notEnoughData=MORE)
        return hiredis.Reader(replyError=_reply_error, notEnoughData=MORE, encoding=self.encoding)

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

    def __init__(self, store: Owner, endpoint: Endpoint) -> None:
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
            self._hello = [pack_command(args) for args in hello]
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
            if reply is MORE:
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


def deliver(link: Link, request: Request, packed: list[bytes]) -> None:
    """Send a request on a link, or fail it with StoreBusy if the link has enough waiting."""
    if link.waiting + len(packed) > COMMANDS_WAITING_MAX:
        assert request.future is not None
        request.future.set_exception(StoreBusy(f"{link.waiting} commands wait for Redis"))
        return
    link.send(request, packed)
