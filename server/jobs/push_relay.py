"""Forward push-notification triggers from the trigger stream to an HTTP webhook.

The app appends one entry per trigger to the trigger stream of the player's partition
(TRIGGER_PARTITIONS streams, each its own slot); the relay reads every partition (and the
legacy single stream while it exists) through one consumer group, one loop per stream,
POSTs each entry as signed JSON and acknowledges it only once the webhook answered 2xx, or
parks it as a dead letter beside its stream (malformed, rejected for good, or failing pass
after pass). Several relays share the load (the group gives each entry to one of them) and
claim (XAUTOCLAIM) what a dead one left pending, in every partition. Delivery is at least
once: `X-Manor-Delivery` (`<partition>/<stream id>`) lets the receiver drop repeats. This
module checks the options and runs the relay; the loops are in relay.py, the body,
signature and answer classes in webhook.py, the dead letters in dead_letters.py.
See docs/push-relay.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from urllib.parse import urlsplit

import httpx
from redis.asyncio import Redis
from redis.exceptions import RedisError

from server.clock import Clock, SystemClock
from server.jobs.dead_letters import (
    DEAD_LETTER_LEN_MAX,
    relay_streams,
)
from server.jobs.relay import (
    DEAD_LETTER_AFTER,
    DEAD_LETTER_AGE_MS,
    GROUP,
    Relay,
    RelayStats,
    Stream,
)
from server.jobs.webhook import (
    Outcome,
    Poster,
    backoff_ms,
    classify,
    parse_retry_after_ms,
    sign,
    verify_signature,
)

__all__ = [
    "Outcome",
    "RelayStats",
    "backoff_ms",
    "classify",
    "parse_retry_after_ms",
    "run_relay",
    "sign",
    "verify_signature",
]

log = logging.getLogger(__name__)

SECRET_BYTES_MIN = 16
BATCH_MAX_LIMIT = 10_000
IN_FLIGHT_MAX = 8  # webhook requests at once, over all streams


def _connections_max(redis: Redis) -> int | None:
    """The client's connection limit (per node on a cluster), if it says."""
    pool = getattr(redis, "connection_pool", None)
    if pool is not None:
        limit = getattr(pool, "max_connections", None)
    else:  # RedisCluster: the kwargs of each node's pool
        limit = getattr(redis, "connection_kwargs", {}).get("max_connections")
    return limit if isinstance(limit, int) else None


def _check(relay: Relay) -> None:
    """Settings checked before the first read: a bad value stops the relay at start."""
    poster = relay.poster
    scheme = urlsplit(poster.url).scheme
    if scheme not in ("http", "https"):
        raise ValueError(f"webhook_url must be http(s), not {poster.url!r}")
    if len(poster.secret) < SECRET_BYTES_MIN:
        raise ValueError(f"secret: at least {SECRET_BYTES_MIN} bytes")
    if not relay.consumer:
        raise ValueError("consumer: a name unique per relay process (host + pid)")
    if not 1 <= relay.batch_max <= BATCH_MAX_LIMIT:
        raise ValueError(f"batch_max: 1..{BATCH_MAX_LIMIT}")
    for name in ("attempts_max", "backoff_ms_base", "request_timeout_ms"):
        if getattr(poster, name) < 1:
            raise ValueError(f"{name} must be >= 1")
    for name in ("in_flight_max", "claim_idle_ms", "read_block_ms", "dead_letter_age_ms"):
        if getattr(relay, name) < 1:
            raise ValueError(f"{name} must be >= 1")
    needed = len(relay.streams) + relay.in_flight_max
    limit = _connections_max(relay.redis)
    if limit is not None and limit < needed:
        raise ValueError(
            f"the Redis client allows {limit} connections; the relay needs {needed}: one "
            f"blocked read per stream ({len(relay.streams)}) and in_flight_max"
        )
    if poster.backoff_ms_max < poster.backoff_ms_base:
        raise ValueError("backoff_ms_max must be >= backoff_ms_base")
    if not 1 <= relay.dead_letter_after <= 1_000:
        raise ValueError("dead_letter_after: 1..1000 failed passes")
    if not 1 <= relay.dead_letter_len_max <= 10_000_000:
        raise ValueError("dead_letter_len_max: 1..10000000 entries")
    retry_ms_worst = poster.attempts_max * poster.request_timeout_ms + sum(
        min(poster.backoff_ms_max, poster.backoff_ms_base << min(a - 1, 32))
        for a in range(1, poster.attempts_max)
    )
    if relay.claim_idle_ms <= retry_ms_worst:
        log.warning(
            "push relay: claim_idle_ms %d <= worst retry time %d ms: another consumer may "
            "claim an entry this one is still retrying (a duplicate delivery)",
            relay.claim_idle_ms,
            retry_ms_worst,
        )


async def run_relay(
    redis: Redis,
    webhook_url: str,
    secret: bytes,
    *,
    consumer: str,
    group: str = GROUP,
    streams: list[tuple[str, int | None]] | None = None,
    batch_max: int = 100,
    in_flight_max: int = IN_FLIGHT_MAX,
    attempts_max: int = 8,
    backoff_ms_base: int = 200,
    backoff_ms_max: int = 30_000,
    request_timeout_ms: int = 5_000,
    claim_idle_ms: int = 120_000,
    read_block_ms: int = 1_000,
    dead_letter_after: int = DEAD_LETTER_AFTER,
    dead_letter_age_ms: int = DEAD_LETTER_AGE_MS,
    dead_letter_len_max: int = DEAD_LETTER_LEN_MAX,
    stop: asyncio.Event | None = None,
    http: httpx.AsyncClient | None = None,
    rng: random.Random | None = None,
    clock: Clock | None = None,
    iterations_max: int | None = None,
) -> RelayStats:
    """Relay triggers until `stop` is set (or iterations_max turns of each stream's loop);
    returns the counts.

    `streams` ((name, partition) pairs; default: every partition, then the legacy single
    stream while it exists) are consumed concurrently, one loop each: on a cluster a
    multi-key XREADGROUP must stay in one slot, and each partition has a slot of its own.
    So the client needs a connection per stream (a blocked read each) plus in_flight_max.
    Redis errors inside the loops are logged and retried after a pause; a bad setting
    raises ValueError before anything is read, a Redis error while creating the groups at
    start is raised.
    """
    own_http = http is None
    poster = Poster(
        http=http or httpx.AsyncClient(follow_redirects=False),
        url=webhook_url,
        secret=secret,
        attempts_max=attempts_max,
        backoff_ms_base=backoff_ms_base,
        backoff_ms_max=backoff_ms_max,
        request_timeout_ms=request_timeout_ms,
        stop=stop or asyncio.Event(),
        rng=rng or random.Random(),
        clock=clock or SystemClock(),
    )
    relay = Relay(
        redis=redis,
        poster=poster,
        streams=[Stream(name, partition) for name, partition in streams or relay_streams()],
        group=group,
        consumer=consumer,
        batch_max=batch_max,
        in_flight_max=in_flight_max,
        claim_idle_ms=claim_idle_ms,
        read_block_ms=read_block_ms,
        dead_letter_after=dead_letter_after,
        dead_letter_age_ms=dead_letter_age_ms,
        dead_letter_len_max=dead_letter_len_max,
    )
    try:
        _check(relay)
        for each in relay.streams:  # one by one: a fresh RedisCluster client breaks when
            await relay.ensure_group(each)  # its first commands run at once (redis-py 8.1)
        log.info(
            "push relay: %d streams (%s ...)/%s as %s -> %s",
            len(relay.streams),
            relay.streams[0].name,
            group,
            consumer,
            webhook_url,
        )
        async with asyncio.TaskGroup() as loops:
            for each in relay.streams:
                loops.create_task(relay.consume(each, iterations_max))
        with contextlib.suppress(RedisError):
            await relay.totals()
    finally:
        if own_http:
            await poster.http.aclose()
    return relay.stats
