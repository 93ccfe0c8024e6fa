"""The webhook side of the push relay: the trigger's JSON body, its HMAC signature, what an
answer means (deliver, drop, retry, hold; Retry-After; backoff with jitter), and `post`,
one trigger's attempts. No Redis here: the consumer loop is in push_relay.py. A receiver
written in Python can import `verify_signature` from here. See docs/push-relay.md.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import hmac
import json
import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from server.clock import Clock

log = logging.getLogger(__name__)

SIGNATURE_WINDOW_MS = 300_000
TIMESTAMP_DIGITS_MAX = 16
RETRY_AFTER_DIGITS_MAX = 10

Fields = Mapping[bytes | str, bytes | str]


@dataclass(frozen=True, slots=True)
class Trigger:
    id: str  # the stream entry id (XACK, failure counts)
    player: str
    kind: str
    collapse_key: str
    data: dict[str, Any]
    created_ms: int
    partition: int | None = None  # the trigger stream's partition; None: the legacy stream

    @property
    def delivery_id(self) -> str:
        """`id` and `X-Manor-Delivery`: unique over all partitions (two partitions can hold
        the same stream id), `<partition>/<stream id>`. Entries of the legacy single stream
        keep the bare stream id earlier relays sent, so a receiver still de-duplicates an
        entry that an old relay delivered and a new one sends again."""
        return self.id if self.partition is None else f"{self.partition}/{self.id}"

    def body(self) -> bytes:
        payload = {
            "id": self.delivery_id,
            "player": self.player,
            "kind": self.kind,
            "collapse_key": self.collapse_key,
            "data": self.data,
            "created_ms": self.created_ms,
        }
        return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()

    def fields(self) -> dict[str, str]:
        """The stream entry's fields again (for the dead letters)."""
        return {
            "player": self.player,
            "kind": self.kind,
            "collapse_key": self.collapse_key,
            "data": json.dumps(self.data, separators=(",", ":"), ensure_ascii=False),
            "created_ms": str(self.created_ms),
        }


class Outcome(enum.Enum):
    DELIVERED = "delivered"  # 2xx: ack
    DROP = "drop"  # permanent rejection of this entry: ack, count as dropped
    RETRY = "retry"  # transient: back off and try again, up to attempts_max
    HOLD = "hold"  # the endpoint is misconfigured: keep pending, stop this batch


def text_of(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def parse_trigger(
    entry_id: bytes | str, fields: Fields | None, partition: int | None = None
) -> Trigger:
    """The trigger in one stream entry; ValueError when it can never be delivered."""
    if not fields:
        raise ValueError("entry has no fields (deleted by MAXLEN while pending?)")
    text = {text_of(k): text_of(v) for k, v in fields.items()}
    try:
        data = json.loads(text["data"])
        created_ms = int(text["created_ms"])
        trigger = Trigger(
            text_of(entry_id),
            text["player"],
            text["kind"],
            text["collapse_key"],
            data,
            created_ms,
            partition,
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


def blames_the_entry(status: int) -> bool:
    """A failure that says something about this trigger rather than the endpoint: the
    receiver answered and failed on it (500, 501, 505...). Transport errors, timeouts,
    408/425/429 and 502/503/504 say the endpoint is down or busy: they never count
    towards parking an entry (its age does, see push_relay.py)."""
    return status >= 500 and status not in (502, 503, 504)


async def pause(stop: asyncio.Event, ms: int) -> bool:
    """Sleep ms unless stop is set first; True when stopped. asyncio.timeout, not wait_for:
    Python 3.11's wait_for can hang a task cancelled just as its timeout fires (seen when a
    relay task was cancelled while its idle loops paused)."""
    try:
        async with asyncio.timeout(ms / 1000):
            await stop.wait()
    except TimeoutError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class Posted:
    """How posting one trigger ended."""

    outcome: Outcome
    reason: str  # "HTTP 500", a transport error, or "stopped" (stop set during a backoff)
    status: int  # the last answer's status; 0: no answer (transport error or stopped)
    retries: int  # attempts after the first
    stopped: bool = False


@dataclass(frozen=True, slots=True)
class Poster:
    """POSTs signed triggers to one webhook, with backoff between attempts."""

    http: httpx.AsyncClient
    url: str
    secret: bytes
    attempts_max: int
    backoff_ms_base: int
    backoff_ms_max: int
    request_timeout_ms: int
    stop: asyncio.Event
    rng: random.Random
    clock: Clock

    async def post(self, trigger: Trigger) -> Posted:
        """Up to attempts_max attempts; RETRY when they all failed or stop cut a backoff."""
        body = trigger.body()
        reason, status = "", 0
        for attempt in range(1, self.attempts_max + 1):
            timestamp_ms = self.clock.now_ms()
            headers = {
                "Content-Type": "application/json",
                "X-Manor-Timestamp": str(timestamp_ms),
                "X-Manor-Signature": sign(self.secret, timestamp_ms, body),
                "X-Manor-Delivery": trigger.delivery_id,
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
                if outcome is Outcome.HOLD:
                    log.error(
                        "push relay: holding %s (%s, player %s): %s",
                        trigger.delivery_id,
                        trigger.kind,
                        trigger.player,
                        reason,
                    )
                return Posted(outcome, reason, status, attempt - 1)
            if attempt == self.attempts_max:
                break
            if wait_ms is None:
                wait_ms = backoff_ms(attempt, self.backoff_ms_base, self.backoff_ms_max, self.rng)
            if await pause(self.stop, min(wait_ms, self.backoff_ms_max)):
                return Posted(Outcome.RETRY, "stopped", 0, attempt - 1, stopped=True)
        log.warning(
            "push relay: %s left pending after %d attempts: %s",
            trigger.delivery_id,
            self.attempts_max,
            reason,
        )
        return Posted(Outcome.RETRY, reason, status, self.attempts_max - 1)
