"""Forward push-notification triggers from the trigger stream to an HTTP webhook.

The app appends one entry per trigger to TRIGGER_STREAM; the relay reads it through a
consumer group, POSTs each entry as signed JSON and acknowledges it only once the webhook
answered 2xx (or rejected it for good). Delivery is at least once: `X-Manor-Delivery`
(the stream id) lets the receiver drop repeats. See docs/push-relay.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import hashlib
import hmac
import json
import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from server.clock import Clock, SystemClock
from server.store.keys import TRIGGER_STREAM

log = logging.getLogger(__name__)

GROUP = "push-gateway"
GROUP_START_ID = "0"  # a new group reads what was written before the relay first ran
SECRET_BYTES_MIN = 16
SIGNATURE_WINDOW_MS = 300_000
TIMESTAMP_DIGITS_MAX = 16
RETRY_AFTER_DIGITS_MAX = 10
BATCH_MAX_LIMIT = 10_000
REDIS_PAUSE_MS_MAX = 5_000

Fields = Mapping[bytes | str, bytes | str]


@dataclass(slots=True)
class RelayStats:
    """Every entry taken (read + claimed) ends as delivered, dropped or undelivered."""

    read: int = 0  # new entries from XREADGROUP
    claimed: int = 0  # idle pending entries taken over by XAUTOCLAIM
    delivered: int = 0  # webhook answered 2xx
    dropped: int = 0  # acked without delivery: malformed entry or a permanent 4xx
    undelivered: int = 0  # left pending for a later XAUTOCLAIM
    retried: int = 0  # HTTP attempts after the first, over all entries
    redis_errors: int = 0
    pending_left: int | None = None  # the group's pending count when the relay returned


@dataclass(frozen=True, slots=True)
class Trigger:
    id: str
    player: str
    kind: str
    collapse_key: str
    data: dict[str, Any]
    created_ms: int

    def body(self) -> bytes:
        payload = {
            "id": self.id,
            "player": self.player,
            "kind": self.kind,
            "collapse_key": self.collapse_key,
            "data": self.data,
            "created_ms": self.created_ms,
        }
        return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


class Outcome(enum.Enum):
    DELIVERED = "delivered"  # 2xx: ack
    DROP = "drop"  # permanent rejection of this entry: ack, count as dropped
    RETRY = "retry"  # transient: back off and try again, up to attempts_max
    HOLD = "hold"  # the endpoint is misconfigured: keep pending, stop this batch


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def parse_trigger(entry_id: bytes | str, fields: Fields | None) -> Trigger:
    """The trigger in one stream entry; ValueError when it can never be delivered."""
    if not fields:
        raise ValueError("entry has no fields (deleted by MAXLEN while pending?)")
    text = {_text(k): _text(v) for k, v in fields.items()}
    try:
        data = json.loads(text["data"])
        created_ms = int(text["created_ms"])
        trigger = Trigger(
            _text(entry_id), text["player"], text["kind"], text["collapse_key"], data, created_ms
        )
    except (KeyError, ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"malformed trigger: {exc!r}") from exc
    if not isinstance(data, dict) or not trigger.player or not trigger.kind:
        raise ValueError("malformed trigger: data is not an object or player/kind empty")
    return trigger


def sign(secret: bytes, timestamp_ms: int, body: bytes) -> str:
    """The `X-Manor-Signature` value: sha256=<hex HMAC-SHA256(secret, "<ts>." + body)>."""
    mac = hmac.new(secret, str(timestamp_ms).encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_signature(
    secret: bytes,
    timestamp_ms: int | str,
    body: bytes,
    header: str,
    now_ms: int,
    window_ms: int = SIGNATURE_WINDOW_MS,
) -> bool:
    """Receiver side: the signature matches and the timestamp is within ±window_ms of now."""
    if isinstance(timestamp_ms, str):
        digits = timestamp_ms.strip()
        if not (digits.isascii() and digits.isdigit() and len(digits) <= TIMESTAMP_DIGITS_MAX):
            return False
        timestamp_ms = int(digits)
    if abs(now_ms - timestamp_ms) > window_ms:
        return False
    expected = sign(secret, timestamp_ms, body).encode()
    return hmac.compare_digest(expected, header.encode("utf-8", "replace"))


def classify(status: int) -> Outcome:
    if 200 <= status < 300:
        return Outcome.DELIVERED
    if status in (408, 425, 429) or status >= 500:
        return Outcome.RETRY
    if status in (401, 403, 404) or status < 400:
        return Outcome.HOLD  # wrong secret or URL, or a redirect: every entry would fail alike
    return Outcome.DROP


def parse_retry_after_ms(value: str | None, now_ms: int) -> int | None:
    """Retry-After as delay-seconds or an HTTP-date, in ms from now; None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return int(value) * 1000 if len(value) <= RETRY_AFTER_DIGITS_MAX else None
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        return None
    return max(0, int(moment.timestamp() * 1000) - now_ms)


def backoff_ms(attempt: int, base_ms: int, max_ms: int, rng: random.Random) -> int:
    """Equal jitter after `attempt` failures: half the capped exponential, plus up to half."""
    ceiling_ms = min(max_ms, base_ms << min(attempt - 1, 32))
    return ceiling_ms // 2 + int(rng.random() * (ceiling_ms - ceiling_ms // 2))


async def _pause(stop: asyncio.Event, ms: int) -> bool:
    """Sleep ms unless stop is set first; True when stopped."""
    try:
        await asyncio.wait_for(stop.wait(), ms / 1000)
    except TimeoutError:
        return False
    return True


@dataclass
class _Relay:
    redis: Redis
    url: str
    secret: bytes
    http: httpx.AsyncClient
    stream: str
    group: str
    consumer: str
    batch_max: int
    in_flight_max: int
    attempts_max: int
    backoff_ms_base: int
    backoff_ms_max: int
    request_timeout_ms: int
    claim_idle_ms: int
    read_block_ms: int
    stop: asyncio.Event
    rng: random.Random
    clock: Clock
    stats: RelayStats = field(default_factory=RelayStats)
    cursor: str = "0-0"

    async def ensure_group(self) -> None:
        try:
            await self.redis.xgroup_create(self.stream, self.group, GROUP_START_ID, mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def step(self) -> None:
        """One XAUTOCLAIM page, then new entries (blocking only when nothing was claimed)."""
        reply = await self.redis.xautoclaim(
            self.stream,
            self.group,
            self.consumer,
            self.claim_idle_ms,
            self.cursor,
            count=self.batch_max,
        )
        self.cursor = _text(reply[0])
        claimed = reply[1]
        self.stats.claimed += len(claimed)
        await self.deliver_batch(claimed)
        if self.stop.is_set():
            return
        replies = await self.redis.xreadgroup(
            self.group,
            self.consumer,
            {self.stream: ">"},
            count=self.batch_max,
            block=None if claimed else self.read_block_ms,
        )
        if isinstance(replies, dict):  # RESP3: {stream: [entries]}
            pages = [page for stream_pages in replies.values() for page in stream_pages]
        else:  # RESP2: [[stream, entries]]
            pages = [reply[1] for reply in replies]
        entries = [entry for page in pages for entry in page]
        self.stats.read += len(entries)
        await self.deliver_batch(entries)

    async def deliver_batch(self, entries: list[Any]) -> None:
        """Concurrent across players, in stream order within a player (a chain)."""
        chains: dict[str, list[Trigger]] = {}
        for entry_id, fields in entries:
            try:
                trigger = parse_trigger(entry_id, fields)
            except ValueError as exc:
                log.error("push relay: dropping %s: %s", _text(entry_id), exc)
                await self.settle(_text(entry_id), Outcome.DROP)
                continue
            chains.setdefault(trigger.player, []).append(trigger)
        gate = asyncio.Semaphore(self.in_flight_max)
        halted = asyncio.Event()  # the endpoint looks down or misconfigured: stop this batch

        async def run_chain(chain: list[Trigger]) -> None:
            async with gate:
                for index, trigger in enumerate(chain):
                    if halted.is_set() or self.stop.is_set():
                        self.stats.undelivered += len(chain) - index
                        return
                    outcome = await self.deliver(trigger)
                    if outcome in (Outcome.RETRY, Outcome.HOLD):
                        halted.set()  # later entries of the chain stay behind this one
                        self.stats.undelivered += len(chain) - index
                        return
                    await self.settle(trigger.id, outcome)

        async with asyncio.TaskGroup() as tasks:
            for chain in chains.values():
                tasks.create_task(run_chain(chain))

    async def settle(self, entry_id: str, outcome: Outcome) -> None:
        if outcome is Outcome.DELIVERED:
            self.stats.delivered += 1
        else:
            self.stats.dropped += 1
        try:
            await self.redis.xack(self.stream, self.group, entry_id)
        except RedisError as exc:  # stays pending: delivered again later, at least once
            self.stats.redis_errors += 1
            log.warning("push relay: XACK %s failed: %r", entry_id, exc)

    async def deliver(self, trigger: Trigger) -> Outcome:
        """POST with retries; RETRY when attempts ran out or stop was set during a backoff."""
        body = trigger.body()
        reason = ""
        for attempt in range(1, self.attempts_max + 1):
            if attempt > 1:
                self.stats.retried += 1
            timestamp_ms = self.clock.now_ms()
            headers = {
                "Content-Type": "application/json",
                "X-Manor-Timestamp": str(timestamp_ms),
                "X-Manor-Signature": sign(self.secret, timestamp_ms, body),
                "X-Manor-Delivery": trigger.id,
            }
            wait_ms: int | None = None
            try:
                async with self.http.stream(
                    "POST",
                    self.url,
                    content=body,
                    headers=headers,
                    timeout=self.request_timeout_ms / 1000,
                ) as response:  # the response body is never read: a receiver can't flood us
                    status = response.status_code
                    if status in (429, 503):
                        header = response.headers.get("Retry-After")
                        wait_ms = parse_retry_after_ms(header, self.clock.now_ms())
            except httpx.HTTPError as exc:
                status, reason = 0, repr(exc)
            else:
                reason = f"HTTP {status}"
            outcome = classify(status) if status else Outcome.RETRY
            if outcome is not Outcome.RETRY:
                if outcome in (Outcome.DROP, Outcome.HOLD):
                    log.error(
                        "push relay: %s %s (%s, player %s): %s",
                        "dropping" if outcome is Outcome.DROP else "holding",
                        trigger.id,
                        trigger.kind,
                        trigger.player,
                        reason,
                    )
                return outcome
            if attempt == self.attempts_max:
                break
            if wait_ms is None:
                wait_ms = backoff_ms(attempt, self.backoff_ms_base, self.backoff_ms_max, self.rng)
            if await _pause(self.stop, min(wait_ms, self.backoff_ms_max)):
                return Outcome.RETRY
        log.warning(
            "push relay: %s left pending after %d attempts: %s",
            trigger.id,
            self.attempts_max,
            reason,
        )
        return Outcome.RETRY


def _check(relay: _Relay) -> None:
    """Settings checked before the first read: a bad value stops the relay at start."""
    scheme = urlsplit(relay.url).scheme
    if scheme not in ("http", "https"):
        raise ValueError(f"webhook_url must be http(s), not {relay.url!r}")
    if len(relay.secret) < SECRET_BYTES_MIN:
        raise ValueError(f"secret: at least {SECRET_BYTES_MIN} bytes")
    if not relay.consumer:
        raise ValueError("consumer: a name unique per relay process (host + pid)")
    if not 1 <= relay.batch_max <= BATCH_MAX_LIMIT:
        raise ValueError(f"batch_max: 1..{BATCH_MAX_LIMIT}")
    positive = ("in_flight_max", "attempts_max", "backoff_ms_base", "request_timeout_ms")
    for name in (*positive, "claim_idle_ms", "read_block_ms"):
        if getattr(relay, name) < 1:
            raise ValueError(f"{name} must be >= 1")
    if relay.backoff_ms_max < relay.backoff_ms_base:
        raise ValueError("backoff_ms_max must be >= backoff_ms_base")
    retry_ms_worst = relay.attempts_max * relay.request_timeout_ms + sum(
        min(relay.backoff_ms_max, relay.backoff_ms_base << min(a - 1, 32))
        for a in range(1, relay.attempts_max)
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
    stream: str = TRIGGER_STREAM,
    batch_max: int = 100,
    in_flight_max: int = 8,
    attempts_max: int = 8,
    backoff_ms_base: int = 200,
    backoff_ms_max: int = 30_000,
    request_timeout_ms: int = 5_000,
    claim_idle_ms: int = 120_000,
    read_block_ms: int = 1_000,
    stop: asyncio.Event | None = None,
    http: httpx.AsyncClient | None = None,
    rng: random.Random | None = None,
    clock: Clock | None = None,
    iterations_max: int | None = None,
) -> RelayStats:
    """Relay triggers until `stop` is set (or iterations_max loop turns); returns the counts.

    Redis errors inside the loop are logged and retried after a pause; a bad setting
    raises ValueError before anything is read.
    """
    own_http = http is None
    relay = _Relay(
        redis=redis,
        url=webhook_url,
        secret=secret,
        http=http or httpx.AsyncClient(follow_redirects=False),
        stream=stream,
        group=group,
        consumer=consumer,
        batch_max=batch_max,
        in_flight_max=in_flight_max,
        attempts_max=attempts_max,
        backoff_ms_base=backoff_ms_base,
        backoff_ms_max=backoff_ms_max,
        request_timeout_ms=request_timeout_ms,
        claim_idle_ms=claim_idle_ms,
        read_block_ms=read_block_ms,
        stop=stop or asyncio.Event(),
        rng=rng or random.Random(),
        clock=clock or SystemClock(),
    )
    try:
        _check(relay)
        await relay.ensure_group()
        log.info("push relay: %s/%s as %s -> %s", stream, group, consumer, webhook_url)
        iteration, errors_in_row = 0, 0
        while not relay.stop.is_set() and (iterations_max is None or iteration < iterations_max):
            iteration += 1
            try:
                await relay.step()
                errors_in_row = 0
            except RedisError as exc:
                relay.stats.redis_errors += 1
                errors_in_row += 1
                log.warning("push relay: redis error: %r", exc)
                pause_ms = min(REDIS_PAUSE_MS_MAX, 100 << min(errors_in_row, 10))
                await _pause(relay.stop, pause_ms)
                if "NOGROUP" in str(exc):  # the stream or group was deleted under us
                    relay.cursor = "0-0"
                    with contextlib.suppress(RedisError):
                        await relay.ensure_group()
        with contextlib.suppress(RedisError):
            summary = await redis.xpending(stream, group)
            relay.stats.pending_left = int(summary["pending"])
    finally:
        if own_http:
            await relay.http.aclose()
    return relay.stats
