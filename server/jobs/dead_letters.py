"""The push relay's dead letters: triggers acknowledged without a delivery, kept for people.

An entry leaves the trigger stream's pending list undelivered in three ways, and each is
parked in one step (MULTI: XADD to the dead-letter stream, XACK, HDEL of its failure count):

- `malformed`: the stream entry cannot make a request (a missing field, bad JSON);
- `rejected`: the webhook refused it for good (a 4xx other than 401/403/404/408/425/429);
- `failed`: it ended `dead_letter_after` passes undelivered (5xx, timeouts...) while it was
  the one being tried, so it is not retried for ever.

The dead-letter stream `<stream>:dead` is capped (`MAXLEN`, oldest first out). Each entry
copies the trigger's fields that exist, plus `id` (the trigger's stream id), `reason`,
`failures` and `parked_ms`. `manor push-relay --dead-letters N` prints the newest N.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from server.jobs.webhook import Fields, text_of

DEAD_LETTER_LEN_MAX = 10_000
TRIGGER_FIELDS = ("player", "kind", "collapse_key", "data", "created_ms")


def dead_letter_stream(stream: str) -> str:
    """Shares the trigger stream's hash tag, so one MULTI can touch both."""
    return f"{stream}:dead"


def failures_key(stream: str) -> str:
    """Hash: entry id -> passes that ended without a delivery (deleted when it settles)."""
    return f"{stream}:failures"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    dead_id: str  # the id in the dead-letter stream
    trigger_id: str
    player: str
    kind: str
    reason: str
    failures: int
    parked_ms: int


async def park(
    redis: Redis,
    stream: str,
    group: str,
    entry_id: str,
    fields: Fields | None,
    reason: str,
    failures: int,
    now_ms: int,
    len_max: int = DEAD_LETTER_LEN_MAX,
) -> None:
    """Move one pending entry to the dead letters; RedisError leaves it pending."""
    copy: dict[Any, Any] = {}
    for key, value in (fields or {}).items():
        try:
            name, text = text_of(key), text_of(value)
        except UnicodeDecodeError:
            continue
        if name in TRIGGER_FIELDS:
            copy[name] = text
    copy |= {"id": entry_id, "reason": reason, "failures": str(failures)}
    copy["parked_ms"] = str(now_ms)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.xadd(dead_letter_stream(stream), copy, maxlen=len_max, approximate=False)
        pipe.xack(stream, group, entry_id)
        pipe.hdel(failures_key(stream), entry_id)
        await pipe.execute()


async def read_dead_letters(redis: Redis, stream: str, count: int) -> tuple[int, list[DeadLetter]]:
    """(how many are kept, the newest `count` of them, newest first)."""
    key = dead_letter_stream(stream)
    total = int(await redis.xlen(key))
    entries: Any = await redis.xrevrange(key, count=count) if count > 0 else []
    letters = []
    for dead_id, raw in entries:
        fields = {text_of(k): text_of(v) for k, v in raw.items()}
        letters.append(
            DeadLetter(
                text_of(dead_id),
                fields.get("id", ""),
                fields.get("player", ""),
                fields.get("kind", ""),
                fields.get("reason", ""),
                int(fields.get("failures") or 0),
                int(fields.get("parked_ms") or 0),
            )
        )
    return total, letters
