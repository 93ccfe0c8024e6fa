"""The relay's work on its streams: claim what a dead relay left, read, deliver to the
webhook, acknowledge, park dead letters. One loop per stream (each partition, and the legacy
stream while it exists), sharing one limit of requests in flight. push_relay.py checks the
options and runs it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from server.jobs.dead_letters import (
    dead_letter_stream,
    failures_key,
    park,
)
from server.jobs.webhook import (
    Outcome,
    Posted,
    Poster,
    Trigger,
    blames_the_entry,
    parse_trigger,
    pause,
    text_of,
)

log = logging.getLogger(__name__)

GROUP = "push-gateway"
GROUP_START_ID = "0"  # a new group reads what was written before the relay first ran
REDIS_PAUSE_MS_MAX = 5_000
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
class Stream:
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
class Relay:
    redis: Redis
    poster: Poster
    streams: list[Stream]
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

    async def ensure_group(self, stream: Stream) -> bool:
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
            cancelled_under(exc)
            if "BUSYGROUP" not in str(exc):
                if legacy and "key to exist" in str(exc):  # deleted since EXISTS
                    return False
                raise
        if legacy and not stream.ready:
            log.info("push relay: draining the legacy stream %s too", stream.name)
        stream.ready = True
        return True

    async def consume(self, stream: Stream, iterations_max: int | None) -> None:
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
                cancelled_under(exc)
                self.stats.redis_errors += 1
                errors_in_row += 1
                log.warning("push relay: %s: redis error: %r", stream.label, exc)
                pause_ms = min(REDIS_PAUSE_MS_MAX, 100 << min(errors_in_row, 10))
                await pause(self.stop, pause_ms)
                if "NOGROUP" in str(exc):  # the stream or group was deleted under us
                    stream.cursor = "0-0"
                    stream.ready = False  # created again on the next turn (legacy: if it exists)

    async def step(self, stream: Stream) -> None:
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

    async def deliver_batch(self, stream: Stream, entries: list[Any], source: str) -> None:
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
                        # One line per delivery: what a newcomer watching the relay looks
                        # for (`manor push-relay --log-level warning` keeps only problems).
                        log.info(
                            "push relay: delivered %s %s to player %s (collapse %s)",
                            trigger.delivery_id,
                            trigger.kind,
                            trigger.player,
                            trigger.collapse_key,
                        )
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

    async def settle(self, stream: Stream, entry_id: str) -> None:
        self.stats.delivered += 1
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.xack(stream.name, self.group, entry_id)
                pipe.hdel(failures_key(stream.name), entry_id)
                await pipe.execute()
        except RedisError as exc:  # stays pending: delivered again later, at least once
            cancelled_under(exc)
            self.stats.redis_errors += 1
            log.warning("push relay: XACK %s (%s) failed: %r", entry_id, stream.label, exc)

    async def drop(
        self,
        stream: Stream,
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
            cancelled_under(exc)
            self.stats.redis_errors += 1
            log.warning("push relay: parking %s failed: %r", entry_id, exc)

    async def failed(self, stream: Stream, trigger: Trigger, posted: Posted) -> None:
        """A pass that ended undelivered. A failure that blames the entry (the receiver
        failed on it) counts; at dead_letter_after such passes, or once the entry is older
        than dead_letter_age_ms whatever the failure, the entry is parked."""
        failures = 0
        if blames_the_entry(posted.status):
            try:
                key = failures_key(stream.name)
                failures = int(await self.redis.hincrby(key, trigger.id, 1))
            except RedisError as exc:
                cancelled_under(exc)
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

        async def pending(stream: Stream) -> int:
            if stream.partition is None and not await self.redis.exists(stream.name):
                return 0
            try:
                return int((await self.redis.xpending(stream.name, self.group))["pending"])
            except ResponseError as exc:
                cancelled_under(exc)
                if "NOGROUP" in str(exc):
                    return 0
                raise

        async def dead(stream: Stream) -> int:
            return int(await self.redis.xlen(dead_letter_stream(stream.name)))

        self.stats.pending_left = sum([await pending(stream) for stream in self.streams])
        self.stats.dead_letters = sum([await dead(stream) for stream in self.streams])


def cancelled_under(exc: RedisError) -> None:
    """Re-raise a cancellation that redis-py turned into a RedisError (a cancel landing on a
    command, seen as a timeout or a lost connection): swallowed, the loop would go on and
    the task cancelling the relay would wait for it for ever."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError from exc
