"""Redis Cluster: what the shards' links cannot settle, through redis-py's cluster pipeline.

Two kinds of command come here (store.py sends them): a command whose key the shards do
not know where to find (PING, INFO...: shards.KEY_FIRST lists what they route), and a
command a primary answered "not run here" (MOVED, ASK, TRYAGAIN, CLUSTERDOWN, NOSCRIPT).
redis-py's pipeline follows redirections and waits out TRYAGAIN and CLUSTERDOWN; NOSCRIPT
is settled here, by loading the scripts and sending the command again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError

from server.store.link import Arg
from server.store.shards import RETRIED_ELSEWHERE

# The answers of a primary that mean its command did not run: sent again through here.
RETRY_HERE = (NoScriptError, *RETRIED_ELSEWHERE)
# Rounds for a command that meets NOSCRIPT: once where it was sent, once more if a
# redirect took it to a promoted replica (a replica's script cache is its own).
SCRIPT_ROUNDS_MAX = 2
# redis-py 8.1 can fail a command on a connection whose transport went away (a peer reset,
# a disconnect racing a connect: seen in failovers and on a fresh cluster client) with the
# transport's own AttributeError or TypeError instead of a ConnectionError (redis-py issue
# #4287). The command's outcome is unknown, as for any lost connection: say so.
LEAKED_TRANSPORT_ERRORS = (AttributeError, TypeError)


def as_store_error(reply: Any) -> Any:
    """A reply of redis-py's pipeline, with a leaked transport error made a ConnectionError."""
    if isinstance(reply, LEAKED_TRANSPORT_ERRORS):
        error = RedisConnectionError(f"connection lost under redis-py: {reply!r}")
        error.__cause__ = reply
        return error
    return reply


class Fallback:
    """redis-py's cluster pipeline, with the scripts loaded again where a node lacks them."""

    def __init__(self, redis: RedisCluster, load_scripts: Callable[[], Awaitable[None]]) -> None:
        self.redis = redis
        self._load_scripts = load_scripts

    async def execute(
        self, commands: Sequence[tuple[Arg, ...]], load_first: bool = False
    ) -> list[Any]:
        """Replies in order; a command's error reply is its exception, not raised.
        `load_first`: the scripts are missing already (a NOSCRIPT sent it here)."""
        replies: list[Any] = [None] * len(commands)
        todo = list(range(len(commands)))
        for _ in range(SCRIPT_ROUNDS_MAX):
            if load_first:
                await self._load_scripts()
            results = await self._pipeline([commands[i] for i in todo])
            for i, result in zip(todo, results, strict=True):
                replies[i] = result
            todo = [i for i in todo if isinstance(replies[i], NoScriptError)]
            if not todo:
                break
            load_first = True
        return replies

    async def _pipeline(self, commands: list[tuple[Arg, ...]]) -> list[Any]:
        pipe = self.redis.pipeline(transaction=False)
        for args in commands:
            pipe.execute_command(*args)
        try:
            replies = await pipe.execute(raise_on_error=False)
        except LEAKED_TRANSPORT_ERRORS as exc:
            raise as_store_error(exc) from exc
        return [as_store_error(r) for r in replies]
