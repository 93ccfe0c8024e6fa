"""Forward push-notification triggers from the trigger stream to an HTTP webhook.

The app appends one entry per trigger to the trigger stream of the player's partition
(TRIGGER_PARTITIONS streams, each its own slot); the relay reads every partition (and the
legacy single stream while it exists) through one consumer group, one loop per stream,
POSTs each entry as signed JSON and acknowledges it only once the webhook answered 2xx, or
parks it as a dead letter beside its stream (malformed, rejected for good, or failing pass
after pass). Several relays share the load (the group gives each entry to one of them) and
claim (XAUTOCLAIM) what a dead one left pending, in every partition. Delivery is at least
once: `X-Manor-Delivery` (`<partition>/<stream id>`) lets the receiver drop repeats. The
body, signature and answer classes are in webhook.py, the dead letters in dead_letters.py.
See docs/push-relay.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from server.clock import Clock, SystemClock
from server.jobs.dead_letters import (
    DEAD_LETTER_LEN_MAX,
    dead_letter_stream,
    failures_key,
    park,
    relay_streams,
)
from server.jobs.webhook import (
    Outcome,
    Posted,
    Poster,
    Trigger,
    backoff_ms,
    blames_the_entry,
    classify,
    parse_retry_after_ms,
    parse_trigger,
    pause,
    sign,
    text_of,
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

GROUP = "push-gateway"
GROUP_START_ID = "0"  # a new group reads what was written before the relay first ran
SECRET_BYTES_MIN = 16
BATCH_MAX_LIMIT = 10_000
REDIS_PAUSE_MS_MAX = 5_000
IN_FLIGHT_MAX = 8  # webhook requests at once, over all streams
# Parking: after this many passes (each up to attempts_max requests) that the receiver
# failed on this entry, or once a failing entry is this old (a day: a notification that
# late is useless), whatever the failure.
DEAD_LETTER_AFTER = 5
DEAD_LETTER_AGE_MS = 86_400_000


@dataclass(slots=True)
class RelayStats:
    """Every entry taken (read + claimed) ends as delivered, dropped, dead-lettered or
    undelivered."""

    read: int = 0  # new entries from XREADGROUP
    claimed: int = 0  # idle pending entries taken over by XAUTOCLAIM
    delivered: int = 0  # webhook answered 2xx
    dropped: int = 0  # parked at once: a malformed entry or a permanent 4xx
    dead_lettered: int = 0  # parked after dead_letter_after failed passes
    undelivered: int = 0  # left pending for a later XAUTOCLAIM
    retried: int = 0  # HTTP attempts after the first, over all entries
    redis_errors: int = 0
    pending_left: int | None = None  # the group's pending count when the relay returned
    dead_letters: int | None = None  # the dead-letter stream's length when it returned

    def settled(self) -> tuple[int, int, int, int, int]:
        return (self.delivered, self.dropped, self.dead_lettered, self.undelivered, self.retried)


@dataclass
class _Stream:
    """One stream the relay consumes: a partition, or the legacy single stream (partition
    None), which is read only while it exists."""

    name: str
    partition: int | None
    cursor: str = "0-0"  # XAUTOCLAIM's, carried over turns
    ready: bool = False  # the group is known to exist

    @property
    def label(self) -> str:
        return "legacy stream" if self.partition is None else f"partition {self.partition}"


@dataclass
class _Relay:
    redis: Redis
    poster: Poster
    streams: list[_Stream]
    group: str
    consumer: str
    batch_max: int
    in_flight_max: int
    claim_idle_ms: int
    read_block_ms: int
    dead_letter_after: int
    dead_letter_age_ms: int
    dead_letter_len_max: int
    stats: RelayStats = field(default_factory=RelayStats)
    gate: asyncio.Semaphore = field(init=False)  # webhook requests in flight, all streams

    def __post_init__(self) -> None:
        self.gate = asyncio.Semaphore(self.in_flight_max)

    @property
    def stop(self) -> asyncio.Event:
        return self.poster.stop

    async def ensure_group(self, stream: _Stream) -> bool:
        """Create the group if missing; False when the legacy stream does not exist (then
        there is nothing to drain, and it is not created)."""
        legacy = stream.partition is None
        if legacy and not await self.redis.exists(stream.name):
            return False
        try:
            await self.redis.xgroup_create(
                stream.name, self.group, GROUP_START_ID, mkstream=not legacy
            )
        except ResponseError as exc:
            _cancelled_under(exc)
            if "BUSYGROUP" not in str(exc):
                if legacy and "key to exist" in str(exc):  # deleted since EXISTS
                    return False
                raise
        if legacy and not stream.ready:
            log.info("push relay: draining the legacy stream %s too", stream.name)
        stream.ready = True
        return True

    async def consume(self, stream: _Stream, iterations_max: int | None) -> None:
        """One stream's loop: claim, read, deliver, until stop (or iterations_max turns)."""
        iteration, errors_in_row = 0, 0
        while not self.stop.is_set() and (iterations_max is None or iteration < iterations_max):
            iteration += 1
            try:
                if not stream.ready and not await self.ensure_group(stream):
                    await pause(self.stop, self.read_block_ms)  # no legacy stream (yet)
                    continue
                await self.step(stream)
                errors_in_row = 0
            except RedisError as exc:
                _cancelled_under(exc)
                self.stats.redis_errors += 1
                errors_in_row += 1
                log.warning("push relay: %s: redis error: %r", stream.label, exc)
                pause_ms = min(REDIS_PAUSE_MS_MAX, 100 << min(errors_in_row, 10))
                await pause(self.stop, pause_ms)
                if "NOGROUP" in str(exc):  # the stream or group was deleted under us
                    stream.cursor = "0-0"
                    stream.ready = False  # created again on the next turn (legacy: if it exists)

    async def step(self, stream: _Stream) -> None:
        """One XAUTOCLAIM page, then new entries (blocking only when nothing was claimed)."""
        reply = await self.redis.xautoclaim(
            stream.name,
            self.group,
            self.consumer,
            self.claim_idle_ms,
            stream.cursor,
            count=self.batch_max,
        )
        stream.cursor = text_of(reply[0])
        claimed = reply[1]
        if len(reply) > 2 and reply[2]:  # trimmed away while pending: forget their failures
            await self.redis.hdel(failures_key(stream.name), *reply[2])
        self.stats.claimed += len(claimed)
        await self.deliver_batch(stream, claimed, "claimed")
        if self.stop.is_set():
            return
        replies = await self.redis.xreadgroup(
            self.group,
            self.consumer,
            {stream.name: ">"},
            count=self.batch_max,
            block=None if claimed else self.read_block_ms,
        )
        if isinstance(replies, dict):  # RESP3: {stream: [entries]}
            pages = [page for stream_pages in replies.values() for page in stream_pages]
        else:  # RESP2: [[stream, entries]]
            pages = [reply[1] for reply in replies]
        entries = [entry for page in pages for entry in page]
        self.stats.read += len(entries)
        await self.deliver_batch(stream, entries, "new")

    async def deliver_batch(self, stream: _Stream, entries: list[Any], source: str) -> None:
        """Concurrent across players, in stream order within a player (a chain); one log
        line per batch. The requests in flight are bounded over all streams (`gate`)."""
        if not entries:
            return
        started_s, before = time.monotonic(), self.stats.settled()
        chains: dict[str, list[Trigger]] = {}
        for entry_id, fields in entries:
            try:
                trigger = parse_trigger(entry_id, fields, stream.partition)
            except ValueError as exc:
                await self.drop(stream, text_of(entry_id), fields, f"malformed: {exc}", None)
                continue
            chains.setdefault(trigger.player, []).append(trigger)
        halted = asyncio.Event()  # the endpoint looks down or misconfigured: stop this batch

        async def run_chain(chain: list[Trigger]) -> None:
            async with self.gate:
                for index, trigger in enumerate(chain):
                    if halted.is_set() or self.stop.is_set():
                        self.stats.undelivered += len(chain) - index
                        return
                    posted = await self.poster.post(trigger)
                    self.stats.retried += posted.retries
                    if posted.outcome is Outcome.DELIVERED:
                        await self.settle(stream, trigger.id)
                    elif posted.outcome is Outcome.DROP:
                        why = f"rejected: {posted.reason}"
                        await self.drop(stream, trigger.id, trigger.fields(), why, trigger)
                    else:
                        halted.set()  # later entries of the chain stay behind this one
                        if posted.outcome is Outcome.RETRY and not posted.stopped:
                            await self.failed(stream, trigger, posted)
                        else:
                            self.stats.undelivered += 1
                        self.stats.undelivered += len(chain) - index - 1
                        return

        async with asyncio.TaskGroup() as tasks:
            for chain in chains.values():
                tasks.create_task(run_chain(chain))
        after = self.stats.settled()
        delta = [a - b for a, b in zip(after, before, strict=True)]
        delivered, dropped, parked, left, retries = delta
        log.info(
            "push relay: batch of %d %s (%s): %d delivered, %d dropped, %d dead-lettered, "
            "%d left pending, %d retries, %d ms",
            len(entries),
            source,
            stream.label,
            delivered,
            dropped,
            parked,
            left,
            retries,
            (time.monotonic() - started_s) * 1000,
        )

    async def settle(self, stream: _Stream, entry_id: str) -> None:
        self.stats.delivered += 1
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.xack(stream.name, self.group, entry_id)
                pipe.hdel(failures_key(stream.name), entry_id)
                await pipe.execute()
        except RedisError as exc:  # stays pending: delivered again later, at least once
            _cancelled_under(exc)
            self.stats.redis_errors += 1
            log.warning("push relay: XACK %s (%s) failed: %r", entry_id, stream.label, exc)

    async def drop(
        self,
        stream: _Stream,
        entry_id: str,
        fields: Any,
        reason: str,
        trigger: Trigger | None,
        failures: int = 0,
    ) -> None:
        """Park an entry that will never be delivered (or failed too often)."""
        if failures:
            self.stats.dead_lettered += 1
        else:
            self.stats.dropped += 1
        who = f"{trigger.kind}, player {trigger.player}" if trigger else "no trigger"
        log.error(
            "push relay: parking %s (%s, %s) as a dead letter: %s",
            entry_id,
            stream.label,
            who,
            reason,
        )
        try:
            await park(
                self.redis,
                stream.name,
                self.group,
                entry_id,
                fields,
                reason,
                failures,
                self.poster.clock.now_ms(),
                self.dead_letter_len_max,
            )
        except RedisError as exc:  # stays pending: parked (or delivered) on a later pass
            _cancelled_under(exc)
            self.stats.redis_errors += 1
            log.warning("push relay: parking %s failed: %r", entry_id, exc)

    async def failed(self, stream: _Stream, trigger: Trigger, posted: Posted) -> None:
        """A pass that ended undelivered. A failure that blames the entry (the receiver
        failed on it) counts; at dead_letter_after such passes, or once the entry is older
        than dead_letter_age_ms whatever the failure, the entry is parked."""
        failures = 0
        if blames_the_entry(posted.status):
            try:
                key = failures_key(stream.name)
                failures = int(await self.redis.hincrby(key, trigger.id, 1))
            except RedisError as exc:
                _cancelled_under(exc)
                self.stats.redis_errors += 1
                log.warning("push relay: counting a failure of %s failed: %r", trigger.id, exc)
        age_ms = self.poster.clock.now_ms() - int(trigger.id.split("-", 1)[0])
        attempts = self.poster.attempts_max
        if failures >= self.dead_letter_after:
            why = f"failed: {failures} passes of {attempts} attempts, last {posted.reason}"
        elif age_ms >= self.dead_letter_age_ms:
            why = f"expired: undelivered for {age_ms // 1000} s, last {posted.reason}"
        else:
            self.stats.undelivered += 1
            return
        await self.drop(stream, trigger.id, trigger.fields(), why, trigger, max(failures, 1))

    async def totals(self) -> None:
        """The groups' pending counts and the dead letters kept, over all streams."""

        async def pending(stream: _Stream) -> int:
            if stream.partition is None and not await self.redis.exists(stream.name):
                return 0
            try:
                return int((await self.redis.xpending(stream.name, self.group))["pending"])
            except ResponseError as exc:
                _cancelled_under(exc)
                if "NOGROUP" in str(exc):
                    return 0
                raise

        async def dead(stream: _Stream) -> int:
            return int(await self.redis.xlen(dead_letter_stream(stream.name)))

        self.stats.pending_left = sum([await pending(stream) for stream in self.streams])
        self.stats.dead_letters = sum([await dead(stream) for stream in self.streams])


def _cancelled_under(exc: RedisError) -> None:
    """Re-raise a cancellation that redis-py turned into a RedisError (a cancel landing on a
    command, seen as a timeout or a lost connection): swallowed, the loop would go on and
    the task cancelling the relay would wait for it for ever."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError from exc


def _connections_max(redis: Redis) -> int | None:
    """The client's connection limit (per node on a cluster), if it says."""
    pool = getattr(redis, "connection_pool", None)
    if pool is not None:
        limit = getattr(pool, "max_connections", None)
    else:  # RedisCluster: the kwargs of each node's pool
        limit = getattr(redis, "connection_kwargs", {}).get("max_connections")
    return limit if isinstance(limit, int) else None


def _check(relay: _Relay) -> None:
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
    relay = _Relay(
        redis=redis,
        poster=poster,
        streams=[_Stream(name, partition) for name, partition in streams or relay_streams()],
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
