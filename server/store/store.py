"""The Redis connection and the command coalescer.

Commands issued during one event-loop tick share writes and reads: a hundred sockets
signing in at once cost the server a handful of syscalls, not a hundred round trips.
Scripts run by SHA; a server that lost them (restart, failover) gets them loaded again
and the affected commands retried once.

On a single server the store speaks RESP itself over its own pipelined connection
(`Link` in link.py, an asyncio.Protocol): commands are packed by hiredis in C and written at the end
of the tick (or once `WRITE_COMMANDS_MIN` wait); replies are parsed by hiredis inside
`data_received`, matched to their futures in FIFO order and passed through redis-py's
response callbacks for the client's protocol, so every command returns what redis-py
returned (HGETALL a dict, PING True...). No per-reply `await`, no per-batch timeout
context, no pooled-connection checkout: -14 % server CPU per steady sign-in, -17 %
per credited one (docs/benchmark.md). As with redis-py (8.x: no retries by default), a
lost connection fails the commands waiting on it and the next call connects again.
On Redis Cluster each primary gets such a link, and `Shards` (shards.py) routes every
command by its slot; what the links cannot settle (keyless commands, MOVED, ASK, TRYAGAIN,
CLUSTERDOWN, NOSCRIPT) goes through redis-py's cluster pipeline (`Fallback`, fallback.py).
Replica acknowledgements (MANOR_STORE_ACK=replica) are acks.py's.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, cast
from urllib.parse import unquote, urlsplit

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.exceptions import NoScriptError, ResponseError

from server.settings import cluster_seeds
from server.store.acks import Acks, ReplicaTimeout
from server.store.fallback import RETRY_HERE, Fallback
from server.store.link import (
    WRITE_COMMANDS_MIN,
    Arg,
    Callback,
    Endpoint,
    Link,
    Request,
    StoreBusy,
    deliver,
    pack_command,
)
from server.store.scripts import Script, all_scripts
from server.store.shards import Shards

# Arg is the link's, and the type every caller gives its commands.
__all__ = ["Arg", "ReplicaTimeout", "Store", "StoreBusy", "connect", "no_expiry"]

COMMAND_NAMES_MAX = 256  # command names whose packing and reply callback are remembered
# Pipelined connections per Store. One keeps every command in issue order; 2-8 measured
# no faster (docs/benchmark.md).
LINKS = 1


def connect(url: str, max_connections: int = 32) -> Redis | RedisCluster:
    """A client for `redis://`/`rediss://` (one server) or `redis+cluster://` and
    `rediss+cluster://` with one or more seed nodes: `redis+cluster://[user:pass@]h:p,h:p`."""
    if "+cluster://" not in url:
        return Redis.from_url(url, max_connections=max_connections)
    seeds = cluster_seeds(url)
    parts = urlsplit(url)
    return RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in seeds],
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        ssl=parts.scheme.startswith("rediss"),
        max_connections=max_connections,
    )


def no_expiry(now_ms: int) -> int:
    return 0


class Store:
    """Coalesces commands per tick; `call()` is the only way the app talks to Redis."""

    def __init__(self, redis: Redis | RedisCluster) -> None:
        self.redis = redis
        self.cluster = isinstance(redis, RedisCluster)
        self.scripts: dict[str, Script] = all_scripts()
        self.publish_command = "SPUBLISH" if self.cluster else "PUBLISH"
        self.endpoint = None if isinstance(redis, RedisCluster) else Endpoint.of(redis)
        self._shards = Shards(self, redis) if isinstance(redis, RedisCluster) else None
        self._fallback = (
            Fallback(redis, self.load_scripts) if isinstance(redis, RedisCluster) else None
        )
        # Packs what hiredis cannot (bool, None...) exactly as the client's connections do.
        self._template = (self.endpoint or cast(Shards, self._shards)).template
        self._links: list[Link | None] = [None] * LINKS
        self._next_link = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._commands: dict[Arg, tuple[bool, Callback | None]] = {}  # see _command()
        # The business day (YYYYMMDD) of a moment: commits expire batches before it. The
        # app sets it from the rules' time zone; 0 (the default) checks no expiry.
        self.today_of: Callable[[int], int] = no_expiry
        # MANOR_STORE_ACK=replica: durable writes wait for a replica (acks.py).
        self.acks = Acks(self._pack, self._link_for, refuse_retried=self._shards is not None)

    async def require_replica_ack(self, timeout_ms: int, fsync: bool = False) -> None:
        """From now on durable() replies only once a replica has the write: WAIT 1 (in the
        replica's memory; the primary's own AOF has it with appendfsync always), or with
        `fsync` WAITAOF 0 1 (in the replica's AOF: Redis >= 7.2, Valkey; WAIT 1 where the
        engine lacks it). Replicas confirm their fsyncs about once a second, so `fsync`
        costs up to a second per commit group (docs/cluster.md)."""
        self.acks.timeout_ms = timeout_ms
        self.acks.command = ("WAIT", 1, timeout_ms)
        if fsync:
            try:
                await self.redis.execute_command("WAITAOF", 0, 0, 0)
                self.acks.command = ("WAITAOF", 0, 1, timeout_ms)
            except ResponseError:  # unknown command: Redis 7.0 / 7.1
                pass

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

    def durable_script(
        self, name: str, keys: Sequence[str], args: Sequence[Arg]
    ) -> asyncio.Future[Any]:
        """script(), answered only when the write is as durable as MANOR_STORE_ACK asks:
        with `replica`, once a replica confirms it (ReplicaTimeout if none does in time).
        The wait runs on the link that carried the write, shared by every durable write of
        the tick on that link (acks.py)."""
        if not self.acks.timeout_ms:
            return self.script(name, keys, args)
        loop = asyncio.get_running_loop()
        if self._shards is not None and not self._shards.mapped:
            return loop.create_task(self._durable_once_mapped(name, keys, args))
        command: tuple[Arg, ...] = ("EVALSHA", self.scripts[name].sha, len(keys), *keys, *args)
        request = Request([command], loop.create_future())
        link = self._link_for(keys[0])
        try:
            packed = [self._pack(command)]
        except Exception as exc:  # noqa: BLE001 - DataError and the like go to the caller
            assert request.future is not None
            request.future.set_exception(exc)
            return request.future
        deliver(link, request, packed)
        return self.acks.after(request, keys[0], link)

    async def _durable_once_mapped(
        self, name: str, keys: Sequence[str], args: Sequence[Arg]
    ) -> Any:
        assert self._shards is not None
        await self._shards.read_first_map()
        return await self.durable_script(name, keys, args)

    def _link_for(self, key: str) -> Link:
        """The link that carries `key`'s commands now (opened if it has to be)."""
        if self._shards is not None:
            return self._shards.link_of(key)
        link = self._links[self._next_link]
        if link is None or link.lost:
            assert self.endpoint is not None
            link = self._links[self._next_link] = Link(self, self.endpoint)
        return link

    def _queue(self, commands: list[tuple[Arg, ...]], many: bool) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        request = Request(commands, future, many)
        if self.endpoint is not None:
            self._submit(request)
        elif not self._on_shards(request):
            self._spawn(self._through_fallback(request))
        return future

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- single server: pipelined links --------------------------------------------------

    def _submit(self, request: Request) -> None:
        try:
            packed = [self._pack(args) for args in request.commands]
        except Exception as exc:  # noqa: BLE001 - DataError and the like go to the caller
            assert request.future is not None
            request.future.set_exception(exc)
            return
        link = self._link_for("")
        deliver(link, request, packed)
        if LINKS > 1 and link.waiting >= WRITE_COMMANDS_MIN:
            self._next_link = (self._next_link + 1) % LINKS

    def _on_shards(self, request: Request) -> bool:
        """Cluster: the request went out on the primaries' links (False: redis-py routes it)."""
        assert self._shards is not None and request.future is not None
        try:
            packed = [self._pack(args) for args in request.commands]
        except Exception as exc:  # noqa: BLE001 - DataError and the like go to the caller
            request.future.set_exception(exc)
            return True
        return self._shards.send(request, packed)

    def _pack(self, args: tuple[Arg, ...]) -> bytes:
        """RESP for one command, byte for byte what redis-py's pack_command writes."""
        if self._command(args[0])[0]:
            try:
                return pack_command(args)
            except TypeError:
                pass  # bool, None, bytearray...: redis-py packs them or raises its DataError
        return b"".join(self._template.pack_command(*args))

    def callback(self, name: Arg) -> Callback | None:
        return self._command(name)[1]

    def finish(self, request: Request) -> None:
        """A request's replies are all in: resolve its future (or retry what did not run)."""
        replies = request.replies
        error = next((r for r in replies if isinstance(r, Exception)), None)
        future = request.future
        assert future is not None
        if error is None:
            if not future.done():
                future.set_result(replies if request.many else replies[0])
            return
        retry: Callable[[Request], Coroutine[Any, Any, None]] | None = None
        if request.retried:
            pass
        elif self._shards is not None and any(isinstance(r, RETRY_HERE) for r in replies):
            retry = self._retry_on_cluster
        elif any(isinstance(r, NoScriptError) for r in replies):
            retry = self._retry_noscript
        if retry is not None:
            self._spawn(retry(request))
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

    # -- cluster: redis-py's cluster pipeline, for what the shards' links cannot settle --------

    async def _through_fallback(self, request: Request) -> None:
        """A request the shards cannot route (a command without a key they know)."""
        assert self._fallback is not None and request.future is not None
        try:
            request.replies = await self._fallback.execute(request.commands)
        except Exception as exc:  # noqa: BLE001 - the caller must hear of it
            if not request.future.done():
                request.future.set_exception(exc)
            return
        request.retried = True  # settled there: finish() resolves it as it stands
        self.finish(request)

    async def _retry_on_cluster(self, request: Request) -> None:
        """Commands a primary did not run go once more through redis-py's pipeline (which
        follows, waits or loads as each needs); then the shards copy the slot map redis-py
        has corrected."""
        assert self._fallback is not None and self._shards is not None
        assert request.future is not None
        replies = request.replies
        missing = [i for i, r in enumerate(replies) if isinstance(r, RETRY_HERE)]
        load_first = any(isinstance(replies[i], NoScriptError) for i in missing)
        try:
            again = await self._fallback.execute([request.commands[i] for i in missing], load_first)
        except Exception as exc:  # noqa: BLE001 - the caller must hear of it
            if not request.future.done():
                request.future.set_exception(exc)
            return
        finally:
            self._shards.map_changed()
        for i, result in zip(missing, again, strict=True):
            replies[i] = result
        request.retried = True
        self.finish(request)

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

    async def ping_nodes(self, timeout_s: float) -> dict[str, str]:
        """Every node this store talks to, as "host:port (role)" -> "ok" or why not."""

        async def ping(call: Awaitable[Any]) -> str:
            try:
                await asyncio.wait_for(call, timeout_s)
            except Exception as exc:  # noqa: BLE001 - the reason is the answer
                return f"unreachable: {exc!r}"
            return "ok"

        if not isinstance(self.redis, RedisCluster):
            assert self.endpoint is not None
            return {f"{self.endpoint.where} (primary)": await ping(self.call("PING"))}
        nodes = self.redis.get_nodes()
        answers = await asyncio.gather(
            *(ping(self.redis.execute_command("PING", target_nodes=node)) for node in nodes)
        )
        return {f"{n.name} ({n.server_type})": a for n, a in zip(nodes, answers, strict=True)}

    async def close(self) -> None:
        """Waits for the commands already issued, then closes the connections."""
        shard_links = self._shards.links() if self._shards is not None else []
        for link in [*self._links, *shard_links]:
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
        if self._shards is not None:
            self._shards.close()
        await self.redis.aclose()
